// The rates page's trend chart: the three rates of one unit over 12 months, drawn by the vendored ECharts.
(function () {
  "use strict";
  function draw() {
    var el = document.getElementById("rates-trend");
    var data = document.getElementById("rates-trend-data");
    if (!el || !data || !window.echarts) return;
    var chart = JSON.parse(data.textContent);
    var plot = window.echarts.init(el, null, { locale: chart.locale, renderer: "canvas" });
    plot.setOption({
      animation: false,
      tooltip: { trigger: "axis", valueFormatter: function (v) { return v == null ? "—" : v + "%"; } },
      legend: { top: 0 },
      grid: { left: 48, right: 16, top: 40, bottom: 32 },
      xAxis: { type: "category", data: chart.months },
      yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
      series: chart.series.map(function (s) {
        return { name: s.name, type: "line", data: s.data, connectNulls: false, symbolSize: 6 };
      })
    });
    window.addEventListener("resize", function () { plot.resize(); });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw); else draw();
})();
