// Multi-byte roll-out (#/multibyte): how far 2- and 3-byte path hashes have spread.
// Capability counts by role (and by region when observers span several), the 1/2/3-byte
// share of traffic per hour, the adopters (confirmed and suspected) and the repeaters that
// hold a region back (legacy suspects). Tables filter and sort; the choices live in the URL.

import { h, replace, notice, select } from '../dom.js';
import { get } from '../api.js';
import { ago, num, pct, dateTime, shortKey, ROLES, ROLE_LABEL, iso } from '../format.js';
import { stackedShare, stackBar } from '../components/charts.js';
import { roleBadge, capBadge, hashSizeBadge } from '../components/badges.js';
import { sortableTable } from '../components/table.js';

export const title = 'Multi-byte roll-out';

const STATUSES = ['confirmed', 'suspected', 'unknown'];

function nodeLink(r) {
  return h('a', { href: `#/nodes/${encodeURIComponent(r.pubkey)}`, title: r.pubkey }, r.name || shortKey(r.pubkey));
}

function byRoleTable(caps, legacyKeys) {
  const rows = ROLES.map((role) => {
    const of = caps.filter((c) => c.role === role);
    const cnt = Object.fromEntries(STATUSES.map((s) => [s, of.filter((c) => c.status === s).length]));
    return { role, total: of.length, ...cnt, legacy: of.filter((c) => legacyKeys.has(c.pubkey)).length };
  }).filter((r) => r.total);
  const t = sortableTable({
    label: 'capability by role',
    columns: [
      { key: 'role', label: 'Role', render: (r) => roleBadge(r.role) },
      ...STATUSES.map((s) => ({ key: s, label: s, cls: 'num', render: (r) => `${num(r[s])} (${pct(r[s], r.total)})` })),
      { key: 'legacy', label: 'holding back', cls: 'num', render: (r) => num(r.legacy) },
      { key: 'total', label: 'total', cls: 'num', render: (r) => num(r.total) },
    ],
    rowAttrs: (r) => ({ 'data-role': r.role }),
  });
  t.setRows(rows);
  return t.el;
}

function shareChart(hourly) {
  const rows = (hourly || []).map((r) => ({ label: `${String(r.hour).replace('T', ' ')}:00`, values: { 1: r['1'] || 0, 2: r['2'] || 0, 3: r['3'] || 0 } }));
  if (!rows.length) return notice('No traffic in this window.');
  const sum = (k) => rows.reduce((a, r) => a + r.values[k], 0);
  const all = sum(1) + sum(2) + sum(3);
  return h('div', null,
    stackedShare(rows, ['1', '2', '3'], { label: `share of packets by path hash size per hour: 1 byte ${pct(sum(1), all)}, 2 bytes ${pct(sum(2), all)}, 3 bytes ${pct(sum(3), all)}` }),
    h('div', { class: 'axis' }, h('span', null, rows[0].label), h('span', null, rows[rows.length - 1].label)),
    h('ul', { class: 'legend' }, ['1', '2', '3'].map((k) => h('li', null, h('span', { class: `swatch series-${k}`, 'aria-hidden': 'true' }),
      `${k}-byte: ${num(sum(k))} (${pct(sum(k), all)})`))),
    h('details', null, h('summary', null, 'Hourly numbers'), (() => {
      const t = sortableTable({ label: 'packets per hour by path hash size', sortKey: 'label', sortDir: 'desc', columns: [
        { key: 'label', label: 'Hour', render: (r) => r.label },
        ...['1', '2', '3'].map((k) => ({ key: k, label: `${k}-byte`, cls: 'num', value: (r) => r.values[k], render: (r) => num(r.values[k]) })),
      ] });
      t.setRows(rows);
      return t.el;
    })()));
}

/** A filter box + status/role selects over a sortable table; state kept in the URL. */
function filteredTable(ctx, prefix, rows, columns, label, withStatus) {
  const q = ctx.query;
  const table = sortableTable({
    label, columns, sortKey: q[`${prefix}sort`] || undefined, sortDir: q[`${prefix}dir`] || 'asc',
    rowAttrs: (r) => ({ 'data-pubkey': r.pubkey, 'data-status': r.status }),
    onSort: (k, d) => ctx.setQuery({ ...q, [`${prefix}sort`]: k, [`${prefix}dir`]: d }),
    empty: 'No nodes match.',
  });
  const input = h('input', { type: 'search', value: q[`${prefix}q`] || '', placeholder: 'name or key prefix', name: `${prefix}q`, autocomplete: 'off', spellcheck: 'false' });
  const roleSel = select(`${label}: role`, [['', 'any role'], ...ROLES.map((r) => [r, ROLE_LABEL[r]])], q[`${prefix}role`], () => apply(), { name: `${prefix}role` });
  const statusSel = withStatus ? select(`${label}: status`, [['', 'confirmed and suspected'], ['confirmed', 'confirmed'], ['suspected', 'suspected']], q[`${prefix}status`], () => apply(), { name: `${prefix}status` }) : null;
  const count = h('span', { class: 'muted', 'data-count': prefix });
  function apply() {
    const t = input.value.trim().toLowerCase();
    const role = roleSel.value;
    const st = statusSel ? statusSel.value : '';
    ctx.setQuery({ ...q, [`${prefix}q`]: t, [`${prefix}role`]: role, ...(statusSel ? { [`${prefix}status`]: st } : {}) });
    const list = rows.filter((r) => (!t || (r.name || '').toLowerCase().includes(t) || r.pubkey.startsWith(t))
      && (!role || r.role === role) && (!st || r.status === st));
    table.setRows(list);
    count.textContent = `${num(list.length)} of ${num(rows.length)}`;
  }
  input.addEventListener('input', apply);
  apply();
  return h('div', null,
    h('div', { class: 'filters', role: 'search', 'aria-label': `${label} filters` },
      h('label', null, 'Filter', input), h('label', null, 'Role', roleSel), statusSel ? h('label', null, 'Status', statusSel) : null, count),
    table.el);
}

const capColumns = () => [
  { key: 'name', label: 'Node', value: (r) => r.name || r.pubkey, render: nodeLink },
  { key: 'role', label: 'Role', render: (r) => roleBadge(r.role) },
  { key: 'status', label: 'Status', value: (r) => STATUSES.indexOf(r.status), render: (r) => capBadge(r.status, r.legacySuspect) },
  { key: 'evidence', label: 'Evidence', render: (r) => r.evidence || '—' },
  { key: 'confidence', label: 'Confidence', render: (r) => r.confidence || '—' },
  { key: 'maxHashSize', label: 'Max size', render: (r) => hashSizeBadge(r.maxHashSize) },
  { key: 'upgradedAt', label: 'Upgraded at', render: (r) => (r.upgradedAt ? h('time', { datetime: iso(r.upgradedAt) }, dateTime(r.upgradedAt)) : '—') },
  { key: 'lastSeen', label: 'Last heard', render: (r) => ago(r.lastSeen) },
];

const legacyColumns = () => [
  { key: 'name', label: 'Repeater', value: (r) => r.name || r.pubkey, render: nodeLink },
  { key: 'role', label: 'Role', render: (r) => roleBadge(r.role) },
  { key: 'maxHashSize', label: 'Hash size seen', render: (r) => hashSizeBadge(r.maxHashSize) },
  { key: 'lastSeen', label: 'Last heard', render: (r) => h('time', { datetime: iso(r.lastSeen) }, ago(r.lastSeen)) },
  { key: 'pubkey', label: 'Key', render: (r) => h('span', { class: 'mono' }, shortKey(r.pubkey, 12)) },
];

async function regionTable(ctx, regions) {
  const rows = [];
  for (const r of regions.slice(0, 12)) {
    const a = await get('/api/analytics/hash-sizes', { region: r }, ctx.signal);
    const ad = a.adoption || {};
    rows.push({ region: r, ...ad, total: (ad.confirmed || 0) + (ad.suspected || 0) + (ad.unknown || 0) });
  }
  const t = sortableTable({
    label: 'capability by region', sortKey: 'region',
    rowAttrs: (r) => ({ 'data-region': r.region }),
    columns: [
      { key: 'region', label: 'Region', render: (r) => r.region },
      ...STATUSES.map((s) => ({ key: s, label: s, cls: 'num', render: (r) => `${num(r[s] || 0)} (${pct(r[s] || 0, r.total)})` })),
      { key: 'legacySuspects', label: 'holding back', cls: 'num', render: (r) => num(r.legacySuspects || 0) },
    ],
  });
  t.setRows(rows);
  return t.el;
}

const CLASS_HELP = {
  local: 'the nodes sharing the prefix are close together: hops through it are genuinely ambiguous',
  regional: 'the nodes are some way apart: the observer usually tells them apart',
  distant: 'the nodes are far apart: unlikely to be confused in practice',
  incomplete: 'not all of these nodes advertise a location',
};

function km(v) {
  return typeof v === 'number' && Number.isFinite(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)} km` : '—';
}

function collisionNodeLink(n) {
  const key = n.public_key || n.pubkey || '';
  return h('a', { href: `#/nodes/${encodeURIComponent(key)}`, title: key, 'data-pubkey': key }, n.name || shortKey(key));
}

/** One hash size of the collision analytics: a stats line and a sortable table. */
function collisionSize(size, data) {
  const st = (data && data.stats) || {};
  const list = Array.isArray(data && data.collisions) ? data.collisions : [];
  const t = sortableTable({
    label: `${size}-byte prefix collisions`, sortKey: 'max_dist_km', sortDir: 'asc',
    rowAttrs: (c) => ({ 'data-prefix': c.prefix, 'data-classification': c.classification }),
    empty: `No two nodes share a ${size}-byte prefix.`,
    columns: [
      { key: 'prefix', label: 'Prefix', render: (c) => h('code', null, c.prefix) },
      { key: 'nodes', label: 'Nodes', value: (c) => (Array.isArray(c.nodes) ? c.nodes.length : 0),
        render: (c) => h('ul', { class: 'hops' }, (Array.isArray(c.nodes) ? c.nodes : []).map((n) => h('li', null, collisionNodeLink(n), ' ', roleBadge(n.role)))) },
      { key: 'appearances', label: 'Seen in paths', cls: 'num', render: (c) => num(c.appearances ?? 0) },
      { key: 'max_dist_km', label: 'Max distance', cls: 'num', render: (c) => `${km(c.max_dist_km)}${Array.isArray(c.nodes) && c.with_coords < c.nodes.length ? ` (${c.with_coords ?? 0} located)` : ''}` },
      { key: 'classification', label: 'Classification', render: (c) => h('span', { class: `badge coll-${String(c.classification || 'unknown').replace(/[^a-z]/g, '')}`, title: CLASS_HELP[c.classification] || '' }, c.classification || '—') },
    ],
  });
  t.setRows(list);
  return h('div', { class: 'collision-size', 'data-size': size, 'data-collisions': String(list.length) },
    h('h3', null, `${size}-byte prefixes (${num(list.length)} collision${list.length === 1 ? '' : 's'})`),
    h('p', { class: 'muted', 'data-collision-stats': size },
      `${num(st.using_this_size ?? 0)} nodes use ${size}-byte hashes; ${num(st.unique_prefixes ?? 0)} distinct prefixes among ${num(st.nodes_for_byte ?? st.total_nodes ?? 0)} nodes; `,
      `${num(st.collision_count ?? list.length)} shared; ${typeof st.pct_used === 'number' ? st.pct_used.toFixed(st.pct_used < 0.01 ? 4 : 2) : '0'}% of ${num(st.space_size ?? 0)} possible prefixes used.`),
    t.el);
}

function collisionsPanel(c) {
  const by = (c && c.by_size) || {};
  const incons = Array.isArray(c && c.inconsistent_nodes) ? c.inconsistent_nodes : [];
  return h('div', null,
    ['1', '2', '3'].map((k) => collisionSize(k, by[k])),
    h('h3', null, `Nodes whose advert hash size varies (${num(incons.length)})`),
    incons.length
      ? h('ul', { class: 'hops', 'data-inconsistent': String(incons.length) }, incons.map((n) => h('li', null, collisionNodeLink(n))))
      : notice('Every node advertises a single hash size.'));
}

export function mount(root, ctx) {
  const q = ctx.query;
  const body = h('div', null, notice('Loading…'));
  const windowSel = select('Time window for the traffic share', [['24h', '24 hours'], ['72h', '3 days'], ['7d', '7 days']], q.window || '24h', (v) => {
    ctx.setQuery({ ...q, window: v === '24h' ? '' : v });
    load();
  }, { name: 'window' });
  const regionSel = select('Region', [['', 'all regions']], q.region || '', (v) => {
    ctx.setQuery({ ...q, region: v });
    load();
    loadCollisions();
  }, { name: 'region' });
  const collBox = h('div', null, notice('Loading…'));
  const coll = h('section', { class: 'panel', 'aria-labelledby': 'mb-coll', 'data-section': 'collisions' },
    h('h2', { id: 'mb-coll' }, 'Prefix collisions'),
    h('p', { class: 'muted' }, 'Nodes whose public keys start with the same bytes: a path hop with that prefix could be any of them. Longer hashes make collisions rarer.'),
    collBox);
  root.append(h('h1', { tabindex: '-1' }, 'Multi-byte roll-out'),
    h('p', { class: 'lead' }, 'Which nodes forward 2- and 3-byte path hashes (firmware 1.14 and later), and which repeaters hold a region back. Capability is inferred from traffic: ',
      h('strong', null, 'confirmed'), ' from the node’s own multi-byte adverts, ', h('strong', null, 'suspected'), ' from its key prefix on multi-byte paths.'),
    h('div', { class: 'filters' }, h('label', null, 'Traffic window', windowSel), h('label', null, 'Region', regionSel)),
    body, coll);

  // The collisions load on their own, without waiting for (or holding up) the rest.
  let collSeq = 0;
  async function loadCollisions() {
    const mine = ++collSeq;
    const c = await ctx.guard(get('/api/analytics/hash-collisions', { region: q.region }, ctx.signal), collBox);
    if (!c || mine !== collSeq) return;
    replace(collBox, collisionsPanel(c));
    coll.dataset.ready = 'true';
  }
  loadCollisions();

  let regions = [];
  get('/api/observers', null, ctx.signal).then((o) => {
    regions = [...new Set((o.observers || []).map((x) => x.iata).filter(Boolean))].sort();
    for (const r of regions) regionSel.append(h('option', { value: r }, r));
    regionSel.value = q.region || '';
    if (regions.length > 1) load();
  }, () => {});

  let seq = 0;
  async function load() {
    const mine = ++seq;
    const a = await ctx.guard(get('/api/analytics/hash-sizes', { window: q.window || '24h', region: q.region }, ctx.signal), body);
    if (!a || mine !== seq) return;
    const caps = Array.isArray(a.multiByteCapability) ? a.multiByteCapability : [];
    const legacyRows = Array.isArray(a.legacySuspects) ? a.legacySuspects : [];
    const legacyKeys = new Set(legacyRows.map((r) => r.pubkey));
    const ad = a.adoption || {};
    const adopters = caps.filter((c) => c.status === 'confirmed' || c.status === 'suspected');
    const regionBox = h('div', null, notice('Loading…'));
    replace(body,
      a.complete === false ? notice('The first capability cycle has not finished yet; numbers may be partial.', 'warn') : null,
      h('div', { class: 'cards' },
        ...[['confirmed', ad.confirmed], ['suspected', ad.suspected], ['unknown', ad.unknown], ['legacy', ad.legacySuspects]].map(([k, v]) =>
          h('a', { class: 'card', href: `#/nodes?cap=${k}`, title: 'list these nodes in the directory' }, h('span', { class: 'value', 'data-adoption': k }, num(v || 0)),
            h('span', { class: 'label' }, k === 'legacy' ? 'holding back (legacy suspects)' : `${k} nodes`)))),
      h('div', { class: 'grid2' },
        h('section', { class: 'panel', 'aria-labelledby': 'mb-role' }, h('h2', { id: 'mb-role' }, 'Capability by role'),
          stackBar(STATUSES.map((s) => ({ key: s, label: s, value: ad[s] || 0 })), { label: 'capability of all nodes' }),
          byRoleTable(caps, legacyKeys),
          regions.length > 1 && !q.region ? [h('h3', null, 'By region'), regionBox] : null),
        h('section', { class: 'panel', 'aria-labelledby': 'mb-share' }, h('h2', { id: 'mb-share' }, 'Path hash size in traffic, per hour'), shareChart(a.hourly),
          h('p', { class: 'muted' }, `Repeaters by advertised hash size: 1 B ${num((a.distributionByRepeaters || {})['1'] || 0)}, 2 B ${num((a.distributionByRepeaters || {})['2'] || 0)}, 3 B ${num((a.distributionByRepeaters || {})['3'] || 0)}.`),
          Array.isArray(a.unknownRelays) && a.unknownRelays.length
            ? h('p', { class: 'muted' }, `${a.unknownRelays.length} multi-byte hop prefixes match no known node.`) : null)),
      h('section', { class: 'panel', 'aria-labelledby': 'mb-legacy', 'data-table': 'legacy' }, h('h2', { id: 'mb-legacy' }, `Holding back multi-byte (${legacyRows.length})`),
        h('p', { class: 'muted' }, 'Repeaters active in the window, heard by observers that also hear multi-byte traffic, with no multi-byte evidence of their own. Likely pre-1.14 firmware: upgrading them lets the region switch to 2-byte paths.'),
        filteredTable(ctx, 'l', legacyRows, legacyColumns(), 'holding back', false)),
      h('section', { class: 'panel', 'aria-labelledby': 'mb-adopters', 'data-table': 'adopters' }, h('h2', { id: 'mb-adopters' }, `Adopters (${adopters.length})`),
        filteredTable(ctx, 'a', adopters, capColumns(), 'adopters', true)),
      h('p', { class: 'muted' }, `Computed ${dateTime(a.computedAt)}${typeof a.cycleMs === 'number' ? ` in ${a.cycleMs} ms` : ''}.`));
    if (regions.length > 1 && !q.region) {
      const el = await ctx.guard(regionTable(ctx, regions), regionBox);
      if (el) replace(regionBox, el);
    }
  }
  load();
  // Refresh now and then, but never under the reader's fingers.
  ctx.every(60000, () => body.contains(document.activeElement) || load());
}
