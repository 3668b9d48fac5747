// Analytics (#/analytics?tab=rf): charts of the mesh, one tab at a time (deep-linked):
// RF (SNR and RSSI distributions, signal over time, relay airtime share by packet type),
// Observers (noise-floor summary and one observer's noise floor over time), Clock skew
// (observers and the worst nodes), Channels (messages per channel, top senders), Roles
// (nodes per role with their clock health) and Coverage (observers ranked by where they hear
// from, and the hexagon cells of direct receptions, as a table). Names come from the mesh:
// text only.

import { h, replace, notice, select } from '../dom.js';
import { coverageSummary, cellCentre, WORLD_BBOX } from '../components/coverage.js';
import { get } from '../api.js';
import { num, dB, ago, dateTime, iso, ms, shortKey } from '../format.js';
import { columns, lineChart, hbars } from '../components/charts.js';
import { sortableTable } from '../components/table.js';
import { roleBadge } from '../components/badges.js';

export const title = 'Analytics';

const TABS = [
  ['rf', 'RF'],
  ['observers', 'Observers'],
  ['skew', 'Clock skew'],
  ['channels', 'Channels'],
  ['roles', 'Roles'],
  ['coverage', 'Coverage'],
];

const fixed = (v, d = 1) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '—');
const secs = (v) => (typeof v === 'number' && Number.isFinite(v) ? `${v.toFixed(1)} s` : '—');

function panel(id, heading, ...body) {
  return h('section', { class: 'panel', 'aria-labelledby': id, 'data-section': id }, h('h2', { id }, heading), ...body);
}

function cards(list) {
  return h('div', { class: 'cards cards-small' }, list.map(([k, label, v]) =>
    h('div', { class: 'card' }, h('span', { class: 'value', 'data-an-stat': k }, v), h('span', { class: 'label' }, label))));
}

function binRows(hist) {
  const bins = hist && Array.isArray(hist.bins) ? hist.bins : [];
  return bins.map((b) => ({ label: fixed(b.x, 0), value: b.count }));
}

async function rfTab(box, ctx) {
  const [rf, air] = await Promise.all([
    ctx.guard(get('/api/analytics/rf', null, ctx.signal), box),
    get('/api/analytics/relay-airtime-share', null, ctx.signal).catch(() => null),
  ]);
  if (!rf) return;
  const snr = rf.snr || {}, rssi = rf.rssi || {};
  const airRows = air && Array.isArray(air.rows) ? air.rows : [];
  const over = Array.isArray(rf.signalOverTime) ? rf.signalOverTime : [];
  replace(box,
    cards([
      ['totalPackets', 'observations', num(rf.totalPackets)],
      ['totalTransmissions', 'transmissions', num(rf.totalTransmissions)],
      ['snrAvg', 'average SNR', dB(snr.avg, 'dB')],
      ['snrMedian', 'median SNR', dB(snr.median, 'dB')],
      ['rssiAvg', 'average RSSI', dB(rssi.avg, 'dBm')],
      ['window', 'window', rf.window || '24h'],
    ]),
    h('div', { class: 'an-grid' },
      panel('an-snr', 'SNR distribution (dB)', rf.snrValues && rf.snrValues.bins && rf.snrValues.bins.length
        ? columns(binRows(rf.snrValues), { label: 'observations per SNR bin (dB)' }) : notice('No SNR heard in this window.')),
      panel('an-rssi', 'RSSI distribution (dBm)', rf.rssiValues && rf.rssiValues.bins && rf.rssiValues.bins.length
        ? columns(binRows(rf.rssiValues), { label: 'observations per RSSI bin (dBm)' }) : notice('No RSSI heard in this window.'))),
    panel('an-sig', 'Average SNR per hour', over.length
      ? lineChart(over.map((p) => ({ t: ms(`${p.hour}${String(p.hour).length <= 13 ? ':00:00Z' : ''}`), v: p.avgSnr })), { label: 'average SNR per hour', unit: 'dB' })
      : notice('No signal over time yet.')),
    panel('an-air', 'Relay airtime share by packet type',
      airRows.length
        ? [h('p', { class: 'muted' }, 'Share of the airtime spent relaying (time on air × hops), per packet type', air.window ? `, last ${air.window}` : '', '.'),
          hbars(airRows.map((r) => ({ label: r.payload_type, value: r.airtime_pct, note: `(${num(r.count)} packets)` })),
            { label: 'relay airtime share by packet type', fmt: (v) => `${fixed(v)} %` })]
        : notice(air ? 'No relayed packet in this window.' : 'Relay airtime share unavailable.')));
}

async function observersTab(box, ctx) {
  const d = await ctx.guard(get('/api/observers/metrics/summary', null, ctx.signal), box);
  if (!d) return;
  const list = Array.isArray(d.observers) ? d.observers : [];
  const t = sortableTable({
    label: 'observer noise floor summary', sortKey: 'max_noise_floor_24h', sortDir: 'desc',
    rowAttrs: (o) => ({ 'data-observer': o.observer_id }),
    empty: 'No observer has sent metrics in the last 24 h.',
    columns: [
      { key: 'observer_name', label: 'Observer', value: (o) => o.observer_name || o.observer_id,
        render: (o) => h('span', { class: 'observer-name', title: o.observer_id }, o.observer_name || shortKey(o.observer_id)) },
      { key: 'iata', label: 'Region', render: (o) => o.iata || '—' },
      { key: 'current_noise_floor', label: 'Noise floor now', cls: 'num', render: (o) => dB(o.current_noise_floor, 'dBm') },
      { key: 'avg_noise_floor_24h', label: 'Average (24 h)', cls: 'num', render: (o) => dB(o.avg_noise_floor_24h, 'dBm') },
      { key: 'max_noise_floor_24h', label: 'Highest (24 h)', cls: 'num', render: (o) => dB(o.max_noise_floor_24h, 'dBm') },
      { key: 'battery_mv', label: 'Battery', cls: 'num', render: (o) => (typeof o.battery_mv === 'number' ? `${(o.battery_mv / 1000).toFixed(2)} V` : '—') },
      { key: 'sample_count', label: 'Samples', cls: 'num', render: (o) => num(o.sample_count) },
      { key: 'sparkline', label: 'Trend', value: null,
        render: (o) => (Array.isArray(o.sparkline) && o.sparkline.some((v) => typeof v === 'number')
          ? lineChart(o.sparkline.map((v, i) => ({ t: i, v })), { width: 160, height: 40, label: 'noise floor trend', unit: '', fmtTime: () => '' })
          : '—') },
    ],
  });
  t.setRows(list);
  const chartBox = h('div', null);
  const chosen = list.find((o) => o.observer_id === ctx.query.observer) || list[0];
  async function show(id) {
    replace(chartBox, notice('Loading…'));
    const m = await ctx.guard(get(`/api/observers/${encodeURIComponent(id)}/metrics`, null, ctx.signal), chartBox);
    if (!m) return;
    const pts = (Array.isArray(m.metrics) ? m.metrics : []).map((x) => ({ t: ms(x.timestamp), v: x.noise_floor }));
    chartBox.dataset.observer = id;
    chartBox.dataset.points = String(pts.filter((p) => typeof p.v === 'number').length);
    replace(chartBox, pts.some((p) => typeof p.v === 'number')
      ? lineChart(pts, { label: `noise floor of ${m.observer_name || id}`, unit: 'dBm' })
      : notice('This observer reported no noise floor in the last 24 h.'));
  }
  const picker = list.length
    ? h('p', null, h('label', null, 'Observer ', select('observer', list.map((o) => [o.observer_id, o.observer_name || shortKey(o.observer_id)]), chosen.observer_id, (v) => {
      ctx.setQuery({ ...ctx.query, observer: v });
      show(v);
    }, { name: 'observer' })))
    : null;
  replace(box,
    panel('an-obs', `Observers (${num(list.length)})`, t.el),
    panel('an-nf', 'Noise floor over time (5-minute buckets, last 24 h)', picker, list.length ? chartBox : notice('No observer metrics yet.')));
  if (chosen) show(chosen.observer_id);
}

const SEVERITY = ['ok', 'warning', 'critical', 'absurd', 'no_clock'];

async function skewTab(box, ctx) {
  const [obs, nodes] = await Promise.all([
    ctx.guard(get('/api/observers/clock-skew', null, ctx.signal), box),
    ctx.guard(get('/api/nodes/clock-skew', null, ctx.signal), box),
  ]);
  if (!obs || !nodes) return;
  const olist = Array.isArray(obs) ? obs : [];
  const nlist = Array.isArray(nodes) ? nodes : [];
  const ot = sortableTable({
    label: 'observer clock offsets', sortKey: 'offsetSec', sortDir: 'desc',
    rowAttrs: (o) => ({ 'data-observer': o.observerID }),
    empty: 'No observer clock measured yet.',
    columns: [
      { key: 'observerName', label: 'Observer', value: (o) => o.observerName || o.observerID,
        render: (o) => h('span', { class: 'observer-name', title: o.observerID }, o.observerName || shortKey(o.observerID)) },
      { key: 'offsetSec', label: 'Offset', cls: 'num', value: (o) => Math.abs(o.offsetSec), render: (o) => secs(o.offsetSec) },
      { key: 'samples', label: 'Samples', cls: 'num', render: (o) => num(o.samples) },
      { key: 'buckets', label: 'Buckets', cls: 'num', render: (o) => num(o.buckets) },
    ],
  });
  ot.setRows(olist);
  let worst = [];
  const nt = sortableTable({
    label: 'nodes with the worst clocks', sortKey: 'recentMedianSkewSec', sortDir: 'desc',
    rowAttrs: (n) => ({ 'data-pubkey': n.pubkey, 'data-severity': n.severity }),
    empty: 'No node clock measured yet.',
    columns: [
      { key: 'nodeName', label: 'Node', value: (n) => n.nodeName || n.pubkey,
        render: (n) => h('a', { href: `#/nodes/${encodeURIComponent(n.pubkey)}`, class: 'node-name', title: n.pubkey }, n.nodeName || shortKey(n.pubkey)) },
      { key: 'nodeRole', label: 'Role', render: (n) => (n.nodeRole ? roleBadge(n.nodeRole) : '—') },
      { key: 'recentMedianSkewSec', label: 'Skew (recent median)', cls: 'num', value: (n) => Math.abs(n.recentMedianSkewSec), render: (n) => secs(n.recentMedianSkewSec) },
      { key: 'driftPerDaySec', label: 'Drift per day', cls: 'num', render: (n) => secs(n.driftPerDaySec) },
      { key: 'severity', label: 'Severity', render: (n) => h('span', { class: `badge sev-${String(n.severity).replace(/[^a-z_]/g, '')}` }, n.severity || '—') },
      { key: 'sampleCount', label: 'Adverts', cls: 'num', render: (n) => num(n.sampleCount) },
    ],
  });
  const nodesHead = h('h2', { id: 'an-skew-nodes' }, 'Worst node clocks');
  const filter = (q) => {
    const needle = String(q || '').trim().toLowerCase();
    const match = needle ? nlist.filter((n) => String(n.nodeName || '').toLowerCase().includes(needle) || String(n.pubkey).startsWith(needle)) : nlist;
    worst = match.slice(0, 50);
    nt.setRows(worst);
    nodesHead.textContent = `Worst node clocks (${num(worst.length)} of ${num(match.length)}${needle ? ' matching' : ''})`;
  };
  const search = h('input', { type: 'search', name: 'q', 'aria-label': 'filter nodes by name or key', placeholder: 'name or key prefix', value: ctx.query.q || '',
    oninput: (e) => {
      ctx.setQuery({ ...ctx.query, q: e.target.value });
      filter(e.target.value);
    } });
  filter(ctx.query.q);
  const sev = {};
  for (const n of nlist) sev[n.severity] = (sev[n.severity] || 0) + 1;
  replace(box,
    panel('an-skew-sev', `Node clocks by severity (${num(nlist.length)} nodes)`,
      nlist.length ? columns(SEVERITY.map((s) => ({ label: s, value: sev[s] || 0 })), { label: 'nodes per clock severity' }) : notice('No advert timestamps to measure yet.')),
    panel('an-skew-obs', `Observer clocks (${num(olist.length)})`,
      h('p', { class: 'muted' }, 'How far each observer’s clock is from the time packets are heard elsewhere (positive: ahead).'), ot.el),
    h('section', { class: 'panel', 'aria-labelledby': 'an-skew-nodes', 'data-section': 'an-skew-nodes' }, nodesHead,
      h('p', { class: 'muted' }, 'Skew is the advert’s own timestamp minus the time it was heard. ', search), nt.el));
}

async function channelsTab(box, ctx) {
  const d = await ctx.guard(get('/api/analytics/channels', null, ctx.signal), box);
  if (!d) return;
  const chans = Array.isArray(d.channels) ? d.channels : [];
  const top = Array.isArray(d.topSenders) ? d.topSenders : [];
  const t = sortableTable({
    label: 'channels', sortKey: 'messages', sortDir: 'desc',
    rowAttrs: (c) => ({ 'data-channel': c.name, 'data-hash': c.hash }),
    empty: 'No channel message in this window.',
    columns: [
      { key: 'name', label: 'Channel', render: (c) => h('span', { class: 'channel-name' }, c.name || `#${c.hashHex}`) },
      { key: 'messages', label: 'Messages', cls: 'num', render: (c) => num(c.messages) },
      { key: 'senders', label: 'Senders', cls: 'num', render: (c) => num(c.senders) },
      { key: 'encrypted', label: 'Readable', render: (c) => (c.encrypted ? 'no (no key)' : 'yes') },
      { key: 'lastActivity', label: 'Last message', value: (c) => ms(c.lastActivity),
        render: (c) => (c.lastActivity ? h('time', { datetime: iso(c.lastActivity), title: dateTime(c.lastActivity) }, ago(c.lastActivity)) : '—') },
    ],
  });
  t.setRows(chans);
  replace(box,
    cards([
      ['totalMessages', 'messages', num(d.totalMessages)],
      ['activeChannels', 'active channels', num(d.activeChannels)],
      ['decryptable', 'readable channels', num(d.decryptable)],
      ['window', 'window', d.window || '7d'],
    ]),
    h('div', { class: 'an-grid' },
      panel('an-ch-msgs', 'Messages per channel', chans.length
        ? hbars(chans.map((c) => ({ label: c.name || `#${c.hashHex}`, value: c.messages })), { label: 'messages per channel', fmt: num })
        : notice('No channel message in this window.')),
      panel('an-ch-top', 'Top senders', top.length
        ? h('div', { 'data-top-senders': '' }, hbars(top.map((s) => ({ label: s.name, value: s.count })), { label: 'top senders', fmt: num }))
        : notice('No readable message names its sender.'))),
    panel('an-ch-list', `Channels (${num(chans.length)})`, t.el));
}

async function rolesTab(box, ctx) {
  const d = await ctx.guard(get('/api/analytics/roles', null, ctx.signal), box);
  if (!d) return;
  const roles = Array.isArray(d.roles) ? d.roles : [];
  const t = sortableTable({
    label: 'nodes per role', sortKey: 'nodeCount', sortDir: 'desc',
    rowAttrs: (r) => ({ 'data-role': r.role, 'data-count': r.nodeCount }),
    columns: [
      { key: 'role', label: 'Role', render: (r) => roleBadge(r.role) },
      { key: 'nodeCount', label: 'Nodes', cls: 'num', render: (r) => num(r.nodeCount) },
      { key: 'withSkew', label: 'Clock measured', cls: 'num', render: (r) => num(r.withSkew) },
      { key: 'medianAbsSkewSec', label: 'Median |skew|', cls: 'num', render: (r) => secs(r.medianAbsSkewSec) },
      { key: 'okCount', label: 'OK', cls: 'num', render: (r) => num(r.okCount) },
      { key: 'warningCount', label: 'Warning', cls: 'num', render: (r) => num(r.warningCount) },
      { key: 'criticalCount', label: 'Critical', cls: 'num', render: (r) => num(r.criticalCount) },
      { key: 'absurdCount', label: 'Absurd', cls: 'num', render: (r) => num(r.absurdCount) },
    ],
  });
  t.setRows(roles);
  replace(box,
    cards([['totalNodes', 'nodes', num(d.totalNodes)], ['roles', 'roles', num(roles.length)]]),
    panel('an-roles-chart', 'Nodes per role', roles.length
      ? columns(roles.map((r) => ({ label: r.role, value: r.nodeCount })), { label: 'nodes per role' })
      : notice('No node known yet.')),
    panel('an-roles', 'Roles and their clocks', t.el));
}

const COVERAGE_DAYS = [['1', 'last day'], ['7', 'last 7 days'], ['30', 'last 30 days']];
// Hexagon size by map zoom: about 7 km, 2 km and 450 m across at these latitudes.
const COVERAGE_Z = [['8', 'large cells (zoom 8)'], ['10', 'medium cells (zoom 10)'], ['12', 'small cells (zoom 12)']];

async function coverageTab(box, ctx) {
  const days = COVERAGE_DAYS.some(([k]) => k === ctx.query.days) ? ctx.query.days : '7';
  const z = COVERAGE_Z.some(([k]) => k === ctx.query.z) ? ctx.query.z : '10';
  box.dataset.days = days;
  box.dataset.z = z;
  const mine = box.dataset.draw;
  const [lb, cov] = await Promise.all([
    ctx.guard(get('/api/rx-leaderboard', { days, limit: 100 }, ctx.signal), box),
    ctx.guard(get('/api/rx-coverage', { bbox: WORLD_BBOX, z, days }, ctx.signal), box),
  ]);
  // A later choice of window or cell size has drawn (or is drawing) the tab: drop this one.
  if (!lb || !cov || box.dataset.draw !== mine) return;
  const ranked = (Array.isArray(lb.observers) ? lb.observers : []).map((o, i) => ({ ...o, rank: i + 1 }));
  const lt = sortableTable({
    label: 'observers ranked by coverage', sortKey: 'rank',
    rowAttrs: (o) => ({ 'data-observer': o.pubkey, 'data-rank': o.rank }),
    empty: 'No observer with a position heard a node directly in this window.',
    columns: [
      { key: 'rank', label: '#', cls: 'num', render: (o) => num(o.rank) },
      { key: 'name', label: 'Observer', value: (o) => o.name || o.pubkey,
        render: (o) => h('a', { href: `#/observers/${encodeURIComponent(o.pubkey)}`, class: 'observer-name', title: o.pubkey }, o.name || shortKey(o.pubkey)) },
      { key: 'receptions', label: 'Direct receptions', cls: 'num', render: (o) => num(o.receptions) },
      { key: 'nodes', label: 'Nodes heard', cls: 'num', render: (o) => num(o.nodes) },
      { key: 'cells', label: 'Cells', cls: 'num', render: (o) => num(o.cells) },
      { key: 'score', label: 'Score', cls: 'num', render: (o) => fixed(o.score, 2) },
    ],
  });
  lt.setRows(ranked);
  const features = Array.isArray(cov.features) ? cov.features : [];
  const cells = features.map((f) => ({ ...(f.properties || {}), centre: cellCentre(f) }));
  const sum = coverageSummary(cov);
  const ct = sortableTable({
    label: 'coverage cells', sortKey: 'count', sortDir: 'desc',
    rowAttrs: (c) => ({ 'data-cell': c.cell, 'data-count': c.count }),
    empty: 'No positioned observer heard a node directly in this window.',
    columns: [
      { key: 'centre', label: 'Cell centre', value: (c) => (c.centre ? c.centre.join(',') : ''),
        render: (c) => h('span', { class: 'mono', title: c.cell }, c.centre ? `${c.centre[0].toFixed(4)}, ${c.centre[1].toFixed(4)}` : c.cell) },
      { key: 'count', label: 'Receptions', cls: 'num', render: (c) => num(c.count) },
      { key: 'best_snr', label: 'Best SNR', cls: 'num', render: (c) => dB(c.best_snr, 'dB') },
      { key: 'nodes', label: 'Nodes heard (strongest first)', value: (c) => (Array.isArray(c.nodes) ? c.nodes.length : 0),
        render: (c) => {
          const list = Array.isArray(c.nodes) ? c.nodes : [];
          return h('ul', { class: 'hops' }, list.map((n) => h('li', { class: 'hop', 'data-prefix': n.prefix, title: `${n.prefix}: ${num(n.count)} receptions${typeof n.snr === 'number' ? `, last SNR ${n.snr.toFixed(1)} dB` : ''}` },
            h('span', { class: n.name ? 'node-name' : 'mono' }, n.name || shortKey(n.prefix)))),
          c.nodes_truncated ? h('li', { class: 'muted' }, '…') : null);
        } },
    ],
  });
  ct.setRows(cells);
  const top = [...cells].sort((a, b) => b.count - a.count).slice(0, 15);
  const controls = h('p', null,
    h('label', null, 'Window ', select('coverage window', COVERAGE_DAYS, days, (v) => {
      ctx.setQuery({ ...ctx.query, days: v });
      redraw(box, ctx);
    }, { name: 'days' })), ' ',
    h('label', null, 'Cells ', select('coverage cell size', COVERAGE_Z, z, (v) => {
      ctx.setQuery({ ...ctx.query, z: v });
      redraw(box, ctx);
    }, { name: 'z' })));
  replace(box,
    controls,
    cards([
      ['cells', 'cells', num(sum.cells)],
      ['receptions', 'direct receptions', num(sum.receptions)],
      ['nodes', 'nodes listed in cells', num(sum.nodes)],
      ['bestSnr', 'best SNR', dB(sum.bestSnr, 'dB')],
      ['unpositioned', 'receptions by observers without a position', num(cov.unpositioned ?? 0)],
      ['rankedObservers', 'observers ranked', num(ranked.length)],
    ]),
    cov.truncated || cov.scanTruncated || lb.truncated
      ? notice('Only part of the window is counted: the scan or the number of cells reached its cap.', 'warn') : null,
    panel('an-cov-board', `Receiver leaderboard (${num(ranked.length)})`,
      h('p', { class: 'muted' }, 'Observers with a position, ranked by how rare the places they hear from are: each cell counts 1 divided by the observers hearing in it. ',
        'A reception is a node heard directly (the last hop of a flood with 2- or 3-byte hashes, or a zero-hop advert).'),
      lt.el),
    panel('an-cov-top', 'Busiest cells', top.length
      ? hbars(top.map((c) => ({ label: c.centre ? `${c.centre[0].toFixed(3)}, ${c.centre[1].toFixed(3)}` : c.cell, value: c.count, note: `(${num(Array.isArray(c.nodes) ? c.nodes.length : 0)} nodes)` })),
        { label: 'receptions per cell', fmt: num })
      : notice('No cell in this window.')),
    panel('an-cov-cells', `Cells (${num(cells.length)})`, ct.el));
}

/** Draws a tab again after one of its own controls changed the query. */
function redraw(box, ctx) {
  const tab = box.dataset.tabBody;
  box.dataset.ready = 'false';
  const mine = String(Number(box.dataset.draw || 0) + 1);
  box.dataset.draw = mine;
  replace(box, notice('Loading…'));
  LOADERS[tab](box, ctx).then(() => {
    if (!ctx.signal.aborted && box.dataset.draw === mine) box.dataset.ready = 'true';
  });
}

const LOADERS = { rf: rfTab, observers: observersTab, skew: skewTab, channels: channelsTab, roles: rolesTab, coverage: coverageTab };

export function mount(root, ctx) {
  const tab = LOADERS[ctx.query.tab] ? ctx.query.tab : 'rf';
  const box = h('div', { 'data-tab-body': tab, 'data-draw': '0' }, notice('Loading…'));
  root.dataset.tab = tab;
  root.append(h('h1', { tabindex: '-1' }, 'Analytics'),
    h('ul', { class: 'tabs', 'aria-label': 'analytics sections' }, TABS.map(([k, label]) =>
      h('li', null, h('a', { href: `#/analytics?tab=${k}`, 'data-an-tab': k, 'aria-current': k === tab ? 'page' : null }, label)))),
    box);
  LOADERS[tab](box, ctx).then(() => {
    if (!ctx.signal.aborted && box.dataset.draw === '0') box.dataset.ready = 'true';
  });
}
