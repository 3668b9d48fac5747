// Packet detail (#/packets/<hash>): the frame byte by byte (hex coloured by field, with a
// legend), the decoded fields, the path with the nodes each hop may be, and every
// observation (observer, SNR, RSSI, path as heard). New observations arrive live.

import { h, replace, notice, defList } from '../dom.js';
import { get } from '../api.js';
import { dateTime, clock, dB, summarize, shortKey, num } from '../format.js';
import { hexView } from '../components/hexview.js';
import { hashSizeBadge } from '../components/badges.js';
import { sortableTable } from '../components/table.js';

export const title = 'Packet';

// Decoded keys shown elsewhere on the page, or too long to be useful as a field.
const SKIP = new Set(['valid', 'path', 'plaintext_hex', 'packet_hash']);

/** Decoded fields as a definition list; nested objects nest. */
function decodedList(obj, depth = 0) {
  const pairs = [];
  for (const [k, v] of Object.entries(obj || {})) {
    if (SKIP.has(k)) continue;
    let val;
    if (v && typeof v === 'object' && !Array.isArray(v)) val = depth < 3 ? decodedList(v, depth + 1) : JSON.stringify(v);
    else if (Array.isArray(v)) val = v.length ? v.map(String).join(' ') : '—';
    else if (v === null || v === undefined) val = '—';
    else val = String(v);
    pairs.push([k, typeof val === 'string' && val.length > 40 ? h('code', { class: 'break' }, val) : val]);
  }
  return defList(pairs);
}

// Hop lookups remembered per page view (a path has at most 64 hops; this bounds a long visit
// with many live re-renders all the same), and how many run at once.
const HOP_CACHE_MAX = 256;
const HOP_CONCURRENCY = 4;
// `/api/nodes/search?prefix=` answers at most this many candidates.
const SEARCH_LIMIT = 20;

/**
 * Resolves path hops (1- to 3-byte public-key prefixes) to the nodes they may be, through
 * `/api/nodes/search?prefix=`: one request per distinct hop for the life of the page (however
 * often the path is drawn), a few at a time, the last HOP_CACHE_MAX hops remembered. Resolves
 * to the candidate rows (newest first), or null when the lookup failed.
 */
function hopResolver(signal) {
  const cache = new Map(); // hop -> Promise<rows|null>, oldest use first
  const queue = [];
  let running = 0;
  function pump() {
    while (running < HOP_CONCURRENCY && queue.length && !signal.aborted) {
      const { hop, resolve } = queue.shift();
      running++;
      get('/api/nodes/search', { prefix: hop }, signal)
        .then((r) => (Array.isArray(r.nodes) ? r.nodes : []), () => null)
        .then((nodes) => {
          running--;
          if (nodes === null) cache.delete(hop); // retried on the next draw
          resolve(nodes);
          pump();
        });
    }
  }
  return (raw) => {
    const hop = raw.toLowerCase();
    let p = cache.get(hop);
    if (p) {
      cache.delete(hop);
    } else {
      p = new Promise((resolve) => queue.push({ hop, resolve }));
      pump();
      if (cache.size >= HOP_CACHE_MAX) cache.delete(cache.keys().next().value);
    }
    cache.set(hop, p);
    return p;
  };
}

/** The path as chips; each hop resolves to the nodes whose key starts with it. */
function pathView(path, resolve) {
  if (!Array.isArray(path) || !path.length) return h('p', { class: 'muted' }, 'No hops: heard directly from the originator (or a direct route with an empty path).');
  const listEl = h('ol', { class: 'hops', 'aria-label': 'path hops in order' });
  for (const hop of path) {
    const li = h('li', { title: 'resolving…', 'data-hop': hop }, hop);
    listEl.append(li);
    if (!/^[0-9a-f]{2,6}$/i.test(hop)) {
      li.title = 'not a key prefix';
      continue;
    }
    resolve(hop).then((nodes) => {
      li.dataset.candidates = nodes ? String(nodes.length) : '';
      if (nodes === null) {
        li.title = 'the lookup failed';
      } else if (!nodes.length) {
        li.title = 'no known node has this key prefix';
      } else if (nodes.length === 1) {
        const n = nodes[0];
        replace(li, h('a', { href: `#/nodes/${encodeURIComponent(n.public_key)}`, title: n.public_key }, hop), ' ', n.name || shortKey(n.public_key));
        li.removeAttribute('title');
      } else {
        const many = nodes.length >= SEARCH_LIMIT ? `${nodes.length}+` : String(nodes.length);
        li.title = `${many} candidates, most recently heard first: ${nodes.map((n) => n.name || shortKey(n.public_key)).join(', ')}`;
        li.append(h('span', { class: 'muted' }, ` (${many} candidates)`));
      }
    });
  }
  return listEl;
}

function obsColumns() {
  return [
    { key: 'observer', label: 'Observer', value: (o) => o.observer_name || o.observer_id,
      render: (o) => h('a', { href: `#/packets?observer=${encodeURIComponent(o.observer_id)}`, title: o.observer_id }, o.observer_name || shortKey(o.observer_id)) },
    { key: 'iata', label: 'Region', render: (o) => o.iata || '—' },
    { key: 'timestamp', label: 'Heard', render: (o) => clock(o.timestamp) },
    { key: 'snr', label: 'SNR', cls: 'num', render: (o) => dB(o.snr, 'dB') },
    { key: 'rssi', label: 'RSSI', cls: 'num', render: (o) => dB(o.rssi, 'dBm') },
    { key: 'hash_size', label: 'Hash size', render: (o) => hashSizeBadge(o.hash_size) },
    { key: 'hop_count', label: 'Hops', cls: 'num', render: (o) => String(o.hop_count ?? '—') },
    { key: 'path', label: 'Path as heard', value: (o) => (o.path || []).join(' '), render: (o) => h('span', { class: 'mono' }, (o.path || []).join(' → ') || '—') },
  ];
}

export function mount(root, ctx) {
  const hash = ctx.params.hash;
  const heading = h('h1', { tabindex: '-1' }, 'Packet ', h('span', { class: 'mono' }, hash));
  const body = h('div', null, notice('Loading…'));
  const summaryEl = h('span', { 'data-summary': '' });
  root.append(h('p', null, h('a', { href: '#/packets' }, '← All packets')), heading, body);
  const resolveHop = hopResolver(ctx.signal);

  ctx.guard(get(`/api/packets/${encodeURIComponent(hash)}`, null, ctx.signal), body).then((d) => {
    if (!d) return;
    render(d);
  });

  function render(d) {
    const p = d.packet;
    const dec = p.decoded || {};
    summaryEl.textContent = summarize(dec, p.channel);
    root.dataset.hash = p.hash;
    const obs = sortableTable({ columns: obsColumns(), label: 'observations', sortKey: 'timestamp', rowAttrs: (o) => ({ 'data-observer': o.observer_id, 'data-obs-id': o.id }) });
    const observations = Array.isArray(d.observations) ? d.observations : [];
    obs.setRows(observations);
    const obsCount = h('span', { 'data-count': 'observations' }, num(observations.length));
    replace(body,
      h('p', { class: 'lead' }, summaryEl),
      h('section', { class: 'panel', 'aria-labelledby': 'pk-summary' }, h('h2', { id: 'pk-summary' }, 'Summary'),
        defList([
          ['Type', `${p.payload_type_name} (${p.payload_type})`],
          ['Route', `${p.route_type_name} (${p.route_type})`],
          ['Path hash size', hashSizeBadge(p.hash_size)],
          ['Hops', String(p.hop_count ?? '—')],
          ['First heard', dateTime(p.first_seen)],
          ['Last heard', dateTime(p.last_seen)],
          ['Observations', num(p.observation_count)],
          p.channel ? ['Channel', h('a', { href: `#/channels/${encodeURIComponent(p.channel)}` }, p.channel)] : null,
          p.scope ? ['Scope', String(p.scope)] : null,
          p.from_pubkey ? ['From', h('a', { href: `#/nodes/${encodeURIComponent(p.from_pubkey)}`, class: 'mono break' }, p.from_pubkey)] : null,
        ])),
      h('section', { class: 'panel', 'aria-labelledby': 'pk-bytes' }, h('h2', { id: 'pk-bytes' }, `Frame bytes (${(p.raw_hex || '').length / 2})`),
        hexView(p.raw_hex, d.breakdown && d.breakdown.ranges)),
      h('section', { class: 'panel', 'aria-labelledby': 'pk-path' }, h('h2', { id: 'pk-path' }, 'Path (first heard)'), pathView(p.path, resolveHop)),
      h('section', { class: 'panel', 'aria-labelledby': 'pk-decoded' }, h('h2', { id: 'pk-decoded' }, 'Decoded fields'), decodedList(dec)),
      h('section', { class: 'panel', 'aria-labelledby': 'pk-obs' }, h('h2', { id: 'pk-obs' }, 'Observations (', obsCount, ')'), obs.el));

    const seen = new Set(observations.map((o) => o.id));
    ctx.live((msg) => {
      const o = msg.type === 'packet' && msg.data;
      if (!o || o.hash !== p.hash || seen.has(o.id)) return;
      seen.add(o.id);
      observations.push({ id: o.id, observer_id: o.observer, observer_name: o.observer_name, iata: o.iata, timestamp: o.timestamp,
        snr: o.snr, rssi: o.rssi, hash_size: o.hash_size, hop_count: Array.isArray(o.path) ? o.path.length : null, path: o.path });
      obs.setRows(observations);
      obsCount.textContent = num(observations.length);
    });
  }
}
