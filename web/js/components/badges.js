// Small labelled badges: node role, multi-byte capability status, path hash size, and how
// fresh a time is (an observer's last packet or status).

import { h } from '../dom.js';
import { ROLE_LABEL, ms, iso, ago, dateTime } from '../format.js';

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

/** Colour class for "how long since": fresh under 5 min, stale under 1 h, else old. */
export function freshness(t) {
  const v = ms(t);
  if (v === null) return 'fresh-bad';
  const age = Date.now() - v;
  return age < 300000 ? 'fresh-ok' : age < 3600000 ? 'fresh-warn' : 'fresh-bad';
}

/** A `<time>` saying how long ago `t` was, coloured by its freshness. */
export function since(t) {
  return h('time', { datetime: iso(t), class: freshness(t), title: dateTime(t) }, ago(t));
}
