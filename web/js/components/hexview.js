// The byte-by-byte view of a frame: hex bytes coloured by the range they belong to (header,
// path, payload fields…) with a legend; focusing or hovering a legend entry highlights its
// bytes. Ranges come from the API's breakdown ({start, end, label}); bytes no range covers
// are marked "unparsed".

import { h } from '../dom.js';

const PALETTE = 8;

function hexBytes(hex) {
  const out = [];
  if (typeof hex !== 'string') return out;
  for (let i = 0; i + 1 < hex.length; i += 2) out.push(hex.slice(i, i + 2));
  return out;
}

/** Renders `rawHex` split by `ranges`. */
export function hexView(rawHex, ranges) {
  const bytes = hexBytes(rawHex);
  const owner = new Array(bytes.length).fill(-1);
  const rs = (Array.isArray(ranges) ? ranges : []).filter((r) => Number.isInteger(r.start) && Number.isInteger(r.end) && r.end > r.start);
  rs.forEach((r, i) => {
    for (let b = r.start; b < r.end && b < bytes.length; b++) owner[b] = i;
  });
  const grid = h('div', { class: 'hex', role: 'group', 'aria-label': `frame bytes (${bytes.length})` });
  const spans = bytes.map((b, i) => {
    const o = owner[i];
    const s = h('span', { class: o < 0 ? 'byte r-none' : `byte r-${o % PALETTE}`, title: `${i}: ${o < 0 ? 'unparsed' : rs[o].label}`, 'data-range': String(o) }, b);
    grid.append(s);
    return s;
  });
  const highlight = (i, on) => spans.forEach((s) => {
    if (s.dataset.range === String(i)) s.classList.toggle('hl', on);
  });
  const legend = h('ul', { class: 'hex-legend', 'aria-label': 'byte ranges' }, rs.map((r, i) => {
    const len = r.end - r.start;
    const btn = h('button', { type: 'button', class: 'legend-item', 'data-range': String(i),
      onmouseenter: () => highlight(i, true), onmouseleave: () => highlight(i, false),
      onfocus: () => highlight(i, true), onblur: () => highlight(i, false) },
    h('span', { class: `swatch r-${i % PALETTE}`, 'aria-hidden': 'true' }),
    h('span', { class: 'legend-label' }, r.label || r.field || 'range'),
    h('span', { class: 'muted' }, len === 1 ? ` byte ${r.start}` : ` bytes ${r.start}–${r.end - 1} (${len})`));
    return h('li', null, btn);
  }));
  if (owner.includes(-1)) {
    legend.append(h('li', null, h('span', { class: 'legend-item' }, h('span', { class: 'swatch r-none', 'aria-hidden': 'true' }), 'unparsed')));
  }
  return h('div', { class: 'hexview' }, grid, legend);
}
