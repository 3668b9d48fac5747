// Topology (#/topology): who carries the mesh. The busiest relays and hop counts over the
// window's resolved paths (`/api/analytics/topology`), the strongest links of the neighbor
// graph and the bridges — the nodes whose loss would split the mesh, with how many nodes each
// would cut off (`/api/analytics/neighbor-graph`). `?window=1h|24h|7d` deep-links.

import { h, replace, notice, select } from '../dom.js';
import { get } from '../api.js';
import { num, shortKey, ago, dateTime, iso, ms } from '../format.js';
import { roleBadge } from '../components/badges.js';
import { sortableTable } from '../components/table.js';
import { columns } from '../components/charts.js';

export const title = 'Topology';

const WINDOWS = [['1h', 'last hour'], ['24h', 'last 24 hours'], ['7d', 'last 7 days']];
// Rows listed per table.
const TOP = 25;

/** A link to a node by key, named (text only), or the bare hop prefix when unresolved. */
function nodeLink(pubkey, name, prefix) {
  if (!pubkey) return h('span', { class: 'mono muted', title: 'not resolved to a node' }, prefix || '?');
  return h('a', { href: `#/nodes/${encodeURIComponent(pubkey)}`, class: 'node-name', title: pubkey }, name || shortKey(pubkey));
}

/** A count with a bar proportional to the largest of its column. */
function barred(value, max) {
  const bar = h('span', { class: 'bar-cell', 'aria-hidden': 'true' });
  bar.style.width = `${Math.max(2, Math.round((60 * (value || 0)) / Math.max(1, max)))}px`;
  return h('span', null, bar, num(value));
}

function pctOf(p) {
  return typeof p === 'number' && Number.isFinite(p) ? `${Math.round(p * 100)} %` : '—';
}

function relaysPanel(t) {
  const list = (Array.isArray(t.topRepeaters) ? t.topRepeaters : []).slice(0, TOP);
  const max = Math.max(0, ...list.map((r) => r.count || 0));
  const table = sortableTable({
    label: 'busiest relays', sortKey: 'count', sortDir: 'desc',
    rowAttrs: (r) => ({ 'data-relay': r.pubkey || r.hop }),
    empty: 'No relayed packet in this window.',
    columns: [
      { key: 'name', label: 'Relay', value: (r) => r.name || r.hop, render: (r) => nodeLink(r.pubkey, r.name, r.hop) },
      { key: 'hop', label: 'Prefix', render: (r) => h('span', { class: 'mono' }, r.hop || '—') },
      { key: 'count', label: 'Packets relayed', cls: 'num', render: (r) => barred(r.count, max) },
    ],
  });
  table.setRows(list);
  return table.el;
}

function linksPanel(g) {
  const names = new Map((g.nodes || []).map((n) => [n.pubkey, n]));
  const list = (Array.isArray(g.edges) ? g.edges : []).slice(0, TOP);
  const max = Math.max(0, ...list.map((e) => e.weight || 0));
  const end = (pk) => {
    const n = names.get(pk) || {};
    return nodeLink(pk, n.name, null);
  };
  const table = sortableTable({
    label: 'strongest links', sortKey: 'weight', sortDir: 'desc',
    rowAttrs: (e) => ({ 'data-link': `${e.source}-${e.target}` }),
    empty: 'No link seen often enough yet.',
    columns: [
      { key: 'source', label: 'Between', value: (e) => (names.get(e.source) || {}).name || e.source,
        render: (e) => h('span', null, end(e.source), ' ↔ ', end(e.target)) },
      { key: 'weight', label: 'Packets', cls: 'num', render: (e) => barred(e.weight, max) },
      { key: 'score', label: 'Confidence', cls: 'num', render: (e) => pctOf(e.score) },
      { key: 'distance_km', label: 'Distance', cls: 'num', render: (e) => (typeof e.distance_km === 'number' ? `${e.distance_km.toFixed(1)} km` : '—') },
      { key: 'avg_snr', label: 'Avg SNR', cls: 'num', render: (e) => (typeof e.avg_snr === 'number' ? `${e.avg_snr.toFixed(1)} dB` : '—') },
      { key: 'observer_count', label: 'Observers', cls: 'num', render: (e) => (typeof e.observer_count === 'number' ? num(e.observer_count) : '—') },
      { key: 'last_seen', label: 'Last heard', value: (e) => ms(e.last_seen),
        render: (e) => (e.last_seen ? h('time', { datetime: iso(e.last_seen), title: dateTime(e.last_seen) }, ago(e.last_seen)) : '—') },
    ],
  });
  table.setRows(list);
  return h('div', null,
    h('p', { class: 'muted' }, `${num((g.stats || {}).total_edges ?? list.length)} links between ${num((g.stats || {}).total_nodes ?? 0)} nodes, each seen in 5 packets or more`,
      g.truncated ? ' (the strongest only)' : '', '. Confidence is how sure the resolver was of both ends.'),
    table.el);
}

function bridgesPanel(g) {
  const list = Array.isArray(g.bridges) ? g.bridges : [];
  const roles = new Map((g.nodes || []).map((n) => [n.pubkey, n.role]));
  const table = sortableTable({
    label: 'bridge nodes', sortKey: 'cut_off', sortDir: 'desc',
    rowAttrs: (b) => ({ 'data-bridge': b.pubkey, 'data-cut-off': b.cut_off }),
    empty: 'No single node’s loss would split the mesh.',
    columns: [
      { key: 'name', label: 'Node', value: (b) => b.name || b.pubkey, render: (b) => nodeLink(b.pubkey, b.name, null) },
      { key: 'role', label: 'Role', value: (b) => roles.get(b.pubkey) || '', render: (b) => (roles.get(b.pubkey) ? roleBadge(roles.get(b.pubkey)) : '—') },
      { key: 'cut_off', label: 'Nodes cut off', cls: 'num', render: (b) => num(b.cut_off) },
      { key: 'pieces', label: 'Pieces left', cls: 'num', render: (b) => num(b.pieces) },
    ],
  });
  table.setRows(list);
  return h('div', null,
    h('p', { class: 'muted' }, 'Without one of these nodes its part of the mesh falls apart: “cut off” counts the nodes that would lose their way to the largest remaining part. ',
      'Only links seen at least twice with 70 % confidence or more count.'),
    table.el);
}

function hopsPanel(t) {
  const dist = (Array.isArray(t.hopDistribution) ? t.hopDistribution : []).filter((d) => typeof d.hops === 'number');
  if (!dist.length) return notice('No path heard in this window.');
  return h('div', null,
    columns(dist.map((d) => ({ label: String(d.hops), value: d.count || 0 })), { label: 'packets by number of hops' }),
    h('p', { class: 'muted' }, `Hops per packet (first copy heard): mean ${typeof t.avgHops === 'number' ? t.avgHops.toFixed(1) : '—'}, median ${t.medianHops ?? '—'}, most ${t.maxHops ?? '—'}.`));
}

function section(id, heading, key) {
  const box = h('div', null, notice('Loading…'));
  const el = h('section', { class: 'panel', 'aria-labelledby': id, 'data-section': key }, h('h2', { id }, heading), box);
  return { el, box };
}

export function mount(root, ctx) {
  const q = ctx.query;
  const win = WINDOWS.some(([w]) => w === q.window) ? q.window : '24h';
  const winSel = select('Window', WINDOWS, win, (v) => {
    ctx.setQuery({ ...q, window: v === '24h' ? '' : v });
    load(v);
  }, { name: 'window' });
  const cards = h('div', { class: 'cards cards-small' });
  const relays = section('tp-relays', 'Busiest relays', 'relays');
  const hops = section('tp-hops', 'Hops per packet', 'hops');
  const bridges = section('tp-bridges', 'Bridges: nodes whose loss would split the mesh', 'bridges');
  const links = section('tp-links', 'Strongest links', 'links');
  root.append(h('h1', { tabindex: '-1' }, 'Topology'),
    h('form', { class: 'filters', 'aria-label': 'topology controls', onsubmit: (e) => e.preventDefault() },
      h('label', null, 'Relays and hops over the', winSel)),
    cards, h('div', { class: 'grid2' }, relays.el, hops.el), bridges.el, links.el);

  function card(label, value, hook) {
    return h('div', { class: 'card' }, h('span', { class: 'value', 'data-topo-stat': hook }, value), h('span', { class: 'label' }, label));
  }
  const shown = { t: null, g: null };
  function drawCards() {
    const t = shown.t || {};
    const g = shown.g || {};
    replace(cards,
      card('nodes heard (7 days)', num(t.uniqueNodes), 'nodes'),
      card('average hops', typeof t.avgHops === 'number' ? t.avgHops.toFixed(1) : '—', 'avgHops'),
      card('links', num((g.stats || {}).total_edges), 'links'),
      card('bridges', Array.isArray(g.bridges) ? num(g.bridges.length) : '—', 'bridges'));
  }
  drawCards();

  let seq = 0;
  function load(w) {
    const mine = ++seq;
    relays.el.removeAttribute('data-ready');
    hops.el.removeAttribute('data-ready');
    ctx.guard(get('/api/analytics/topology', { window: w }, ctx.signal), relays.box).then((t) => {
      if (!t || mine !== seq) return;
      shown.t = t;
      drawCards();
      replace(relays.box, relaysPanel(t));
      replace(hops.box, hopsPanel(t));
      relays.el.dataset.ready = 'true';
      hops.el.dataset.ready = 'true';
    });
  }
  load(win);
  // The graph is the last capability cycle's, whatever the window.
  ctx.guard(get('/api/analytics/neighbor-graph', null, ctx.signal), bridges.box).then((g) => {
    if (!g) return;
    shown.g = g;
    drawCards();
    replace(bridges.box, bridgesPanel(g));
    replace(links.box, linksPanel(g));
    bridges.el.dataset.ready = 'true';
    links.el.dataset.ready = 'true';
  });
}
