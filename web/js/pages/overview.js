// Overview (#/): network counts, a traffic sparkline, the multi-byte roll-out at a glance
// and the latest packets. Counts refresh every 10 s while the tab is visible; the latest
// packets come over the live feed.

import { h, replace, notice } from '../dom.js';
import { get, ApiError } from '../api.js';
import { num, ago, clock, hhmm, summarize, ROLES, ROLE_LABEL, pct } from '../format.js';
import { sparkline, stackBar } from '../components/charts.js';
import { hashSizeBadge } from '../components/badges.js';

export const title = 'Overview';

function card(label, value, href, hook) {
  const v = h('span', { class: 'value', 'data-stat': hook }, value);
  return href ? h('a', { class: 'card', href }, v, h('span', { class: 'label' }, label))
    : h('div', { class: 'card' }, v, h('span', { class: 'label' }, label));
}

function statsCards(s) {
  const counts = s.counts || {};
  return h('div', null,
    h('div', { class: 'cards' },
      card('Packets (transmissions)', num(s.totalTransmissions), '#/packets', 'transmissions'),
      card('Observations', num(s.totalObservations), '#/live', 'observations'),
      card('Nodes', num(s.totalNodes), '#/nodes', 'nodes'),
      card('Observers', num(s.totalObservers), '#/observers', 'observers')),
    h('div', { class: 'cards cards-small' },
      ROLES.map((r) => card(`${ROLE_LABEL[r]}s`, num(counts[r] || 0), `#/nodes?role=${r}`, `role-${r}`))));
}

/** Traffic per bucket from /api/stats/traffic, or per hour from the hash-size analytics. */
async function trafficPoints(signal) {
  try {
    const t = await get('/api/stats/traffic', { window: '24h' }, signal);
    const step = Math.round((t.bucketMs || 0) / 60000);
    return {
      points: (t.buckets || []).map((b) => ({ axis: hhmm(b.t), t: `${hhmm(b.t)} (${num(b.observations || 0)} observations)`, v: b.packets || 0 })),
      what: `packets per ${step >= 60 ? `${step / 60} h` : `${step} min`}, last 24 h`,
    };
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  // Older servers: hourly totals from the hash-size analytics.
  const a = await get('/api/analytics/hash-sizes', { window: '24h' }, signal);
  return {
    points: (a.hourly || []).map((r) => ({ axis: `${String(r.hour).slice(11)}:00`, t: `${String(r.hour).slice(11)}:00`, v: (r['1'] || 0) + (r['2'] || 0) + (r['3'] || 0) })),
    what: 'packets per hour, last 24 h',
  };
}

function rollout(a) {
  const ad = a.adoption || {};
  const dist = a.distribution || {};
  const total = (dist['1'] || 0) + (dist['2'] || 0) + (dist['3'] || 0);
  return h('div', null,
    stackBar([
      { key: 'confirmed', label: 'confirmed', value: ad.confirmed || 0 },
      { key: 'suspected', label: 'suspected', value: ad.suspected || 0 },
      { key: 'unknown', label: 'unknown', value: ad.unknown || 0 },
    ], { label: 'multi-byte capability of nodes' }),
    h('p', null, h('strong', { 'data-stat': 'legacy' }, num(ad.legacySuspects || 0)), ' repeaters look like they hold multi-byte back (',
      h('a', { href: '#/nodes?cap=legacy' }, 'list them'), '). ', h('a', { href: '#/multibyte' }, 'See the roll-out dashboard')),
    h('p', { class: 'muted' }, `Path hash sizes in traffic: 1 B ${pct(dist['1'] || 0, total)}, 2 B ${pct(dist['2'] || 0, total)}, 3 B ${pct(dist['3'] || 0, total)}`));
}

export function mount(root, ctx) {
  const statsBox = h('div', null, notice('Loading…'));
  const trafficBox = h('div', null, notice('Loading…'));
  const rolloutBox = h('div', null, notice('Loading…'));
  const latest = h('ul', { class: 'feed', 'aria-label': 'latest packets' });
  root.append(
    h('h1', { tabindex: '-1' }, 'Overview'),
    statsBox,
    h('div', { class: 'grid2' },
      h('section', { class: 'panel', 'aria-labelledby': 'ov-traffic' }, h('h2', { id: 'ov-traffic' }, 'Traffic'), trafficBox),
      h('section', { class: 'panel', 'aria-labelledby': 'ov-rollout' }, h('h2', { id: 'ov-rollout' }, 'Multi-byte roll-out'), rolloutBox)),
    h('section', { class: 'panel', 'aria-labelledby': 'ov-latest' }, h('h2', { id: 'ov-latest' }, 'Latest packets ', h('a', { href: '#/live', class: 'muted' }, '(live feed)')), latest));

  async function refresh() {
    const s = await ctx.guard(get('/api/stats', null, ctx.signal), statsBox);
    if (s) replace(statsBox, statsCards(s));
    const t = await ctx.guard(trafficPoints(ctx.signal), trafficBox);
    if (t) {
      const total = t.points.reduce((a, p) => a + p.v, 0);
      const first = t.points[0];
      const last = t.points[t.points.length - 1];
      replace(trafficBox, t.points.length > 1 ? sparkline(t.points, { label: `${t.what}: ${num(total)} in total` }) : notice(`${num(total)} packets so far.`),
        h('div', { class: 'axis' }, h('span', null, first ? first.axis : ''), h('span', null, `${t.what}: ${num(total)}`),
          h('span', null, last ? last.axis : '')));
    }
    const a = await ctx.guard(get('/api/analytics/hash-sizes', null, ctx.signal), rolloutBox);
    if (a) replace(rolloutBox, rollout(a));
  }

  async function loadLatest() {
    const p = await ctx.guard(get('/api/packets', { limit: 10 }, ctx.signal), latest);
    if (!p) return;
    replace(latest, p.packets.map((pk) => feedItem(pk.hash, pk.timestamp, pk.payload_type_name, pk.hash_size, summarize(pk.decoded, pk.channel))));
  }

  const seen = new Set();
  ctx.live((msg) => {
    if (msg.type !== 'packet' || !msg.data || seen.has(msg.data.hash)) return;
    const d = msg.data;
    seen.add(d.hash);
    if (seen.size > 200) seen.clear();
    latest.prepend(feedItem(d.hash, d.timestamp, d.decoded && d.decoded.payload_type_name, d.hash_size, summarize(d.decoded, d.channel)));
    while (latest.children.length > 10) latest.lastElementChild.remove();
  });

  refresh();
  loadLatest();
  ctx.every(10000, refresh);
}

function feedItem(hash, time, type, hs, text) {
  return h('li', { 'data-hash': hash },
    h('span', null, clock(time)),
    h('a', { href: `#/packets/${encodeURIComponent(hash)}`, title: `packet ${hash}` }, type || '?'),
    h('span', { class: 'f-hs' }, hashSizeBadge(hs)),
    h('span', { class: 'mono f-obs' }, hash.slice(0, 12)),
    h('span', { class: 'f-rf muted' }, ago(time)),
    h('span', null, text));
}
