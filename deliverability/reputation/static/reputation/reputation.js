// Reputation page: threshold marks on the rate meters, and the 7-day rates of the last 30 days as two
// line charts with the warning and probation levels. Data from {{ report.chart|json_script:"reputation-chart-data" }}
// (no inline script: CSP); the page has the same numbers as a table.
(function () {
  "use strict";
  document.querySelectorAll(".xes-rep-mark[data-left]").forEach(function (mark) {
    mark.style.left = Math.max(0, Math.min(100, parseFloat(mark.getAttribute("data-left")) || 0)) + "%";
  });
  var source = document.getElementById("reputation-chart-data");
  if (!source || !window.Chart) return;
  var data = JSON.parse(source.textContent);
  var lang = document.documentElement.lang || undefined;
  var reducedMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  function constant(value) { return data.labels.map(function () { return value; }); }
  function draw(id, kind, colour, digits) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    var format = new Intl.NumberFormat(lang, { maximumFractionDigits: digits });
    var levels = data.levels[kind];
    new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [
          { label: data.text[kind], data: data[kind], borderColor: colour, backgroundColor: colour, tension: 0.25, pointRadius: 2, spanGaps: true },
          { label: data.text.warning, data: constant(levels.warning), borderColor: "#e0a100", borderDash: [6, 4], pointRadius: 0, borderWidth: 1.5 },
          { label: data.text.probation, data: constant(levels.probation), borderColor: "#d9620b", borderDash: [2, 3], pointRadius: 0, borderWidth: 1.5 }
        ]
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: reducedMotion ? false : { duration: 400 },
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8 } },
          y: { beginAtZero: true, suggestedMax: levels.probation * 1.2, ticks: { callback: function (v) { return format.format(v) + "%"; } } }
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 14 } },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                return ctx.dataset.label + ": " + (ctx.parsed.y === null ? "–" : format.format(ctx.parsed.y) + "%");
              },
              afterBody: function (items) { return data.text.sent + ": " + data.sent[items[0].dataIndex]; }
            }
          }
        }
      }
    });
  }
  draw("reputation-bounce-chart", "bounce", "#0b5cab", 2);
  draw("reputation-complaint-chart", "complaint", "#6f42c1", 3);
})();
