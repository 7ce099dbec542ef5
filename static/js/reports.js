// The report screens' charts, drawn with lightweight-charts (served from static files, installed from
// the npm registry; see package.json). Each container names its kind (data-chart) and the JSON script
// holding its days (data-source); money and prices arrive as decimal strings and become numbers here
// only to be drawn.
(function () {
  "use strict";
  var charts = window.LightweightCharts;
  if (!charts) { return; }
  var COLORS = {
    cash: "#1f6fd1", marketValue: "#d98a00", totalValue: "#2d3c50",
    up: "#137a3f", down: "#b3261e", volume: "#9fb3c8", vwap: "#1f6fd1", lit: "#137a3f", dark: "#6b4fa0",
  };

  // Thousands grouped, whole units once they are large: an axis of 6,398,054 reads, 6398054.35 does not.
  var whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var cents = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  var MONEY = {
    type: "custom", minMove: 0.01,
    formatter: function (value) { return Math.abs(value) >= 100000 ? whole.format(value) : cents.format(value); },
  };

  function newChart(holder) {
    return charts.createChart(holder, {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#3b4757", fontSize: 12 },
      grid: { vertLines: { color: "#f0f2f5" }, horzLines: { color: "#f0f2f5" } },
      rightPriceScale: { borderColor: "#dde2e8" },
      timeScale: { borderColor: "#dde2e8" },
    });
  }

  function points(days, key) {
    return days.map(function (day) { return { time: day.time, value: Number(day[key]) }; });
  }

  var draw = {
    "customer-values": function (chart, days) {
      ["cash", "marketValue", "totalValue"].forEach(function (key) {
        chart.addSeries(charts.LineSeries, {
          color: COLORS[key], lineWidth: key === "totalValue" ? 3 : 2, priceLineVisible: false, priceFormat: MONEY,
        }).setData(points(days, key));
      });
    },
    "customer-pnl": function (chart, days) {
      chart.addSeries(charts.HistogramSeries, { priceLineVisible: false, priceFormat: MONEY }).setData(days.map(function (day) {
        var value = Number(day.totalPnl);
        return { time: day.time, value: value, color: value < 0 ? COLORS.down : COLORS.up };
      }));
    },
    "ticker-volume": function (chart, days) {
      // Volume on its own scale along the bottom, so the VWAP line keeps the price scale's full height.
      var volume = chart.addSeries(charts.HistogramSeries, {
        color: COLORS.volume, priceFormat: { type: "volume" }, priceScaleId: "volume", priceLineVisible: false,
      });
      volume.priceScale().applyOptions({ scaleMargins: { top: 0.55, bottom: 0 } });
      volume.setData(points(days, "volume"));
      var vwap = chart.addSeries(charts.LineSeries, { color: COLORS.vwap, lineWidth: 2, priceLineVisible: false });
      vwap.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.5 } });
      vwap.setData(points(days, "vwap"));
    },
    "ticker-venues": function (chart, days) {
      // The library has no stacked bars: lit + dark drawn in the dark colour, lit over it from zero,
      // leaves the dark part showing on top.
      var format = { priceFormat: { type: "volume" }, priceLineVisible: false };
      chart.addSeries(charts.HistogramSeries, Object.assign({ color: COLORS.dark }, format)).setData(
        days.map(function (day) { return { time: day.time, value: Number(day.litVolume) + Number(day.darkVolume) }; })
      );
      chart.addSeries(charts.HistogramSeries, Object.assign({ color: COLORS.lit }, format))
        .setData(points(days, "litVolume"));
    },
  };

  document.querySelectorAll("[data-chart]").forEach(function (holder) {
    var source = document.getElementById(holder.dataset.source);
    var kind = draw[holder.dataset.chart];
    if (!source || !kind) { return; }
    var days = JSON.parse(source.textContent);
    var chart = newChart(holder);
    kind(chart, days);
    chart.timeScale().fitContent();
    holder.dataset.ready = String(days.length);  // lets the browser test see the chart drew its data
  });
})();
