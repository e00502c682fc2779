/* Small SVG charts for the console (no library): TailorChart.line(container, spec) and TailorChart.bars(...).
   Text is set with textContent, so labels from data are never read as HTML. */
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700", "#0a7f87"];

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function ticks(lo, hi, count) {
    if (hi === lo) { hi = lo + 1; }
    const raw = (hi - lo) / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; }).find(function (s) { return s >= raw; });
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  function short(value) {
    const abs = Math.abs(value);
    if (abs >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (abs >= 1e4) return (value / 1e3).toFixed(0) + "k";
    if (Number.isInteger(value)) return String(value);
    if (abs >= 100) return value.toFixed(1);
    if (abs < 0.01) return String(Number(value.toPrecision(2)));  // a rate of unknown tokens: 0.0003
    return value.toFixed(abs >= 1 ? 2 : 3).replace(/0+$/, "").replace(/\.$/, "");
  }

  /* spec: {series: [{label, points: [[x, y], ...]}], title, xLabel, yLabel, yMin, yMax, xFormat(x)}.
     Replaces the container's content; an empty series list shows spec.empty. */
  function line(container, spec) {
    const W = 560, H = 240, L = 52, R = 12, T = 12, B = 40;
    const series = (spec.series || []).filter(function (s) { return s.points.length; });
    container.replaceChildren();
    if (!series.length) { container.append(document.createTextNode(spec.empty || "")); return; }
    const xs = series.flatMap(function (s) { return s.points.map(function (p) { return p[0]; }); });
    const ys = series.flatMap(function (s) { return s.points.map(function (p) { return p[1]; }); });
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    let y0 = spec.yMin !== undefined ? spec.yMin : Math.min(...ys), y1 = spec.yMax !== undefined ? spec.yMax : Math.max(...ys);
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const sx = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    const sy = function (y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", class: "chart",
                              "aria-label": spec.title || spec.yLabel || "" });
    if (spec.title) root.append(svg("title", {}, spec.title));
    for (const v of ticks(y0, y1, 4)) {
      root.append(svg("line", { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "grid" }));
      root.append(svg("text", { x: L - 6, y: sy(v) + 4, "text-anchor": "end", class: "tick" }, short(v)));
    }
    const fmt = spec.xFormat || short;
    const whole = xs.every(Number.isInteger);  // steps, counts: no tick between two whole numbers
    let shown = null;
    for (const v of ticks(x0, x1, 5)) {
      if (whole && !Number.isInteger(v)) continue;
      const text = fmt(v);
      if (text === shown) continue;  // e.g. one point's neighbouring seconds, all the same minute
      shown = text;
      root.append(svg("text", { x: sx(v), y: H - B + 16, "text-anchor": "middle", class: "tick" }, text));
    }
    root.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
    if (spec.xLabel) root.append(svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label" }, spec.xLabel));
    series.forEach(function (s, i) {
      const color = s.color || COLORS[i % COLORS.length];
      const path = s.points.map(function (p) { return sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1); }).join(" ");
      root.append(svg("polyline", { points: path, fill: "none", stroke: color, "stroke-width": 2 }));
      if (s.points.length < 40) {
        for (const p of s.points) root.append(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: color }));
      }
    });
    container.append(root);
    const legend = document.createElement("ul");
    legend.className = "legend";
    series.forEach(function (s, i) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch"; swatch.style.background = s.color || COLORS[i % COLORS.length];
      item.append(swatch, document.createTextNode(s.label));
      legend.append(item);
    });
    if (spec.yLabel) {
      const unit = document.createElement("li");
      unit.className = "muted"; unit.textContent = spec.yLabel;
      legend.prepend(unit);
    }
    container.append(legend);
  }

  /* items: [{label, value}], spec: {max, format(value)}: horizontal bars with their labels and values. */
  function bars(container, items, spec) {
    spec = spec || {};
    container.replaceChildren();
    const top = spec.max || Math.max(...items.map(function (i) { return i.value; }), 0) || 1;
    const list = document.createElement("dl");
    list.className = "bars";
    for (const item of items) {
      const name = document.createElement("dt"); name.textContent = item.label;
      const value = document.createElement("dd");
      const bar = document.createElement("span"); bar.className = "bar";
      bar.style.width = Math.max(0, Math.min(100, 100 * item.value / top)).toFixed(1) + "%";
      const number = document.createElement("span"); number.className = "num";
      number.textContent = spec.format ? spec.format(item.value) : short(item.value);
      value.append(bar, number);
      list.append(name, value);
    }
    container.append(list);
  }

  window.TailorChart = { line, bars, short };
})();
