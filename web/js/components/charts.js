// Hand-drawn SVG charts (no library): a sparkline, a 100 % stacked column chart and a
// horizontal stacked bar. Sizes are set through SVG attributes or element.style from script,
// which the Content-Security-Policy allows (inline style attributes in markup it does not).

import { h, svg } from '../dom.js';

/**
 * A sparkline of `points` ([{t: label, v: number}]) with a filled area.
 * `label` describes the chart for screen readers.
 */
export function sparkline(points, { width = 600, height = 80, label = 'trend' } = {}) {
  const vals = points.map((p) => (Number.isFinite(p.v) ? p.v : 0));
  const max = Math.max(1, ...vals);
  const n = vals.length;
  const x = (i) => (n <= 1 ? width / 2 : (i * width) / (n - 1));
  const y = (v) => height - 2 - (v / max) * (height - 6);
  const line = vals.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const root = svg('svg', { class: 'chart sparkline', viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
  if (n === 0) return root;
  root.append(
    svg('polygon', { class: 'spark-area', points: `0,${height} ${line} ${width},${height}` }),
    svg('polyline', { class: 'spark-line', points: line, fill: 'none' }),
  );
  points.forEach((p, i) => {
    // Invisible hover targets carrying a tooltip per bucket.
    const w = n <= 1 ? width : width / (n - 1);
    root.append(svg('rect', { class: 'spark-hit', x: Math.max(0, x(i) - w / 2), y: 0, width: w, height },
      svg('title', null, `${p.t}: ${p.v}`)));
  });
  return root;
}

/**
 * 100 % stacked columns: `rows` are [{label, values: {key: n}}], `keys` the stack order,
 * each drawn with class `series-<key>`.
 */
export function stackedShare(rows, keys, { width = 720, height = 180, label = 'share over time' } = {}) {
  const root = svg('svg', { class: 'chart stacked', viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
  const n = rows.length;
  if (!n) return root;
  const colW = width / n;
  const gap = n > 60 ? 0 : Math.min(2, colW * 0.15);
  rows.forEach((r, i) => {
    const total = keys.reduce((a, k) => a + (r.values[k] || 0), 0);
    let y0 = height;
    for (const k of keys) {
      const v = r.values[k] || 0;
      if (!total || !v) continue;
      const hgt = (v / total) * height;
      y0 -= hgt;
      root.append(svg('rect', { class: `series-${k}`, x: i * colW + gap / 2, y: y0, width: Math.max(0.5, colW - gap), height: hgt },
        svg('title', null, `${r.label} — ${k}: ${v} of ${total} (${Math.round((100 * v) / total)} %)`)));
    }
    if (!total) {
      root.append(svg('rect', { class: 'series-empty', x: i * colW + gap / 2, y: 0, width: Math.max(0.5, colW - gap), height },
        svg('title', null, `${r.label}: no traffic`)));
    }
  });
  return root;
}

/**
 * A horizontal bar split into segments: [{key, value, label}]; segment widths are
 * proportional to values. Returns the bar and a legend.
 */
export function stackBar(segments, { label = 'distribution' } = {}) {
  const total = segments.reduce((a, s) => a + (s.value || 0), 0);
  const bar = h('div', { class: 'stackbar', role: 'img', 'aria-label': `${label}: ${segments.map((s) => `${s.label} ${s.value}`).join(', ')}` });
  for (const s of segments) {
    if (!s.value) continue;
    const seg = h('span', { class: `seg series-${s.key}`, title: `${s.label}: ${s.value}` });
    seg.style.width = `${(100 * s.value) / total}%`;
    bar.append(seg);
  }
  const legend = h('ul', { class: 'legend' }, segments.map((s) => h('li', null,
    h('span', { class: `swatch series-${s.key}`, 'aria-hidden': 'true' }), `${s.label}: `, h('strong', null, String(s.value ?? 0)))));
  return h('div', { class: 'stackbar-wrap' }, bar, legend);
}

/**
 * Columns of a distribution: `rows` are [{label, value}], each a column with its label under
 * it (every `labelEvery`-th one, for long series) and its value in a tooltip
 * (`series-<key>` when given, else the accent colour).
 */
export function columns(rows, { width = 480, height = 160, label = 'distribution', key = null, labelEvery = 1 } = {}) {
  const root = svg('svg', { class: 'chart columns', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `${label}: ${rows.map((r) => `${r.label} ${r.value}`).join(', ')}` });
  const n = rows.length;
  if (!n) return root;
  const max = Math.max(1, ...rows.map((r) => (Number.isFinite(r.value) ? r.value : 0)));
  const base = height - 18;
  const colW = width / n;
  const gap = Math.min(8, colW * 0.2);
  rows.forEach((r, i) => {
    const v = Number.isFinite(r.value) ? r.value : 0;
    const hgt = Math.max(v ? 1 : 0, (v / max) * (base - 4));
    root.append(svg('rect', { class: key ? `series-${key}` : 'col-bar', x: i * colW + gap / 2, y: base - hgt, width: Math.max(1, colW - gap), height: hgt,
      'data-label': r.label, 'data-value': v }, svg('title', null, `${r.label}: ${v}`)));
    if (i % Math.max(1, labelEvery) === 0) {
      root.append(svg('text', { x: i * colW + colW / 2, y: height - 4, 'text-anchor': 'middle', 'font-size': '11', class: 'col-label' }, String(r.label)));
    }
  });
  return root;
}

/**
 * A line chart over time with a value axis: `points` are [{t: ms, v: number|null}] (a null
 * breaks the line), the y range fits the data (negative values, e.g. dBm, are fine), the
 * lowest and highest values (with `digits` decimals) and the first and last times are labelled.
 */
export function lineChart(points, { width = 720, height = 180, label = 'over time', unit = '', digits = 1, fmtTime = (t) => new Date(t).toLocaleString(undefined, { hour12: false }) } = {}) {
  const pts = points.filter((p) => Number.isFinite(p.t));
  const vals = pts.map((p) => p.v).filter((v) => Number.isFinite(v));
  const root = svg('svg', { class: 'chart line', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': vals.length ? `${label}: ${vals.length} points from ${Math.min(...vals).toFixed(digits)} to ${Math.max(...vals).toFixed(digits)} ${unit}` : `${label}: no data` });
  if (!vals.length) return root;
  const left = 52, right = 6, top = 8, bottom = 20;
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const t0 = pts[0].t, t1 = pts[pts.length - 1].t;
  const x = (t) => left + (t1 > t0 ? ((t - t0) / (t1 - t0)) * (width - left - right) : (width - left - right) / 2);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom);
  root.append(
    svg('line', { class: 'axis', x1: left, x2: width - right, y1: y(lo), y2: y(lo) }),
    svg('line', { class: 'axis', x1: left, x2: width - right, y1: y(hi), y2: y(hi) }),
    svg('text', { class: 'col-label', x: left - 4, y: y(hi) + 4, 'text-anchor': 'end', 'font-size': '11' }, `${hi.toFixed(digits)}${unit ? ` ${unit}` : ''}`),
    svg('text', { class: 'col-label', x: left - 4, y: y(lo) + 4, 'text-anchor': 'end', 'font-size': '11' }, `${lo.toFixed(digits)}${unit ? ` ${unit}` : ''}`),
    svg('text', { class: 'col-label', x: left, y: height - 4, 'font-size': '11' }, fmtTime(t0)),
    svg('text', { class: 'col-label', x: width - right, y: height - 4, 'text-anchor': 'end', 'font-size': '11' }, fmtTime(t1)));
  let run = [];
  const flush = () => {
    if (run.length > 1) root.append(svg('polyline', { class: 'spark-line', fill: 'none', points: run.join(' ') }));
    else if (run.length === 1) { const [cx, cy] = run[0].split(','); root.append(svg('circle', { class: 'line-dot', cx, cy, r: 2 })); }
    run = [];
  };
  for (const p of pts) {
    if (!Number.isFinite(p.v)) { flush(); continue; }
    run.push(`${x(p.t).toFixed(digits)},${y(p.v).toFixed(digits)}`);
  }
  flush();
  const w = Math.max(2, (width - left - right) / Math.max(1, pts.length));
  for (const p of pts) {
    if (!Number.isFinite(p.v)) continue;
    root.append(svg('rect', { class: 'spark-hit', x: x(p.t) - w / 2, y: top, width: w, height: height - top - bottom },
      svg('title', null, `${fmtTime(p.t)}: ${p.v.toFixed(digits)}${unit ? ` ${unit}` : ''}`)));
  }
  return root;
}

/**
 * Horizontal bars as a list: `rows` are [{label, value, note?}]; the label is text (names
 * from the mesh are safe here), the bar width is proportional to the largest value.
 */
export function hbars(rows, { label = 'ranking', fmt = (v) => String(v) } = {}) {
  const max = Math.max(1e-9, ...rows.map((r) => (Number.isFinite(r.value) ? r.value : 0)));
  return h('ol', { class: 'hbars', 'aria-label': label }, rows.map((r) => {
    const bar = h('span', { class: 'hbar', 'aria-hidden': 'true' });
    bar.style.width = `${Math.max(0.5, (100 * (Number.isFinite(r.value) ? r.value : 0)) / max)}%`;
    return h('li', { 'data-label': r.label, 'data-value': r.value },
      h('span', { class: 'hbar-label' }, r.label), h('span', { class: 'hbar-track' }, bar),
      h('span', { class: 'hbar-value' }, fmt(r.value), r.note ? h('span', { class: 'muted' }, ` ${r.note}`) : null));
  }));
}
