// Packets (#/packets): every transmission, newest first, in a virtualised list that stays
// smooth with 10,000 rows. Filters (type, route, observer, originating node, hash prefix,
// path hash size) live in the URL query so a view deep-links; new packets arrive over the
// live feed and are prepended when they match, without moving what the reader looks at.

import { h, replace, notice, select } from '../dom.js';
import { get } from '../api.js';
import { clock, num, summarize, PAYLOAD_TYPES, ROUTE_TYPES, shortKey } from '../format.js';
import { virtualList } from '../components/vlist.js';
import { hashSizeBadge } from '../components/badges.js';

export const title = 'Packets';

const PAGE = 500;
const MAX_ROWS = 10000;
const FILTER_KEYS = ['type', 'route', 'observer', 'node', 'hash', 'hash_size', 'channel'];

/** A packet row from a live observation message. */
function fromLive(d) {
  const dec = d.decoded || {};
  return {
    id: d.transmission_id,
    hash: d.hash,
    timestamp: d.timestamp,
    first_seen: d.timestamp,
    route_type_name: dec.route_type_name,
    payload_type: dec.payload_type,
    payload_type_name: dec.payload_type_name,
    hash_size: d.hash_size ?? dec.hash_size,
    hop_count: dec.hop_count ?? (Array.isArray(d.path) ? d.path.length : null),
    observation_count: d.observation_count || 1,
    channel: d.channel,
    from_pubkey: dec.payload_type_name === 'ADVERT' ? dec.pubkey : null,
    decoded: dec,
    _fresh: Date.now(),
  };
}

/** Does a live observation pass the current filters? (the server applies them to pages) */
function matches(q, d, row) {
  const list = (s) => s.split(',').map((x) => x.trim().toUpperCase()).filter(Boolean);
  if (q.type) {
    const types = list(q.type);
    if (!types.includes(String(row.payload_type_name)) && !types.includes(String(row.payload_type))) return false;
  }
  if (q.route) {
    const r = q.route.toUpperCase();
    const dec = row.decoded || {};
    if (r !== String(row.route_type_name) && r !== String(dec.route_type)) return false;
  }
  if (q.hash_size && String(row.hash_size) !== q.hash_size) return false;
  if (q.observer && d.observer !== q.observer) return false;
  if (q.node && !(row.from_pubkey || '').startsWith(q.node.toLowerCase())) return false;
  if (q.hash && !row.hash.startsWith(q.hash.toLowerCase())) return false;
  if (q.channel && row.channel !== q.channel) return false;
  return true;
}

const COLUMNS = [
  { key: 'time', label: 'Time', render: (p) => h('time', { datetime: p.timestamp }, clock(p.timestamp)) },
  { key: 'type', label: 'Type', render: (p) => p.payload_type_name || '?' },
  { key: 'route', label: 'Route', render: (p) => (p.route_type_name || '').replace('TRANSPORT_', 'T-') },
  { key: 'hs', label: 'Hash', render: (p) => hashSizeBadge(p.hash_size) },
  { key: 'hops', label: 'Hops', render: (p) => String(p.hop_count ?? '—') },
  { key: 'obs', label: 'Obs', render: (p) => String(p.observation_count ?? '—') },
  { key: 'hash', label: 'Packet hash', render: (p) => p.hash },
  { key: 'summary', label: 'Summary', render: (p) => summarize(p.decoded, p.channel) },
];

export function mount(root, ctx) {
  const q = ctx.query;
  const rows = [];
  const byHash = new Map();
  let total = 0;
  let loading = false;
  let exhausted = false;
  let paused = false;
  let pendingNew = 0;
  let ready = false; // the first page has arrived; live rows wait for it
  const pageSize = Math.min(MAX_ROWS, Math.max(1, Number(q.limit) || PAGE));

  const status = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' }, 'Loading…');
  const listBox = h('div', { class: 'packets-list' });
  const newBtn = h('button', { type: 'button', class: 'pill', hidden: true, onclick: () => list.scrollToTop() }, 'new packets above');
  const pauseBtn = h('button', { type: 'button', 'aria-pressed': 'false', onclick: () => {
    paused = !paused;
    pauseBtn.setAttribute('aria-pressed', String(paused));
    pauseBtn.textContent = paused ? 'Live updates paused' : 'Pause live updates';
  } }, 'Pause live updates');

  const list = virtualList({
    columns: COLUMNS,
    label: 'packets',
    key: (p) => p.hash,
    rowAttrs: (p) => ({
      href: `#/packets/${encodeURIComponent(p.hash)}`,
      class: p._fresh && Date.now() - p._fresh < 1500 ? 'vrow fresh' : 'vrow',
      'data-hash': p.hash,
      'data-type': p.payload_type_name || '',
      'data-hash-size': p.hash_size ?? '',
      'data-route': p.route_type_name || '',
    }),
    onEndReached: () => loadMore(),
  });
  list.setItems(rows);

  function setFilter(key, value) {
    const next = { ...q, [key]: value };
    delete next.limit;
    ctx.setQuery(next);
    reload();
  }

  const observerSel = select('Observer', [['', 'any observer']], q.observer || '', (v) => setFilter('observer', v));
  if (q.observer) observerSel.append(h('option', { value: q.observer }, shortKey(q.observer)));
  observerSel.value = q.observer || '';
  const typeOpts = [['', 'any type'], ...PAYLOAD_TYPES.map((t) => [t, t])];
  if (q.type && !PAYLOAD_TYPES.includes(q.type)) typeOpts.push([q.type, q.type]);
  const text = (key, label, placeholder) => {
    const input = h('input', { type: 'search', value: q[key] || '', placeholder, spellcheck: 'false', autocomplete: 'off', maxlength: '64' });
    let t = 0;
    input.addEventListener('input', () => {
      clearTimeout(t);
      t = setTimeout(() => setFilter(key, input.value.trim()), 350);
    });
    ctx.onCleanup(() => clearTimeout(t));
    return h('label', null, label, input);
  };
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'packet filters', onsubmit: (e) => e.preventDefault() },
    h('label', null, 'Type', select('Payload type', typeOpts, q.type, (v) => setFilter('type', v), { name: 'type' })),
    h('label', null, 'Route', select('Route type', [['', 'any route'], ...ROUTE_TYPES.map((t) => [t, t])], q.route, (v) => setFilter('route', v), { name: 'route' })),
    h('label', null, 'Path hash size', select('Path hash size', [['', 'any size'], ['1', '1 byte'], ['2', '2 bytes'], ['3', '3 bytes']], q.hash_size, (v) => setFilter('hash_size', v), { name: 'hash_size' })),
    h('label', null, 'Observer', observerSel),
    text('node', 'Originator key', 'pubkey prefix'),
    text('hash', 'Packet hash', 'hash prefix'),
    h('button', { type: 'button', onclick: () => {
      ctx.setQuery({});
      reloadFromUrl();
    } }, 'Clear filters'));

  root.append(h('h1', { tabindex: '-1' }, 'Packets'), filters, h('div', { class: 'toolbar' }, status, pauseBtn, newBtn), listBox);
  replace(listBox, list.el);
  ctx.onCleanup(() => list.destroy());

  function reloadFromUrl() {
    for (const [k, el] of Object.entries({ type: 'type', route: 'route', hash_size: 'hash_size' })) filters.elements[el].value = q[k] || '';
    observerSel.value = q.observer || '';
    for (const input of filters.querySelectorAll('input')) input.value = '';
    reload();
  }

  get('/api/observers', null, ctx.signal).then((o) => {
    for (const ob of o.observers || []) {
      if (ob.id === q.observer) observerSel.querySelector(`option[value="${CSS.escape(ob.id)}"]`)?.remove();
      observerSel.append(h('option', { value: ob.id }, `${ob.name || shortKey(ob.id)}${ob.iata ? ` (${ob.iata})` : ''}`));
    }
    observerSel.value = q.observer || '';
  }, () => {});

  function params(offset) {
    const p = { limit: pageSize, offset };
    for (const k of FILTER_KEYS) if (q[k]) p[k] = q[k];
    return p;
  }

  function updateStatus() {
    status.textContent = `${num(rows.length)} of ${num(total)} packets loaded${exhausted ? '' : ' — scroll for more'}`;
  }

  let generation = 0;
  async function load(offset) {
    const gen = generation;
    loading = true;
    try {
      const res = await ctx.guard(get('/api/packets', params(offset), ctx.signal), listBox);
      if (!res || gen !== generation) return;
      total = res.total;
      ready = true;
      for (const p of res.packets) {
        if (byHash.has(p.hash) || rows.length >= MAX_ROWS) continue;
        byHash.set(p.hash, p);
        rows.push(p);
      }
      // A page cut short by the server's byte budget says where to go on: fetch the rest
      // of the requested page at once.
      const cut = res.truncated === true && Number.isFinite(res.nextOffset);
      exhausted = (!cut && res.packets.length < pageSize) || rows.length >= MAX_ROWS || rows.length >= total;
      if (cut && !exhausted && res.nextOffset < offset + pageSize) {
        if (!rows.length) status.textContent = 'No packets match these filters.';
        else updateStatus();
        list.changed();
        return await load(res.nextOffset);
      }
      if (!rows.length) status.textContent = 'No packets match these filters.';
      else updateStatus();
      list.changed();
      if (queue.length && !frame) frame = requestAnimationFrame(flush);
    } finally {
      if (gen === generation) loading = false;
    }
  }

  function loadMore() {
    if (!loading && !exhausted) load(rows.length);
  }

  function reload() {
    generation++;
    rows.length = 0;
    byHash.clear();
    exhausted = false;
    loading = false;
    ready = false;
    pendingNew = 0;
    newBtn.hidden = true;
    if (!listBox.contains(list.el)) replace(listBox, list.el);
    status.textContent = 'Loading…';
    list.scrollToTop();
    list.changed();
    load(0);
  }

  // Live: observations arrive one by one; batch them per animation frame.
  let queue = [];
  let frame = 0;
  function flush() {
    frame = 0;
    if (!ready) {
      // Keep what arrives while the first page loads (duplicates are dropped by hash).
      if (queue.length > 5000) queue = queue.slice(-5000);
      return;
    }
    let added = 0;
    for (const d of queue) {
      const known = byHash.get(d.hash);
      if (known) {
        if ((d.observation_count || 0) > (known.observation_count || 0)) {
          known.observation_count = d.observation_count;
          known._v = (known._v || 0) + 1;
        }
        continue;
      }
      if (paused) continue;
      const row = fromLive(d);
      if (!matches(q, d, row)) continue;
      byHash.set(row.hash, row);
      rows.unshift(row);
      added++;
      total++;
    }
    queue = [];
    while (rows.length > MAX_ROWS) byHash.delete(rows.pop().hash);
    if (!added && !rows.length) return;
    if (added && list.scrolled()) {
      pendingNew += added;
      newBtn.textContent = `↑ ${pendingNew} new`;
      newBtn.hidden = false;
    } else if (!list.scrolled()) {
      pendingNew = 0;
      newBtn.hidden = true;
    }
    list.changed(added);
    if (rows.length) updateStatus();
  }
  ctx.live((msg) => {
    if (msg.type !== 'packet' || !msg.data || typeof msg.data.hash !== 'string') return;
    queue.push(msg.data);
    if (!frame) frame = requestAnimationFrame(flush);
  });
  ctx.onCleanup(() => cancelAnimationFrame(frame));

  load(0);
}
