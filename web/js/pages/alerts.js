// Alerts (#/alerts): what is firing now (and what is held back while a node flaps), the
// notifications sent, newest first, and the rules and receivers as configured: read-only,
// from /api/alerts. Names come from the mesh and go in as text. Refreshes every 10 s.

import { h, replace, notice, defList } from '../dom.js';
import { get } from '../api.js';
import { ago, dateTime, duration, num, shortKey, iso } from '../format.js';
import { sortableTable } from '../components/table.js';

export const title = 'Alerts';

const RULES = {
  node_offline: 'Node offline',
  observer_offline: 'Observer offline',
  ingest_stalled: 'Ingest stalled',
  new_node: 'New node',
  capability_regressed: 'Multi-byte regressed',
  observer_clock_skew: 'Observer clock',
  noise_floor_spike: 'Noise floor spike',
  rate_limited: 'Rate limited',
};

function subjectLink(s) {
  if (!s) return '—';
  const label = s.name || shortKey(s.id || '');
  if (s.kind === 'node' && /^[0-9a-f]{64}$/.test(s.id || '')) return h('a', { href: `#/nodes/${s.id}` }, label);
  if (s.kind === 'observer') return h('a', { href: `#/packets?observer=${encodeURIComponent(s.id)}` }, label);
  return label;
}

function when(t) {
  return t ? h('time', { datetime: iso(t), title: dateTime(t) }, ago(t)) : '—';
}

function stateBadge(state, settling) {
  const cls = state === 'firing' ? 'fresh-bad' : 'fresh-ok';
  return h('span', { class: `badge ${cls}` }, settling ? `${state} (settling)` : state);
}

const ACTIVE = [
  { key: 'rule', label: 'Rule', render: (a) => RULES[a.rule] || a.rule },
  { key: 'subject', label: 'Subject', value: (a) => (a.subject && (a.subject.name || a.subject.id)) || '', render: (a) => subjectLink(a.subject) },
  { key: 'state', label: 'State', render: (a) => stateBadge(a.state, a.settling) },
  { key: 'sinceMs', label: 'Since', render: (a) => when(a.since) },
  { key: 'message', label: 'Message', render: (a) => a.message || '' },
];

const HISTORY = [
  { key: 'at', label: 'Sent', render: (n) => when(n.at) },
  { key: 'rule', label: 'Rule', render: (n) => RULES[n.rule] || n.rule },
  { key: 'state', label: 'State', render: (n) => stateBadge(n.state, false) },
  { key: 'subject', label: 'Subject', value: (n) => (n.subject && (n.subject.name || n.subject.id)) || '', render: (n) => subjectLink(n.subject) },
  { key: 'message', label: 'Message', render: (n) => n.message || '' },
];

const RECEIVERS = [
  { key: 'name', label: 'Receiver', render: (r) => r.name },
  { key: 'format', label: 'Format', render: (r) => r.format },
  { key: 'host', label: 'Host', render: (r) => h('span', { class: 'mono' }, r.host || '—') },
  { key: 'rules', label: 'Rules', render: (r) => (Array.isArray(r.rules) ? r.rules.map((x) => RULES[x] || x).join(', ') : 'all') },
  { key: 'delivered', label: 'Delivered', cls: 'num', render: (r) => num(r.delivered) },
  { key: 'queued', label: 'Waiting', cls: 'num', render: (r) => num(r.queued) },
  { key: 'failures', label: 'Failed attempts', cls: 'num', render: (r) => num(r.failures) },
  { key: 'lastError', label: 'Last error', render: (r) => r.lastError || '—' },
];

function secs(v) {
  return typeof v === 'number' ? duration(v) : 'off';
}

function rulesPanel(a) {
  const r = a.rules || {};
  const node = r.node_offline || {};
  return defList([
    ['Repeater silent for', secs(node.repeaterSilenceSecs)],
    ['Room server silent for', secs(node.roomSilenceSecs)],
    ['Observer silent for', secs((r.observer_offline || {}).silenceSecs)],
    ['No packets at all for', secs((r.ingest_stalled || {}).silenceSecs)],
    ['New nodes', (r.new_node || {}).enabled ? 'announced' : 'off'],
    ['Multi-byte regressions', (r.capability_regressed || {}).enabled ? 'reported' : 'off'],
    ['Observer clock off by', secs((r.observer_clock_skew || {}).thresholdSecs)],
    ['Noise floor above usual by', typeof (r.noise_floor_spike || {}).thresholdDb === 'number' ? `${r.noise_floor_spike.thresholdDb} dB` : 'off'],
    ['Hysteresis', secs(r.hysteresisSecs)],
    ['Evaluated every', typeof r.evalIntervalSecs === 'number' ? `${r.evalIntervalSecs} s` : '—'],
    ['At most per receiver', typeof r.maxPerMinute === 'number' ? `${r.maxPerMinute} a minute` : '—'],
    ['Last evaluation', a.evaluatedAt ? when(a.evaluatedAt) : 'not yet'],
    ['Evaluation errors', a.lastError ? `${num(a.evaluationErrors)} (last: ${a.lastError})` : num(a.evaluationErrors)],
  ]);
}

export function mount(root, ctx) {
  const active = h('div', null, notice('Loading…'));
  const history = h('div', null, notice('Loading…'));
  const config = h('div', null, notice('Loading…'));
  const at = sortableTable({ label: 'active alerts', columns: ACTIVE, sortKey: 'sinceMs', rowAttrs: (a) => ({ 'data-alert': a.rule }) });
  const ht = sortableTable({ label: 'notifications', columns: HISTORY, sortKey: 'at', rowAttrs: (n) => ({ 'data-notification': n.rule }) });
  const rt = sortableTable({ label: 'receivers', columns: RECEIVERS, sortKey: 'name' });
  root.append(h('h1', { tabindex: '-1' }, 'Alerts'),
    h('section', { class: 'panel', 'aria-labelledby': 'al-active' }, h('h2', { id: 'al-active' }, 'Firing now'), active),
    h('section', { class: 'panel', 'aria-labelledby': 'al-history' }, h('h2', { id: 'al-history' }, 'Sent'), history),
    h('section', { class: 'panel', 'aria-labelledby': 'al-config' }, h('h2', { id: 'al-config' }, 'Rules and receivers'), config));

  async function refresh() {
    const a = await ctx.guard(get('/api/alerts', null, ctx.signal), active);
    if (!a) return;
    if (!a.enabled) {
      replace(active, notice('Alerting is off.'));
      replace(history, '');
      replace(config, '');
      return;
    }
    const rows = Array.isArray(a.active) ? a.active : [];
    at.setRows(rows);
    replace(active, rows.length ? at.el : notice('Nothing is firing.'));
    const sent = Array.isArray(a.history) ? a.history : [];
    ht.setRows(sent);
    replace(history, sent.length ? ht.el : notice('No notification sent yet.'));
    const recv = Array.isArray(a.receivers) ? a.receivers : [];
    rt.setRows(recv);
    replace(config, rulesPanel(a), recv.length ? rt.el : notice('No receiver configured: alerts show here and in /metrics only (--alert-webhook URL to add one).'));
  }
  refresh();
  ctx.every(10000, refresh);
}
