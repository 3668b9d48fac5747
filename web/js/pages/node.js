// Node detail (#/nodes/<pubkey>): what is known about one node, its recent adverts, the path
// hash size of each advert over time, and the multi-byte capability evidence (status,
// confidence, counters with first/last times, sample packets, upgraded_at, legacy_suspect),
// who hears it (reception), its analytics (activity, relays, the observers that hear it, and
// where it is heard directly: /api/nodes/{pk}/rx-coverage), its neighbors in the neighbor graph
// and the paths through it.

import { h, replace, notice, defList, svg } from '../dom.js';
import { get } from '../api.js';
import { dateTime, ago, num, ms, dB, shortKey, iso } from '../format.js';
import { roleBadge, capBadge, hashSizeBadge, CAP_HELP } from '../components/badges.js';
import { sortableTable } from '../components/table.js';
import { lineChart } from '../components/charts.js';
import { coverageSummary, cellCentre, WORLD_BBOX } from '../components/coverage.js';

export const title = 'Node';

function counter(c) {
  if (!c) return '—';
  return `${num(c.count)}${c.count ? ` (first ${dateTime(c.first)}, last ${dateTime(c.last)})` : ''}`;
}

function capabilityPanel(mb) {
  if (!mb) return notice('No capability information for this node.');
  const status = mb.status || 'unknown';
  const path = mb.path || {};
  return h('div', null,
    h('p', null, capBadge(status, !!mb.legacy_suspect), ' ', h('span', { class: 'muted' }, CAP_HELP[status] || '')),
    mb.legacy_suspect ? notice(CAP_HELP.legacy, 'warn') : null,
    defList([
      ['Status', status],
      ['Evidence', mb.evidence || 'none'],
      ['Confidence', mb.confidence || '—'],
      ['Largest hash size seen', hashSizeBadge(mb.max_hash_size)],
      ['Source', mb.source === 'persisted' ? 'persisted (kept from earlier evidence)' : (mb.source || '—')],
      ['Multi-byte adverts', counter(mb.advert)],
      ['Adverts of any size', counter(mb.adverts_any_size)],
      ['Latest advert hash size', hashSizeBadge(mb.latest_advert_hash_size)],
      ['Relayed multi-byte (unique prefix)', counter(path.unique)],
      ['Relayed multi-byte (shared prefix)', counter(path.ambiguous)],
      ['First multi-byte evidence (upgraded at)', mb.upgraded_at ? dateTime(mb.upgraded_at) : 'never'],
      ['Holding back (legacy suspect)', mb.legacy_suspect ? 'yes' : 'no'],
      ['Sample packets', Array.isArray(mb.samples) && mb.samples.length
        ? h('ul', { class: 'hops' }, mb.samples.map((s) => h('li', null, h('a', { href: `#/packets/${encodeURIComponent(s)}` }, s))))
        : 'none'],
    ]));
}

/** One bar per advert (oldest left), height = path hash size. */
function hashHistory(adverts) {
  const list = [...adverts].filter((a) => a.hash_size).sort((a, b) => ms(a.timestamp) - ms(b.timestamp));
  if (!list.length) return notice('No adverts heard recently.');
  const w = 12, gap = 3, hgt = 48;
  const chart = svg('svg', { class: 'chart', viewBox: `0 0 ${list.length * (w + gap)} ${hgt}`, width: String(Math.min(720, list.length * (w + gap) * 2)), height: '64', role: 'img',
    'aria-label': `advert path hash sizes, oldest first: ${list.map((a) => a.hash_size).join(', ')}` });
  list.forEach((a, i) => {
    const bh = (a.hash_size / 3) * (hgt - 2);
    chart.append(svg('rect', { class: `series-${a.hash_size}`, x: i * (w + gap), y: hgt - bh, width: w, height: bh },
      svg('title', null, `${dateTime(a.timestamp)}: ${a.hash_size}-byte path hashes`)));
  });
  const sizes = new Set(list.map((a) => a.hash_size));
  return h('div', null, chart,
    h('ul', { class: 'legend' }, [1, 2, 3].map((n) => h('li', null, h('span', { class: `swatch series-${n}`, 'aria-hidden': 'true' }), `${n} byte${n > 1 ? 's' : ''}`))),
    sizes.size > 1 ? h('p', null, 'This node’s adverts vary in hash size (a known 1.14.0 firmware behaviour: timer adverts stay 1-byte).') : null);
}

/** Reception (#nd-rx): who hears this node, how well, and the totals. */
function receptionPanel(d) {
  const s = d.stats || {};
  const observers = Array.isArray(d.observers) ? d.observers : [];
  const t = sortableTable({
    label: 'observers hearing this node', sortKey: 'packetCount', sortDir: 'desc',
    rowAttrs: (o) => ({ 'data-observer-id': o.observer_id }),
    empty: 'No observer has heard this node.',
    columns: [
      { key: 'observer_name', label: 'Observer', value: (o) => o.observer_name || o.observer_id,
        render: (o) => h('span', { class: 'observer-name', title: o.observer_id }, o.observer_name || shortKey(o.observer_id)) },
      { key: 'avgSnr', label: 'Avg SNR', cls: 'num', render: (o) => dB(o.avgSnr, 'dB') },
      { key: 'avgRssi', label: 'Avg RSSI', cls: 'num', render: (o) => dB(o.avgRssi, 'dBm') },
      { key: 'packetCount', label: 'Packets', cls: 'num', render: (o) => num(o.packetCount) },
    ],
  });
  t.setRows(observers);
  return h('div', null,
    h('div', { class: 'cards cards-small' },
      [['totalTransmissions', 'transmissions', num(s.totalTransmissions ?? 0)],
        ['totalObservations', 'observations', num(s.totalObservations ?? 0)],
        ['packetsToday', 'packets today', num(s.packetsToday ?? 0)],
        ['avgSnr', 'average SNR', dB(s.avgSnr, 'dB')],
        ['avgHops', 'average hops', typeof s.avgHops === 'number' ? s.avgHops.toFixed(1) : '—'],
        ['lastHeard', 'last heard', s.lastHeard ? ago(s.lastHeard) : 'never'],
      ].map(([k, label, v]) => h('div', { class: 'card' }, h('span', { class: 'value', 'data-health-stat': k }, v), h('span', { class: 'label' }, label)))),
    observers.length ? null : notice('No observer has reported this node yet.'),
    t.el);
}

/** One hop chip: a link when the prefix resolves to a node; the node itself highlighted. */
function hopChip(hop, self) {
  const isSelf = hop.pubkey && hop.pubkey === self;
  const label = hop.name || hop.prefix || '?';
  const title = `${hop.prefix || ''}${hop.ambiguous ? ' (prefix shared by several nodes: best guess)' : ''}${isSelf ? ' (this node)' : ''}`;
  const cls = ['hop', isSelf ? 'hop-self' : null, hop.ambiguous ? 'hop-ambiguous' : null, hop.pubkey ? null : 'hop-unknown'].filter(Boolean).join(' ');
  return h('li', { class: cls, 'data-prefix': hop.prefix, 'data-hop-pubkey': hop.pubkey || null, 'data-ambiguous': hop.ambiguous ? 'true' : null, title },
    hop.pubkey
      ? h('a', { href: `#/nodes/${encodeURIComponent(hop.pubkey)}`, 'aria-current': isSelf ? 'true' : null }, label)
      : h('span', null, label),
    hop.ambiguous ? h('span', { class: 'hop-flag', 'aria-label': 'ambiguous prefix' }, ' ?') : null);
}

/** Paths through this node (#nd-paths): distinct hop sequences, most used first. */
function pathsPanel(d, self) {
  const paths = Array.isArray(d.paths) ? d.paths : [];
  if (!paths.length) return notice('No relayed path through this node has been heard.');
  const t = sortableTable({
    label: 'paths through this node', sortKey: 'count', sortDir: 'desc',
    rowAttrs: (p) => ({ 'data-path': (p.hops || []).map((x) => x.prefix).join(','), 'data-sample': p.sampleHash }),
    columns: [
      { key: 'hops', label: 'Path (first hop left)', value: (p) => (p.hops || []).length,
        render: (p) => h('ol', { class: 'hops path-hops', 'aria-label': `${(p.hops || []).length} hops` }, (p.hops || []).map((x) => hopChip(x, self))) },
      { key: 'count', label: 'Packets', cls: 'num', render: (p) => num(p.count) },
      { key: 'lastSeen', label: 'Last heard', value: (p) => ms(p.lastSeen), render: (p) => (p.lastSeen ? h('time', { datetime: iso(p.lastSeen), title: dateTime(p.lastSeen) }, ago(p.lastSeen)) : '—') },
      { key: 'sampleHash', label: 'Sample', value: null,
        render: (p) => (p.sampleHash ? h('a', { href: `#/packets/${encodeURIComponent(p.sampleHash)}`, class: 'mono' }, p.sampleHash) : '—') },
    ],
  });
  t.setRows(paths);
  return h('div', null,
    h('p', { class: 'muted' }, `${num(d.totalPaths ?? paths.length)} distinct paths over ${num(d.totalTransmissions ?? 0)} transmissions. `,
      'A hop marked ? is a prefix several nodes share; the name shown is the best guess.'),
    t.el);
}

/** Neighbors (#nd-nb): nodes heard next to this one in the neighbor graph, strongest first. */
function neighborsPanel(d) {
  const list = Array.isArray(d.neighbors) ? d.neighbors : [];
  const t = sortableTable({
    label: 'neighbors of this node', sortKey: 'confidence', sortDir: 'desc',
    rowAttrs: (x) => ({ 'data-neighbor': x.pubkey }),
    empty: 'No neighbor heard yet: no resolved hop next to this node.',
    columns: [
      { key: 'name', label: 'Neighbor', value: (x) => x.name || x.pubkey,
        render: (x) => h('a', { href: `#/nodes/${encodeURIComponent(x.pubkey)}`, class: 'neighbor-name', title: x.pubkey }, x.name || shortKey(x.pubkey)) },
      { key: 'role', label: 'Role', render: (x) => (x.role ? roleBadge(x.role) : '—') },
      { key: 'count', label: 'Packets', cls: 'num', render: (x) => num(x.count) },
      { key: 'confidence', label: 'Confidence', cls: 'num', render: (x) => (typeof x.confidence === 'number' ? `${Math.round(x.confidence * 100)} %` : '—') },
      { key: 'distance_km', label: 'Distance', cls: 'num', render: (x) => (typeof x.distance_km === 'number' ? `${x.distance_km.toFixed(1)} km` : '—') },
      // The link's mean SNR as its observers reported it, and how many observers heard it
      // (their ids, the first 8, as the cell's title: text, never markup).
      { key: 'avg_snr', label: 'Avg SNR', cls: 'num', render: (x) => (typeof x.avg_snr === 'number' ? `${x.avg_snr.toFixed(1)} dB` : '—') },
      { key: 'observer_count', label: 'Observers', cls: 'num',
        render: (x) => h('span', { class: 'neighbor-observers', title: (Array.isArray(x.observers) ? x.observers : []).map(String).join('\n') }, num(x.observer_count ?? (Array.isArray(x.observers) ? x.observers.length : 0))) },
      { key: 'last_seen', label: 'Last heard', value: (x) => ms(x.last_seen),
        render: (x) => (x.last_seen ? h('time', { datetime: iso(x.last_seen), title: dateTime(x.last_seen) }, ago(x.last_seen)) : '—') },
    ],
  });
  t.setRows(list);
  return h('div', null,
    h('p', { class: 'muted' }, `${num(d.total_observations ?? 0)} packets showed these links. `,
      'A neighbor is a node heard right before or after this one on a path, both hops resolved; confidence is how sure the resolver was; SNR is the mean of the observations that showed the link.'),
    t.el);
}

/** Hourly counts from sparse [{bucket, count}] over [from, to], empty hours as 0. */
function hourly(list, from, to) {
  const byHour = new Map();
  for (const b of Array.isArray(list) ? list : []) {
    const t = ms(b.bucket);
    if (t !== null) byHour.set(Math.floor(t / 3600000), b.count);
  }
  const h0 = Math.floor((ms(from) ?? Date.now() - 7 * 86400000) / 3600000);
  const h1 = Math.floor((ms(to) ?? Date.now()) / 3600000);
  const out = [];
  for (let x = h0; x <= h1; x++) out.push({ t: x * 3600000, v: byHour.get(x) || 0 });
  return out;
}

/** Analytics (#nd-an): activity per hour, relayed packets, the observers that hear it. */
function analyticsPanel(d) {
  const s = d.computedStats || {};
  const r = d.relayed || {};
  const tr = d.timeRange || {};
  const cover = Array.isArray(d.observerCoverage) ? d.observerCoverage : [];
  const activity = hourly(d.activityTimeline, tr.from, tr.to);
  const relayed = hourly(r.timeline, tr.from, tr.to);
  const t = sortableTable({
    label: 'observers hearing this node, with signal', sortKey: 'packetCount', sortDir: 'desc',
    rowAttrs: (o) => ({ 'data-an-observer': o.observer_id }),
    empty: 'No observer heard this node in this window.',
    columns: [
      { key: 'observer_name', label: 'Observer', value: (o) => o.observer_name || o.observer_id,
        render: (o) => h('span', { class: 'observer-name', title: o.observer_id }, o.observer_name || shortKey(o.observer_id)) },
      { key: 'packetCount', label: 'Packets', cls: 'num', render: (o) => num(o.packetCount) },
      { key: 'avgSnr', label: 'Avg SNR', cls: 'num', render: (o) => dB(o.avgSnr, 'dB') },
      { key: 'avgRssi', label: 'Avg RSSI', cls: 'num', render: (o) => dB(o.avgRssi, 'dBm') },
      { key: 'lastSeen', label: 'Last heard', value: (o) => ms(o.lastSeen),
        render: (o) => (o.lastSeen ? h('time', { datetime: iso(o.lastSeen), title: dateTime(o.lastSeen) }, ago(o.lastSeen)) : '—') },
    ],
  });
  t.setRows(cover);
  const fmt = (x) => new Date(x).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', hour12: false });
  return h('div', null,
    h('div', { class: 'cards cards-small' },
      [['totalPackets', 'packets sent', num(s.totalPackets ?? 0)],
        ['avgPacketsPerDay', 'per day', typeof s.avgPacketsPerDay === 'number' ? s.avgPacketsPerDay.toFixed(1) : '—'],
        ['availabilityPct', 'hours active', typeof s.availabilityPct === 'number' ? `${s.availabilityPct.toFixed(0)} %` : '—'],
        ['relayed', 'packets relayed', num(r.packets ?? 0)],
        ['uniqueObservers', 'observers', num(s.uniqueObservers ?? cover.length)],
        ['signalGrade', 'signal grade', s.signalGrade || '—'],
      ].map(([k, label, v]) => h('div', { class: 'card' }, h('span', { class: 'value', 'data-an-stat': k }, v), h('span', { class: 'label' }, label)))),
    h('h3', null, `Packets per hour (last ${num(tr.days ?? 7)} days)`),
    lineChart(activity, { label: 'packets sent per hour', fmtTime: fmt, height: 140 }),
    r.packets ? [h('h3', null, 'Packets relayed per hour'), lineChart(relayed, { label: 'packets relayed per hour', fmtTime: fmt, height: 110 })] : null,
    h('h3', null, `Heard by (${num(cover.length)})`),
    t.el);
}

/** Heard directly (#nd-an, `data-rx-coverage`): receptions by positioned observers, per cell. */
function rxCoveragePanel(d) {
  const sum = coverageSummary(d);
  const cells = (Array.isArray(d.features) ? d.features : []).map((f) => ({ ...(f.properties || {}), centre: cellCentre(f) }));
  const t = sortableTable({
    label: 'cells where observers heard this node directly', sortKey: 'count', sortDir: 'desc',
    rowAttrs: (c) => ({ 'data-cell': c.cell, 'data-count': c.count }),
    empty: 'No observer with a position heard this node directly.',
    columns: [
      { key: 'centre', label: 'Cell centre', value: (c) => (c.centre ? c.centre.join(',') : ''),
        render: (c) => h('span', { class: 'mono', title: c.cell }, c.centre ? `${c.centre[0].toFixed(4)}, ${c.centre[1].toFixed(4)}` : c.cell) },
      { key: 'count', label: 'Receptions', cls: 'num', render: (c) => num(c.count) },
      { key: 'best_snr', label: 'Best SNR', cls: 'num', render: (c) => dB(c.best_snr, 'dB') },
    ],
  });
  t.setRows(cells);
  return h('div', null,
    h('h3', null, `Heard directly (last ${num(d.days ?? 30)} days)`),
    h('p', { class: 'muted' }, 'Receptions as the last hop of a flood with 2- or 3-byte hashes, or a zero-hop advert, by observers placed at their own node.'),
    h('div', { class: 'cards cards-small' },
      [['rxReceptions', 'direct receptions', num(d.mobile_receptions ?? 0)],
        ['rxObservers', 'observers', num(d.mobile_clients ?? 0)],
        ['rxCells', 'cells', num(sum.cells)],
        ['rxBestSnr', 'best SNR', dB(sum.bestSnr, 'dB')],
        ['rxUnpositioned', 'by observers without a position', num(d.unpositioned ?? 0)],
      ].map(([k, label, v]) => h('div', { class: 'card' }, h('span', { class: 'value', 'data-an-stat': k }, v), h('span', { class: 'label' }, label)))),
    d.truncated || d.scanTruncated ? notice('Only part of the window is counted: the scan or the number of cells reached its cap.', 'warn') : null,
    cells.length ? t.el : null);
}

export function mount(root, ctx) {
  const key = ctx.params.pubkey;
  const heading = h('h1', { tabindex: '-1' }, 'Node');
  const body = h('div', null, notice('Loading…'));
  const rxBox = h('div', null, notice('Loading…'));
  const pathsBox = h('div', null, notice('Loading…'));
  const rx = h('section', { class: 'panel', 'aria-labelledby': 'nd-rx', 'data-section': 'health' }, h('h2', { id: 'nd-rx' }, 'Reception'), rxBox);
  const paths = h('section', { class: 'panel', 'aria-labelledby': 'nd-paths', 'data-section': 'paths' }, h('h2', { id: 'nd-paths' }, 'Paths through this node'), pathsBox);
  const nbBox = h('div', null, notice('Loading…'));
  const nb = h('section', { class: 'panel', 'aria-labelledby': 'nd-nb', 'data-section': 'neighbors' }, h('h2', { id: 'nd-nb' }, 'Neighbors'), nbBox);
  const anBox = h('div', null, notice('Loading…'));
  const covBox = h('div', { 'data-rx-coverage': '' }, notice('Loading…'));
  const an = h('section', { class: 'panel', 'aria-labelledby': 'nd-an', 'data-section': 'analytics' }, h('h2', { id: 'nd-an' }, 'Analytics'), anBox, covBox);
  root.append(h('p', null, h('a', { href: '#/nodes' }, '← All nodes')), heading, body, rx, an, nb, paths);

  // Reception, neighbors and paths load on their own: neither waits for, nor holds up, the rest.
  const enc = encodeURIComponent(key);
  ctx.guard(get(`/api/nodes/${enc}/health`, null, ctx.signal), rxBox).then((d) => {
    if (!d) return;
    replace(rxBox, receptionPanel(d));
    rx.dataset.ready = 'true';
  });
  ctx.guard(get(`/api/nodes/${enc}/analytics`, null, ctx.signal), anBox).then((d) => {
    if (!d) return;
    replace(anBox, analyticsPanel(d));
    an.dataset.ready = 'true';
  });
  ctx.guard(get(`/api/nodes/${enc}/rx-coverage`, { bbox: WORLD_BBOX, z: 10 }, ctx.signal), covBox).then((d) => {
    if (!d) return;
    replace(covBox, rxCoveragePanel(d));
    covBox.dataset.ready = 'true';
  });
  ctx.guard(get(`/api/nodes/${enc}/neighbors`, null, ctx.signal), nbBox).then((d) => {
    if (!d) return;
    const n = Array.isArray(d.neighbors) ? d.neighbors.length : 0;
    nb.querySelector('h2').textContent = `Neighbors (${num(n)})`;
    replace(nbBox, neighborsPanel(d));
    nb.dataset.ready = 'true';
    nb.dataset.count = String(n);
  });
  ctx.guard(get(`/api/nodes/${enc}/paths`, null, ctx.signal), pathsBox).then((d) => {
    if (!d) return;
    const n = Array.isArray(d.paths) ? d.paths.length : 0;
    paths.querySelector('h2').textContent = `Paths through this node (${num(d.totalPaths ?? n)})`;
    replace(pathsBox, pathsPanel(d, (d.node && d.node.public_key) || key));
    paths.dataset.ready = 'true';
    paths.dataset.count = String(n);
  });

  ctx.guard(get(`/api/nodes/${encodeURIComponent(key)}`, null, ctx.signal), body).then((d) => {
    if (!d || !d.node) return;
    const n = d.node;
    root.dataset.pubkey = n.public_key;
    heading.textContent = n.name || '(no name)';
    heading.dataset.nodeName = '';
    const adverts = Array.isArray(d.recentAdverts) ? d.recentAdverts : [];
    const advTable = sortableTable({
      label: 'recent adverts', sortKey: 'timestamp', sortDir: 'desc',
      rowAttrs: (a) => ({ 'data-hash': a.hash }),
      columns: [
        { key: 'timestamp', label: 'Heard', render: (a) => h('a', { href: `#/packets/${encodeURIComponent(a.hash)}` }, dateTime(a.timestamp)) },
        { key: 'route_type_name', label: 'Route', render: (a) => a.route_type_name || '—' },
        { key: 'hash_size', label: 'Hash size', render: (a) => hashSizeBadge(a.hash_size) },
        { key: 'hop_count', label: 'Hops', cls: 'num', render: (a) => String(a.hop_count ?? '—') },
        { key: 'observation_count', label: 'Observations', cls: 'num', render: (a) => num(a.observation_count) },
        { key: 'name', label: 'Name in advert', value: (a) => (a.decoded && a.decoded.name) || '', render: (a) => (a.decoded && a.decoded.name) || '—' },
      ],
    });
    advTable.setRows(adverts);
    const hasLoc = typeof n.lat === 'number' && typeof n.lon === 'number' && (n.lat !== 0 || n.lon !== 0);
    replace(body,
      h('p', null, roleBadge(n.role), ' ', capBadge(n.multi_byte_status, n.multi_byte && n.multi_byte.legacy_suspect),
        n.active === false ? h('span', { class: 'badge' }, 'inactive') : null),
      h('div', { class: 'grid2' },
        h('section', { class: 'panel', 'aria-labelledby': 'nd-known' }, h('h2', { id: 'nd-known' }, 'What is known'),
          defList([
            ['Name', n.name || '—'],
            ['Public key', h('code', { class: 'break' }, n.public_key)],
            ['Role', n.role || '—'],
            ['Location', hasLoc ? `${n.lat.toFixed(5)}, ${n.lon.toFixed(5)}` : 'not advertised'],
            ['First heard', dateTime(n.first_seen)],
            ['Last heard', `${dateTime(n.last_seen)} (${ago(n.last_seen)})`],
            ['Adverts', num(n.advert_count)],
            ['Advert hash size', h('span', null, hashSizeBadge(n.hash_size), n.hash_size_inconsistent ? ' (varies)' : '')],
          ]),
          h('p', null, h('a', { href: `#/packets?node=${encodeURIComponent(n.public_key)}` }, 'Packets from this node'),
            hasLoc ? [' · ', h('a', { href: `#/map?node=${encodeURIComponent(n.public_key)}` }, 'Show on map')] : null)),
        h('section', { class: 'panel', 'aria-labelledby': 'nd-cap' }, h('h2', { id: 'nd-cap' }, 'Multi-byte capability'), capabilityPanel(n.multi_byte))),
      h('section', { class: 'panel', 'aria-labelledby': 'nd-hist' }, h('h2', { id: 'nd-hist' }, 'Advert hash-size history'), hashHistory(adverts)),
      h('section', { class: 'panel', 'aria-labelledby': 'nd-adv' }, h('h2', { id: 'nd-adv' }, `Recent adverts (${adverts.length})`), advTable.el));
  });
}
