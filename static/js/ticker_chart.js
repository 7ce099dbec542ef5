// A ticker's daily candles and volume, drawn with lightweight-charts (served from static files,
// installed from the npm registry; see package.json). Prices arrive as decimal strings.
(function () {
  "use strict";
  var holder = document.getElementById("price-chart");
  var source = document.getElementById("price-series");
  if (!holder || !source || !window.LightweightCharts) { return; }
  var bars = JSON.parse(source.textContent);
  var charts = window.LightweightCharts;
  var chart = charts.createChart(holder, {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#3b4757", fontSize: 12 },
    grid: { vertLines: { color: "#f0f2f5" }, horzLines: { color: "#f0f2f5" } },
    rightPriceScale: { borderColor: "#dde2e8" },
    timeScale: { borderColor: "#dde2e8" },
  });
  var candles = chart.addSeries(charts.CandlestickSeries, {
    upColor: "#137a3f", downColor: "#b3261e", borderVisible: false, wickUpColor: "#137a3f", wickDownColor: "#b3261e",
  });
  candles.setData(bars.map(function (bar) {
    return { time: bar.time, open: Number(bar.open), high: Number(bar.high), low: Number(bar.low), close: Number(bar.close) };
  }));
  var volume = chart.addSeries(charts.HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "" });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
  volume.setData(bars.map(function (bar) {
    return { time: bar.time, value: bar.volume, color: Number(bar.close) >= Number(bar.open) ? "#b9e0c6" : "#f3c2bd" };
  }));
  chart.timeScale().fitContent();
  holder.dataset.ready = String(bars.length);  // lets the browser test see the chart drew its data
})();
