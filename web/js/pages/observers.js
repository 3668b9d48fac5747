// Observers (#/observers): the radios that feed meshlens (each links to its page,
// #/observers/<id>, and to the packets it heard) — health (online/stale/offline),
// when each last sent a packet and a status, packets in the last hour, firmware, battery,
// noise floor — and the ingest side: per MQTT source state, message counts, last message
// and errors, from /api/healthz. Refreshes every 10 s while visible.

import { h, replace, notice, defList } from '../dom.js';
import { get } from '../api.js';
import { num, duration, dB, shortKey, ms } from '../format.js';
import { sortableTable } from '../components/table.js';
import { since } from '../components/badges.js';

export const title = 'Observers';

const COLUMNS = [
  { key: 'name', label: 'Observer', value: (o) => o.name || o.id,
    render: (o) => h('a', { href: `#/observers/${encodeURIComponent(o.id)}`, class: 'observer-name', title: `observer ${o.id}` }, o.name || shortKey(o.id)) },
  { key: 'packets', label: 'Heard', value: null,
    render: (o) => h('a', { href: `#/packets?observer=${encodeURIComponent(o.id)}`, class: 'observer-packets', title: `packets heard by ${o.id}` }, 'packets') },
  { key: 'iata', label: 'Region', render: (o) => o.iata || '—' },
  { key: 'status', label: 'Status', render: (o) => (o.status ? h('span', { class: `badge status-${String(o.status).replace(/[^a-z]/g, '')}` }, o.status) : h('span', { class: 'muted' }, 'no status yet')) },
  { key: 'last_packet_at', label: 'Last packet', value: (o) => ms(o.last_packet_at), render: (o) => since(o.last_packet_at) },
  { key: 'last_status_at', label: 'Last status', value: (o) => ms(o.last_status_at), render: (o) => since(o.last_status_at) },
  { key: 'packetsLastHour', label: 'Packets/h', cls: 'num', render: (o) => num(o.packetsLastHour) },
  { key: 'packet_count', label: 'Packets', cls: 'num', render: (o) => num(o.packet_count) },
  { key: 'firmware', label: 'Firmware', render: (o) => o.firmware || '—' },
  { key: 'model', label: 'Model', render: (o) => o.model || '—' },
  { key: 'battery_mv', label: 'Battery', cls: 'num', render: (o) => (typeof o.battery_mv === 'number' ? `${(o.battery_mv / 1000).toFixed(2)} V` : '—') },
  { key: 'noise_floor', label: 'Noise floor', cls: 'num', render: (o) => dB(o.noise_floor, 'dBm') },
  { key: 'uptime_secs', label: 'Uptime', render: (o) => duration(o.uptime_secs) },
];

function ingestPanel(hz) {
  const ing = hz.ingest || {};
  const sources = Object.entries(ing.sources || {});
  const st = sortableTable({
    label: 'MQTT sources', sortKey: 'name',
    rowAttrs: (s) => ({ 'data-source': s.name }),
    columns: [
      { key: 'name', label: 'Source', render: (s) => s.name },
      { key: 'state', label: 'State', render: (s) => h('span', { class: s.state === 'connected' ? 'fresh-ok' : 'fresh-bad' }, s.state || '—') },
      { key: 'broker', label: 'Broker', render: (s) => h('span', { class: 'mono break' }, s.broker || '—') },
      { key: 'messages', label: 'Messages', cls: 'num', render: (s) => num(s.messages) },
      { key: 'last_message_at', label: 'Last message', render: (s) => since(s.last_message_at) },
      { key: 'connects', label: 'Connects / drops', render: (s) => `${num(s.connects)} / ${num(s.disconnects)}` },
      { key: 'last_error', label: 'Last error', render: (s) => s.last_error || '—' },
    ],
  });
  st.setRows(sources.map(([name, s]) => ({ name, ...s })));
  const fresh = hz.seconds_since_last_observation;
  return h('div', null,
    defList([
      ['Ready', hz.ready ? 'yes' : 'no'],
      ['Last observation', hz.last_observation_at ? h('span', null, since(hz.last_observation_at), typeof fresh === 'number' ? ` (${fresh} s ago)` : '') : 'none yet'],
      ['Ingest', ing.state || (hz.ingest ? '—' : 'not running in this process')],
      ['Server uptime', duration(hz.uptime_secs)],
      ['Version', hz.version || '—'],
    ]),
    sources.length ? st.el : null);
}

export function mount(root, ctx) {
  const list = h('div', null, notice('Loading…'));
  const health = h('div', null, notice('Loading…'));
  const table = sortableTable({ label: 'observers', columns: COLUMNS, sortKey: 'name', rowAttrs: (o) => ({ 'data-observer': o.id, 'data-status': o.status }) });
  root.append(h('h1', { tabindex: '-1' }, 'Observers'),
    h('section', { class: 'panel', 'aria-labelledby': 'ob-ingest' }, h('h2', { id: 'ob-ingest' }, 'Ingest freshness'), health),
    h('section', { class: 'panel', 'aria-labelledby': 'ob-list' }, h('h2', { id: 'ob-list' }, 'Observers'), list));

  async function refresh() {
    const o = await ctx.guard(get('/api/observers', null, ctx.signal), list);
    if (o) {
      const rows = Array.isArray(o.observers) ? o.observers : [];
      table.setRows(rows);
      if (!list.contains(table.el)) replace(list, rows.length ? table.el : notice('No observer has reported yet.'));
    }
    const hz = await ctx.guard(get('/api/healthz', null, ctx.signal), health);
    if (hz) replace(health, ingestPanel(hz));
  }
  refresh();
  ctx.every(10000, refresh);
}
