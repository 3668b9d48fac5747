// Small labelled badges: node role, multi-byte capability status, path hash size.

import { h } from '../dom.js';
import { ROLE_LABEL } from '../format.js';

const CAP_TITLE = {
  confirmed: 'Confirmed: the node sent adverts with 2- or 3-byte path hashes',
  suspected: 'Suspected: its key prefix relayed packets with 2- or 3-byte path hashes',
  unknown: 'Unknown: no multi-byte evidence yet (pre-1.14 firmware, or 1.14+ never seen on a multi-byte path)',
  legacy: 'Holding back: active, heard next to multi-byte traffic, but no multi-byte evidence of its own',
};

export function roleBadge(role) {
  const r = typeof role === 'string' ? role : 'unknown';
  return h('span', { class: `badge role role-${r.replace(/[^a-z]/g, '')}` }, ROLE_LABEL[r] || r);
}

/** The capability status badge; `legacy` adds the "holding back" badge after it. */
export function capBadge(status, legacy = false) {
  const s = ['confirmed', 'suspected', 'unknown'].includes(status) ? status : 'unknown';
  const out = h('span', { class: 'badges' }, h('span', { class: `badge cap cap-${s}`, title: CAP_TITLE[s] }, s));
  if (legacy) out.append(h('span', { class: 'badge cap cap-legacy', title: CAP_TITLE.legacy }, 'holding back'));
  return out;
}

export function hashSizeBadge(n) {
  if (n !== 1 && n !== 2 && n !== 3) return h('span', { class: 'muted' }, '—');
  return h('span', { class: `badge hs hs-${n}`, title: `${n}-byte path hashes` }, `${n} B`);
}

export const CAP_HELP = CAP_TITLE;
