// Dashboard charts (templates/ocrapp/dashboard.html): reads the JSON data block
// (<script type="application/json" id="dashboard-data">, not executed) and draws each
// <canvas data-chart="KEY"> with Chart.js (served from our static files; CSP: no inline script).
(function () {
  "use strict";
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function label(iso, bucket) {
    // "2026-12-01T14:00:00+09:00": the wall time in the filter's zone, as the server wrote it
    return bucket === "day" ? iso.slice(0, 10) : iso.slice(5, 10) + " " + iso.slice(11, 16);
  }

  function draw() {
    var block = document.getElementById("dashboard-data");
    if (!block || typeof window.Chart === "undefined") { return; }
    var data = JSON.parse(block.textContent);
    var bucket = data.filters.bucket;
    var labels = data.buckets.map(function (b) { return label(b, bucket); });
    window.Chart.defaults.animation = false;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var key = canvas.getAttribute("data-chart");
      var kind = canvas.getAttribute("data-kind");
      var datasets = data.series.map(function (s, i) {
        var color = PALETTE[i % PALETTE.length];
        return {
          label: s.label,
          data: s[key].map(function (v) { return v === null ? null : (kind === "share" ? v * 100 : v); }),
          borderColor: color,
          backgroundColor: color,
          spanGaps: false,
          pointRadius: labels.length > 60 ? 0 : 2,
        };
      });
      var y = { beginAtZero: kind !== "value" };
      if (kind === "share") { y.max = 100; y.ticks = { callback: function (v) { return v + "%"; } }; }
      if (kind === "value") { y.suggestedMax = 1; }
      new window.Chart(canvas, {
        type: kind === "count" ? "bar" : "line",
        data: { labels: labels, datasets: datasets },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          interaction: { mode: "index", intersect: false },
          scales: { x: { stacked: kind === "count" }, y: Object.assign(y, { stacked: kind === "count" }) },
          plugins: { legend: { position: "bottom" } },
        },
      });
      canvas.setAttribute("data-drawn", "1");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
