// Dedicated IP page: the warm-up schedule as a bar chart, today's bar picked out. The data comes from
// {{ chart|json_script:"warmup-chart-data" }} (no inline script: CSP); the page has the same numbers as a table.
(function () {
  "use strict";
  var source = document.getElementById("warmup-chart-data");
  var canvas = document.getElementById("warmup-chart");
  if (!source || !canvas || !window.Chart) return;
  var data = JSON.parse(source.textContent);
  // Past days muted, today in amber, the days ahead in the portal's blue.
  var colours = { past: "#9cb3cc", today: "#e0a100", future: "#0b5cab" };
  var lang = document.documentElement.lang || undefined;
  var number = new Intl.NumberFormat(lang);
  var reducedMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [{
        label: data.label,
        data: data.caps,
        backgroundColor: data.states.map(function (state) { return colours[state] || colours.future; }),
        borderRadius: 2,
        maxBarThickness: 24
      }]
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: reducedMotion ? false : { duration: 400 },
      scales: {
        x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8 } },
        y: { beginAtZero: true, ticks: { precision: 0, callback: function (v) { return number.format(v); } } }
      },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: function (items) {
              var i = items[0].dataIndex;
              return data.days[i] + " · " + data.labels[i] + (data.states[i] === "today" ? " · " + data.today : "");
            },
            label: function (ctx) { return data.label + ": " + number.format(ctx.parsed.y); }
          }
        }
      }
    }
  });
})();
