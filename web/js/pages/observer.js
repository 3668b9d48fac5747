// Observer detail (#/observers/<id>?window=24h|7d|30d): one observer radio — who it is and how
// fresh (last packet, last status, uptime, firmware, battery, region, radio) from
// /api/observers/{id}; its health over the window (noise floor, transmit and receive airtime,
// receive errors, battery) from /api/observers/{id}/metrics; and what it hears (packets and
// nodes over time, by payload type and hash size, SNR distribution, airtime, recent packets)
// from /api/observers/{id}/analytics. The id comes from the address bar and the name from the
// observer itself: both are text only, and an unknown id is a notice, not an error.

import { h, replace, notice, defList, select } from '../dom.js';
import { get, isAbort } from '../api.js';
import { num, dB, duration, dateTime, iso, ms, shortKey, hhmm, payloadTypeName, routeTypeName } from '../format.js';
import { columns, lineChart, hbars } from '../components/charts.js';
import { sortableTable } from '../components/table.js';
import { since, hashSizeBadge, roleBadge } from '../components/badges.js';

export const title = 'Observer';

/** The windows offered: span, metrics resolution, analytics days. */
const WINDOWS = {
  '24h': { label: 'last 24 hours', span: 86400000, resolution: '5m', days: 1 },
  '7d': { label: 'last 7 days', span: 7 * 86400000, resolution: '1h', days: 7 },
  '30d': { label: 'last 30 days', span: 30 * 86400000, resolution: '1d', days: 30 },
};

const volts = (mv) => (typeof mv === 'number' && Number.isFinite(mv) ? `${(mv / 1000).toFixed(2)} V` : '—');
const pctText = (v) => (typeof v === 'number' && Number.isFinite(v) ? `${v.toFixed(1)} %` : '—');

function panel(id, section, heading, ...body) {
  return h('section', { class: 'panel', 'aria-labelledby': id, 'data-section': section }, h('h2', { id }, heading), ...body);
}

function cards(list) {
  return h('div', { class: 'cards cards-small' }, list.map(([k, label, v]) =>
    h('div', { class: 'card' }, h('span', { class: 'value', 'data-ob-stat': k }, v), h('span', { class: 'label' }, label))));
}

/** Who the observer is and how fresh its news is. */
function identity(o) {
  const field = (k, v) => h('span', { 'data-ob-field': k }, v);
  const hasLoc = typeof o.lat === 'number' && typeof o.lon === 'number' && (o.lat !== 0 || o.lon !== 0);
  return h('div', null,
    h('p', null,
      o.status ? h('span', { class: `badge status-${String(o.status).replace(/[^a-z]/g, '')}`, 'data-ob-field': 'status' }, o.status) : h('span', { class: 'muted' }, 'no status yet'),
      ' ', o.nodeRole ? roleBadge(o.nodeRole) : null),
    h('div', { class: 'grid2' },
      defList([
        ['Name', field('name', o.name || '—')],
        ['Observer key', h('code', { class: 'break', 'data-ob-field': 'id' }, o.id)],
        ['Region (IATA)', field('iata', o.iata || '—')],
        ['Last packet', o.last_packet_at ? h('span', { 'data-ob-field': 'last_packet_at' }, since(o.last_packet_at)) : field('last_packet_at', 'never')],
        ['Last status', o.last_status_at ? h('span', { 'data-ob-field': 'last_status_at' }, since(o.last_status_at)) : field('last_status_at', 'never')],
        ['Uptime', field('uptime_secs', duration(o.uptime_secs))],
        ['First seen', field('first_seen', dateTime(o.first_seen))],
        ['Packets', field('packet_count', num(o.packet_count))],
        ['Packets in the last hour', field('packetsLastHour', num(o.packetsLastHour))],
      ]),
      defList([
        ['Firmware', field('firmware', o.firmware || '—')],
        ['Model', field('model', o.model || '—')],
        ['Uploader', field('client_version', o.client_version || '—')],
        ['Radio (MHz, kHz, SF, CR)', field('radio', o.radio || '—')],
        ['Battery', field('battery_mv', volts(o.battery_mv))],
        ['Noise floor', field('noise_floor', dB(o.noise_floor, 'dBm'))],
        ['Airtime counters (tx / rx)', field('air_secs', `${duration(o.tx_air_secs)} / ${duration(o.rx_air_secs)}`)],
        ['Receive errors', field('recv_errors', num(o.recv_errors))],
        ['Location', hasLoc ? `${o.lat.toFixed(5)}, ${o.lon.toFixed(5)}` : 'unknown (its own node has not advertised one)'],
      ])),
    h('p', null,
      h('a', { href: `#/packets?observer=${encodeURIComponent(o.id)}`, 'data-ob-link': 'packets' }, 'Packets heard by this observer'),
      o.nodeRole ? [' · ', h('a', { href: `#/nodes/${encodeURIComponent(o.id)}`, 'data-ob-link': 'node' }, 'Its own node')] : null));
}

/** A line chart of one metric, with the count of its values as `data-points`. */
function metricChart(key, heading, pts, opts, empty) {
  const n = pts.filter((p) => Number.isFinite(p.v)).length;
  return h('div', { 'data-chart': key, 'data-points': String(n) },
    h('h3', null, heading),
    n ? lineChart(pts, { height: 140, ...opts }) : notice(empty));
}

function metricsBody(m, win) {
  const list = Array.isArray(m.metrics) ? m.metrics : [];
  const reboots = Array.isArray(m.reboots) ? m.reboots : [];
  const fmt = win.days <= 1 ? hhmm : (t) => new Date(t).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', hour12: false });
  const series = (f) => list.map((x) => ({ t: ms(x.timestamp), v: f(x) }));
  const nz = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const last = (k) => {
    for (let i = list.length - 1; i >= 0; i--) if (typeof list[i][k] === 'number') return list[i][k];
    return null;
  };
  if (!list.length) return notice(`This observer sent no status with metrics in the ${win.label}.`);
  return h('div', null,
    cards([
      ['buckets', 'samples drawn', num(list.length)],
      ['samples', 'statuses', num(list.reduce((a, x) => a + (typeof x.samples === 'number' ? x.samples : 0), 0))],
      ['reboots', 'reboots', num(reboots.length)],
      ['noise_floor', 'noise floor (latest)', dB(last('noise_floor_last'), 'dBm')],
      ['battery', 'battery (latest)', volts(last('battery_mv'))],
    ]),
    m.truncated ? notice('Only the first part of this window is drawn: it has more buckets than one answer carries.', 'warn') : null,
    h('div', { class: 'an-grid' },
      metricChart('noise_floor', 'Noise floor (dBm)', series((x) => nz(x.noise_floor)), { label: 'noise floor', unit: 'dBm', fmtTime: fmt }, 'No noise floor reported in this window.'),
      metricChart('tx_airtime_pct', 'Transmit airtime (%)', series((x) => nz(x.tx_airtime_pct)), { label: 'transmit airtime share', unit: '%', fmtTime: fmt },
        'No transmit airtime share: it needs two statuses in consecutive buckets.'),
      metricChart('rx_airtime_pct', 'Receive airtime (%)', series((x) => nz(x.rx_airtime_pct)), { label: 'receive airtime share', unit: '%', fmtTime: fmt },
        'No receive airtime share: it needs two statuses in consecutive buckets.'),
      metricChart('recv_errors', 'Receive errors (since boot)', series((x) => nz(x.recv_errors)), { label: 'receive errors since boot', fmtTime: fmt }, 'No receive error counter reported.'),
      metricChart('battery', 'Battery (V)', series((x) => (nz(x.battery_mv) === null ? null : x.battery_mv / 1000)), { label: 'battery voltage', unit: 'V', digits: 2, fmtTime: fmt },
        'No battery voltage reported.')),
    reboots.length
      ? h('p', { 'data-reboots': String(reboots.length) }, 'Reboots (a counter went down): ',
        reboots.map((t, i) => [i ? ', ' : '', h('time', { datetime: iso(t) }, dateTime(t))]))
      : null);
}

/** What the observer hears: traffic, types, hash sizes, SNR, airtime, recent packets. */
function heardBody(a, win) {
  const timeline = Array.isArray(a.timeline) ? a.timeline : [];
  const nodes = Array.isArray(a.nodesTimeline) ? a.nodesTimeline : [];
  const snr = Array.isArray(a.snrDistribution) ? a.snrDistribution : [];
  const recent = Array.isArray(a.recentPackets) ? a.recentPackets : [];
  const types = Object.entries(a.packetTypes || {}).map(([k, v]) => ({ label: payloadTypeName(k), value: v })).sort((x, y) => y.value - x.value);
  const sizes = Object.entries(a.hashSizes || {}).map(([k, v]) => ({ label: `${k}-byte`, value: v })).sort((x, y) => x.label.localeCompare(y.label));
  const air = a.airtime || {};
  const total = timeline.reduce((s, b) => s + (typeof b.count === 'number' ? b.count : 0), 0);
  const every = (n) => Math.max(1, Math.ceil(n / 12));
  const t = sortableTable({
    label: 'packets this observer heard most recently', sortKey: 'timestamp', sortDir: 'desc',
    rowAttrs: (p) => ({ 'data-hash': p.hash }),
    empty: 'Nothing heard in this window.',
    columns: [
      { key: 'timestamp', label: 'Heard', value: (p) => ms(p.timestamp),
        render: (p) => h('time', { datetime: iso(p.timestamp), title: dateTime(p.timestamp) }, dateTime(p.timestamp)) },
      { key: 'hash', label: 'Packet', render: (p) => h('a', { href: `#/packets/${encodeURIComponent(p.hash)}`, class: 'mono' }, p.hash) },
      { key: 'payload_type', label: 'Type', value: (p) => payloadTypeName(p.payload_type), render: (p) => payloadTypeName(p.payload_type) },
      { key: 'route_type', label: 'Route', value: (p) => routeTypeName(p.route_type), render: (p) => routeTypeName(p.route_type) },
      { key: 'snr', label: 'SNR', cls: 'num', render: (p) => dB(p.snr, 'dB') },
      { key: 'rssi', label: 'RSSI', cls: 'num', render: (p) => dB(p.rssi, 'dBm') },
      { key: 'hops', label: 'Hops', cls: 'num', render: (p) => num(p.hops) },
      { key: 'hash_size', label: 'Hash size', render: (p) => hashSizeBadge(p.hash_size) },
      { key: 'airtime_ms', label: 'Airtime', cls: 'num',
        render: (p) => (typeof p.airtime_ms === 'number' ? `${Math.round(p.airtime_ms)} ms${p.airtime_source ? ` (${p.airtime_source})` : ''}` : '—') },
    ],
  });
  t.setRows(recent);
  return h('div', null,
    cards([
      ['packets', 'packets heard', num(total)],
      ['types', 'payload types', num(types.length)],
      ['airtime', 'airtime heard', typeof air.total_ms === 'number' ? `${(air.total_ms / 1000).toFixed(1)} s` : '—'],
      ['uploader_ms', 'airtime from the uploader', typeof air.uploader_ms === 'number' ? `${(air.uploader_ms / 1000).toFixed(1)} s` : '—'],
      ['formula_ms', 'airtime computed', typeof air.formula_ms === 'number' ? `${(air.formula_ms / 1000).toFixed(1)} s` : '—'],
      ['unknown_packets', 'airtime unknown (packets)', num(air.unknown_packets ?? 0)],
    ]),
    a.truncated ? notice('Only the newest observations of this window are counted (the scan has a cap).', 'warn') : null,
    h('div', { class: 'an-grid' },
      h('div', { 'data-chart': 'timeline', 'data-points': String(timeline.length) }, h('h3', null, 'Packets over time'),
        timeline.length ? columns(timeline.map((b) => ({ label: b.label, value: b.count })), { label: 'packets heard per bucket', labelEvery: every(timeline.length) }) : notice(`Nothing heard in the ${win.label}.`)),
      h('div', { 'data-chart': 'nodes', 'data-points': String(nodes.length) }, h('h3', null, 'Nodes heard over time'),
        nodes.length ? columns(nodes.map((b) => ({ label: b.label, value: b.count })), { label: 'distinct nodes heard per bucket', labelEvery: every(nodes.length) }) : notice('No node heard.')),
      h('div', { 'data-chart': 'types' }, h('h3', null, 'By payload type'),
        types.length ? hbars(types, { label: 'packets heard by payload type', fmt: num }) : notice('Nothing heard.')),
      h('div', { 'data-chart': 'sizes' }, h('h3', null, 'By path hash size'),
        sizes.length ? hbars(sizes, { label: 'packets heard by path hash size', fmt: num }) : notice('Nothing heard.')),
      h('div', { 'data-chart': 'snr', 'data-points': String(snr.length) }, h('h3', null, 'SNR distribution (dB)'),
        snr.length ? columns(snr.map((b) => ({ label: String(b.range).split(' to ')[0], value: b.count })), { label: 'packets per 2 dB SNR bin', labelEvery: every(snr.length) }) : notice('No SNR reported.'))),
    h('h3', null, `Recent packets (${num(recent.length)})`),
    t.el);
}

export function mount(root, ctx) {
  const id = String(ctx.params.id ?? '');
  const enc = encodeURIComponent(id);
  const heading = h('h1', { tabindex: '-1' }, 'Observer');
  const idBox = h('div', null, notice('Loading…'));
  const idPanel = panel('ob-identity', 'identity', 'Identity and freshness', idBox);
  const mBox = h('div', null);
  const aBox = h('div', null);
  const winKey = WINDOWS[ctx.query.window] ? ctx.query.window : '24h';
  const picker = h('p', { 'data-section': 'window' }, h('label', null, 'Window ',
    select('window', Object.entries(WINDOWS).map(([k, w]) => [k, w.label]), winKey, (v) => {
      ctx.setQuery({ ...ctx.query, window: v });
      loadWindow(WINDOWS[v] ? v : '24h');
    }, { name: 'window' })));
  const mPanel = panel('ob-metrics', 'metrics', 'Health over time', mBox);
  const aPanel = panel('ob-heard', 'heard', 'What it hears', aBox);
  root.append(h('p', null, h('a', { href: '#/observers' }, '← All observers')), heading, idPanel);

  let seq = 0;
  /** Loads the metrics and the analytics of a window; answers of an older choice are dropped. */
  function loadWindow(key) {
    const win = WINDOWS[key];
    const mine = ++seq;
    const until = Date.now();
    const params = { since: new Date(until - win.span).toISOString(), until: new Date(until).toISOString(), resolution: win.resolution };
    mPanel.dataset.ready = 'false';
    aPanel.dataset.ready = 'false';
    mPanel.dataset.window = key;
    aPanel.dataset.window = key;
    Object.assign(mPanel.dataset, params);
    aPanel.dataset.days = String(win.days);
    replace(mBox, notice('Loading…'));
    replace(aBox, notice('Loading…'));
    ctx.guard(get(`/api/observers/${enc}/metrics`, params, ctx.signal), mBox).then((m) => {
      if (!m || mine !== seq) return;
      replace(mBox, metricsBody(m, win));
      mPanel.dataset.ready = 'true';
    });
    ctx.guard(get(`/api/observers/${enc}/analytics`, { days: win.days }, ctx.signal), aBox).then((a) => {
      if (!a || mine !== seq) return;
      replace(aBox, heardBody(a, win));
      aPanel.dataset.ready = 'true';
    });
  }

  function showIdentity(o) {
    heading.textContent = o.name || shortKey(o.id);
    document.title = `${o.name || shortKey(o.id)} — observer — meshlens`;
    root.dataset.observer = o.id;
    replace(idBox, identity(o));
    idPanel.dataset.ready = 'true';
  }

  async function loadIdentity(first) {
    let o;
    try {
      o = await get(`/api/observers/${enc}`, null, ctx.signal);
    } catch (e) {
      if (isAbort(e) || ctx.signal.aborted) return;
      if (first && (e.status === 404 || e.status === 400)) {
        // An id nobody published under (or one that cannot be an id): say so, load nothing else.
        heading.textContent = 'No such observer';
        root.dataset.missing = 'true';
        replace(idBox, h('p', { class: 'notice notice-info', role: 'status', 'data-missing': '' },
          'No observer has published as ', h('code', { class: 'break' }, id), '. ', h('a', { href: '#/observers' }, 'See all observers.')));
        return;
      }
      if (first) replace(idBox, notice(`Could not load: ${e.message}`, 'error'));
      return;
    }
    // Only an observer object is an answer (`/api/observers/clock-skew` is a list).
    if (!o || typeof o !== 'object' || Array.isArray(o) || typeof o.id !== 'string') {
      if (first) {
        heading.textContent = 'No such observer';
        root.dataset.missing = 'true';
        replace(idBox, h('p', { class: 'notice notice-info', role: 'status', 'data-missing': '' }, 'No observer has published as ', h('code', { class: 'break' }, id), '.'));
      }
      return;
    }
    showIdentity(o);
    if (first) {
      root.append(picker, mPanel, aPanel);
      loadWindow(winKey);
      ctx.every(30000, () => loadIdentity(false));
    }
  }
  loadIdentity(true);
}
