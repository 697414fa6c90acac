// Analytics: the line chart of a report. Its data comes from {{ chart|json_script:"analytics-chart-data" }}
// (no inline script: CSP); the page shows the same numbers as a table without JavaScript. The live
// campaign report swaps the chart in every few seconds (htmx): each new canvas is drawn once,
// without animation after the first.
(function () {
  "use strict";
  var colours = {
    delivered: "#0b5cab",
    opens: "#1e8a44",
    clicks: "#7b3fb3",
    bounces: "#c05a00",
    complaints: "#b42318",
    unsubscribes: "#5b6776"
  };
  var lang = document.documentElement.lang || undefined;
  var number = new Intl.NumberFormat(lang);
  var reducedMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  var drawn = 0;

  function draw(canvas) {
    if (canvas.getAttribute("data-drawn") || !window.Chart) return;
    var source = document.getElementById(canvas.getAttribute("data-analytics-chart"));
    if (!source) return;
    var data = JSON.parse(source.textContent);
    canvas.setAttribute("data-drawn", "1");
    new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: data.series.map(function (s) {
          var colour = colours[s.key] || "#5b6776";
          return {
            label: s.label, data: s.data, borderColor: colour, backgroundColor: colour,
            borderWidth: 2, pointRadius: data.labels.length > 60 ? 0 : 2, tension: 0
          };
        })
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: reducedMotion || drawn > 0 ? false : { duration: 400 },
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 12 } },
          y: { beginAtZero: true, ticks: { precision: 0, callback: function (v) { return number.format(v); } } }
        },
        plugins: {
          legend: { position: "bottom" },
          tooltip: { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + number.format(ctx.parsed.y); } } }
        }
      }
    });
    drawn += 1;
  }

  function drawAll() {
    document.querySelectorAll("canvas[data-analytics-chart]").forEach(draw);
  }
  drawAll();
  document.body.addEventListener("htmx:afterSettle", drawAll);
})();
