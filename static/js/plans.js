// Plan & usage: the monthly usage bar chart. The data comes from {{ chart.data|json_script:"usage-chart-data" }}
// (no inline script: CSP); the page shows the same numbers as a table without JavaScript.
(function () {
  "use strict";
  var source = document.getElementById("usage-chart-data");
  var canvas = document.getElementById("usage-chart");
  if (!source || !canvas || !window.Chart) return;
  var data = JSON.parse(source.textContent);
  var colours = { included: "#0b5cab", overage: "#e0a100", total: "#0b5cab" };
  var lang = document.documentElement.lang || undefined;
  var number = new Intl.NumberFormat(lang);
  var reducedMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: data.series.map(function (s) {
        return { label: s.label, data: s.data, backgroundColor: colours[s.key] || "#5b6776", borderRadius: 3, maxBarThickness: 36 };
      })
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: reducedMotion ? false : { duration: 400 },
      scales: {
        x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0 } },
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0, callback: function (v) { return number.format(v); } } }
      },
      plugins: {
        legend: { display: data.series.length > 1, position: "bottom" },
        tooltip: { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + number.format(ctx.parsed.y); } } }
      }
    }
  });
})();
