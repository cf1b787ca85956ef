"use strict";
// The history page's graph: pick a config, cell, parameter and metric; the page draws that
// series over commits (plain and residual in the report's colours, models "as built" in
// grey: their skips are not switched, so neither colour applies) with its 95% CIs and
// change points. The data is the JSON in the page's element #history-data
// (built by analysis/history/history_page.py); nothing is fetched and no markup is built
// from strings. The selection lives in the URL's fragment, so every series has a link.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = { plain: "#0072B2", residual: "#D55E00", "as built": "#666666", "": "#333333" };
  const KEYS = ["config", "cell", "param", "metric"];
  const W = 760, H = 340, M = { left: 70, right: 16, top: 14, bottom: 74 };
  const source = document.getElementById("history-data");
  if (!source) return;
  const data = JSON.parse(source.textContent);
  const selects = {};
  KEYS.forEach(function (k) { selects[k] = document.getElementById("pick-" + k); });

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (a) { node.setAttribute(a, String(attrs[a])); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function matching(upto) {  // series matching the selects before key index `upto`
    return data.series.filter(function (s) {
      for (let i = 0; i < upto; i++) if (s[KEYS[i]] !== selects[KEYS[i]].value) return false;
      return true;
    });
  }

  function fill(i, wanted) {  // options of select i from the series the earlier ones allow
    const select = selects[KEYS[i]];
    const values = [];
    matching(i).forEach(function (s) { if (values.indexOf(s[KEYS[i]]) < 0) values.push(s[KEYS[i]]); });
    select.replaceChildren();
    values.forEach(function (v) {
      const option = document.createElement("option");
      option.value = v; option.textContent = v; select.appendChild(option);
    });
    if (wanted !== undefined && values.indexOf(wanted) >= 0) select.value = wanted;
  }

  function fillFrom(i, wanted) {
    for (let j = i; j < KEYS.length; j++) fill(j, wanted[KEYS[j]]);
  }

  function fmt(v) { return Number(v).toPrecision(4).replace(/\.?0+(e|$)/, "$1"); }

  function yTicks(lo, hi) {  // log axis: decades, or 1-2-5 steps within a narrow range
    const out = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      [1, 2, 5].forEach(function (m) {
        const v = m * Math.pow(10, e);
        if (v >= lo && v <= hi) out.push(v);
      });
    }
    if (out.length > 8) return out.filter(function (v) { return Math.abs(Math.log10(v) % 1) < 1e-9; });
    if (out.length < 2) return out.concat([lo, hi]);  // label the ends of a narrow range
    return out;
  }

  function draw() {
    const shown = matching(KEYS.length);
    const chart = document.getElementById("chart");
    const steps = document.getElementById("chart-steps");
    chart.replaceChildren(); steps.replaceChildren();
    const xs = [];
    shown.forEach(function (s) { s.x.forEach(function (x) { if (xs.indexOf(x) < 0) xs.push(x); }); });
    xs.sort(function (a, b) { return a - b; });
    let lo = Infinity, hi = -Infinity;
    shown.forEach(function (s) {
      s.lo.concat(s.hi, s.y).forEach(function (v) { if (v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    });
    if (!xs.length || !isFinite(lo)) {
      chart.appendChild(el("text", { x: 20, y: 30 }, "no finite values in this series"));
      return;
    }
    if (hi / lo < 1.02) { lo /= 1.01; hi *= 1.01; }
    const pad = Math.pow(hi / lo, 0.04);  // keep the CI ends off the frame
    lo /= pad; hi *= pad;
    const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
    const px = function (x) { return M.left + (xs.length === 1 ? pw / 2 : pw * xs.indexOf(x) / (xs.length - 1)); };
    const py = function (v) { return M.top + ph * (1 - (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))); };
    chart.appendChild(el("rect", { x: M.left, y: M.top, width: pw, height: ph, fill: "none", stroke: "#bbb" }));
    yTicks(lo, hi).forEach(function (v) {
      chart.appendChild(el("line", { x1: M.left, x2: M.left + pw, y1: py(v), y2: py(v), stroke: "#eee" }));
      chart.appendChild(el("text", { x: M.left - 6, y: py(v) + 4, "text-anchor": "end", "font-size": 11 }, fmt(v)));
    });
    const every = Math.max(1, Math.ceil(xs.length / 30));
    xs.forEach(function (x, i) {
      if (i % every) return;
      const run = data.runs[x];
      chart.appendChild(el("text", { x: px(x), y: M.top + ph + 12, "font-size": 10, "text-anchor": "end", class: "tick-x",
        transform: "rotate(-45 " + px(x) + " " + (M.top + ph + 12) + ")" }, run.commit.slice(0, 8)));
    });
    chart.appendChild(el("text", { x: M.left + pw / 2, y: H - 4, "text-anchor": "middle", "font-size": 12 },
      "commit (oldest first; hover a point for its date)"));
    chart.appendChild(el("text", { x: 14, y: M.top + ph / 2, "text-anchor": "middle", "font-size": 12,
      transform: "rotate(-90 14 " + (M.top + ph / 2) + ")" }, data.metric_labels[selects.metric.value] || selects.metric.value));
    shown.forEach(function (s) {
      const color = COLORS[s.variant] || COLORS[""];
      const points = s.x.map(function (x, i) { return px(x) + "," + py(s.y[i]); }).join(" ");
      chart.appendChild(el("polyline", { points: points, fill: "none", stroke: color, "stroke-width": 1.5 }));
      s.x.forEach(function (x, i) {
        const run = data.runs[x];
        chart.appendChild(el("line", { x1: px(x), x2: px(x), y1: py(s.lo[i]), y2: py(s.hi[i]), stroke: color }));
        const dot = el("circle", { cx: px(x), cy: py(s.y[i]), r: 3.5, fill: color });
        dot.appendChild(el("title", {}, (s.variant || "value") + " " + fmt(s.y[i]) + " [" + fmt(s.lo[i]) + ", " +
          fmt(s.hi[i]) + "]\ncommit " + run.commit + (run.dirty ? " (dirty)" : "") + ", " + run.date + "\nrun " + run.name));
        chart.appendChild(dot);
      });
      s.steps.forEach(function (step) {
        const x = (px(step.before) + px(step.after)) / 2;
        chart.appendChild(el("line", { x1: x, x2: x, y1: M.top, y2: M.top + ph, stroke: color,
          "stroke-dasharray": "5 4", "stroke-width": 1.2 }));
        const item = document.createElement("li");
        item.textContent = (s.variant || "series") + ": x" + fmt(step.ratio) + " between " +
          data.runs[step.before].commit.slice(0, 10) + " (" + data.runs[step.before].date + ") and " +
          data.runs[step.after].commit.slice(0, 10) + " (" + data.runs[step.after].date + ")";
        steps.appendChild(item);
      });
    });
    if (!steps.children.length) {
      const item = document.createElement("li");
      item.textContent = "no change point in this series";
      steps.appendChild(item);
    }
  }

  function fromHash() {
    const wanted = {};
    new URLSearchParams(location.hash.slice(1)).forEach(function (v, k) { wanted[k] = v; });
    return wanted;
  }

  function update(i) {
    const wanted = {};
    KEYS.forEach(function (k) { wanted[k] = selects[k].value; });
    fillFrom(i + 1, wanted);
    const params = new URLSearchParams();
    KEYS.forEach(function (k) { params.set(k, selects[k].value); });
    history.replaceState(null, "", "#" + params.toString());
    draw();
  }

  KEYS.forEach(function (k, i) { selects[k].addEventListener("change", function () { update(i); }); });
  window.addEventListener("hashchange", function () { fillFrom(0, fromHash()); draw(); });
  fillFrom(0, fromHash());
  draw();
})();
