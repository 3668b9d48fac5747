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
 * it and its value in a tooltip (`series-<key>` when given, else the accent colour).
 */
export function columns(rows, { width = 480, height = 160, label = 'distribution', key = null } = {}) {
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
    root.append(
      svg('rect', { class: key ? `series-${key}` : 'col-bar', x: i * colW + gap / 2, y: base - hgt, width: Math.max(1, colW - gap), height: hgt,
        'data-label': r.label, 'data-value': v }, svg('title', null, `${r.label}: ${v}`)),
      svg('text', { x: i * colW + colW / 2, y: height - 4, 'text-anchor': 'middle', 'font-size': '11', class: 'col-label' }, String(r.label)));
  });
  return root;
}
