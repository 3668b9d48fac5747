// Packet detail (#/packets/<hash>): the frame byte by byte (hex coloured by field, with a
// legend), the decoded fields, the path with the node each hop resolved to (the server's
// `hops`: node, confidence, the alternatives), and every observation (observer, SNR, RSSI,
// path as heard and resolved). New observations arrive live with their hops resolved from
// that copy alone (the live feed's `hops`).

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

// From this confidence a hop counts as resolved (the server's `hops::RESOLVED`): below it the
// hop is shown as uncertain, its best guess among the alternatives, never as a link.
const RESOLVED = 0.5;

/** A probability as a whole percentage ("93 %"). */
function pctOf(p) {
  return typeof p === 'number' && Number.isFinite(p) ? `${Math.round(p * 100)} %` : '—';
}

function nodeLabel(x) {
  return x.name || shortKey(x.pubkey);
}

/** The alternatives of one hop (the server's candidates, most likely first) as a list. */
function candidateList(hop) {
  return h('ul', { class: 'hop-candidates', 'aria-label': `nodes hop ${hop.prefix} may be` },
    hop.candidates.map((c) => h('li', { 'data-candidate': c.pubkey, 'data-confidence': c.confidence },
      h('a', { href: `#/nodes/${encodeURIComponent(c.pubkey)}`, title: c.pubkey }, nodeLabel(c)), ' ',
      h('span', { class: 'conf' }, pctOf(c.confidence)))));
}

/**
 * One hop as the server resolved it (`{prefix, pubkey, name, confidence, candidates}`): a
 * link to the node with its confidence when resolved, the prefix marked uncertain otherwise;
 * `detailed` adds the alternatives as a disclosure (else they are in the title).
 */
function hopItem(hop, detailed) {
  const cands = Array.isArray(hop.candidates) ? hop.candidates.filter((c) => c && c.pubkey) : [];
  const conf = typeof hop.confidence === 'number' ? hop.confidence : 0;
  const resolved = !!hop.pubkey && conf >= RESOLVED;
  const alt = cands.map((c) => `${nodeLabel(c)} ${pctOf(c.confidence)}`).join(', ');
  const li = h('li', {
    class: `hop ${resolved ? 'hop-resolved' : cands.length ? 'hop-uncertain' : 'hop-unknown'}`,
    'data-hop': hop.prefix, 'data-confidence': conf, 'data-hop-pubkey': resolved ? hop.pubkey : null, 'data-candidates': cands.length,
    title: `${hop.prefix}: ${resolved ? `${pctOf(conf)} sure` : cands.length ? 'uncertain' : 'no known node has this prefix'}${alt ? ` — candidates: ${alt}` : ''}`,
  });
  if (resolved) {
    li.append(h('a', { href: `#/nodes/${encodeURIComponent(hop.pubkey)}`, class: 'hop-node' }, nodeLabel(hop)), ' ',
      h('span', { class: 'conf' }, pctOf(conf)));
  } else {
    li.append(h('span', { class: 'mono' }, hop.prefix), ' ',
      h('span', { class: 'conf conf-low' }, cands.length ? `uncertain${detailed ? '' : ` (${cands.length})`}` : 'unknown'));
  }
  const others = resolved ? cands.filter((c) => c.pubkey !== hop.pubkey) : cands;
  if (detailed && others.length) {
    li.append(h('details', { class: 'hop-alt' },
      h('summary', null, resolved ? `${others.length} other${others.length > 1 ? 's' : ''}` : `${cands.length} candidate${cands.length > 1 ? 's' : ''}`),
      candidateList({ prefix: hop.prefix, candidates: cands })));
  }
  return li;
}

/**
 * A path as chips: each hop the node the server resolved it to (`hops`), or — for an
 * observation heard after the page loaded, which carries no resolution — its bare prefix.
 */
function pathView(path, hops, detailed) {
  if (!Array.isArray(path) || !path.length) {
    return detailed ? h('p', { class: 'muted' }, 'No hops: heard directly from the originator (or a direct route with an empty path).') : '—';
  }
  const list = h('ol', { class: 'hops resolved-hops', 'aria-label': 'path hops in order' });
  const known = Array.isArray(hops) && hops.length === path.length;
  path.forEach((prefix, i) => {
    if (known && hops[i] && typeof hops[i].prefix === 'string') list.append(hopItem(hops[i], detailed));
    else list.append(h('li', { class: 'hop hop-unknown', 'data-hop': prefix, title: 'not resolved (heard after this page was opened)' }, h('span', { class: 'mono' }, prefix)));
  });
  return list;
}

/** The observation whose path is the packet's (first heard), the earliest such. */
function firstHeard(p, observations) {
  const key = (p.path || []).join(',').toLowerCase();
  const same = observations.filter((o) => Array.isArray(o.hops) && (o.path || []).join(',').toLowerCase() === key);
  same.sort((a, b) => String(a.timestamp).localeCompare(String(b.timestamp)));
  return same[0] || null;
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
    { key: 'path', label: 'Path as heard (resolved hops)', value: (o) => (o.path || []).join(' '), render: (o) => pathView(o.path, o.hops, false) },
  ];
}

export function mount(root, ctx) {
  const hash = ctx.params.hash;
  const heading = h('h1', { tabindex: '-1' }, 'Packet ', h('span', { class: 'mono' }, hash));
  const body = h('div', null, notice('Loading…'));
  const summaryEl = h('span', { 'data-summary': '' });
  root.append(h('p', null, h('a', { href: '#/packets' }, '← All packets')), heading, body);

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
    const first = firstHeard(p, observations);
    const firstPath = pathView(p.path, first && first.hops, true);
    if (first && firstPath.dataset) firstPath.dataset.obsId = String(first.id);
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
      h('section', { class: 'panel', 'aria-labelledby': 'pk-path' }, h('h2', { id: 'pk-path' }, 'Path (first heard)'),
        h('p', { class: 'muted' }, 'Each hop is the node the server resolved it to, with how sure it is; below 50 % a hop is uncertain and only its candidates are listed.'),
        firstPath),
      h('section', { class: 'panel', 'aria-labelledby': 'pk-decoded' }, h('h2', { id: 'pk-decoded' }, 'Decoded fields'), decodedList(dec)),
      h('section', { class: 'panel', 'aria-labelledby': 'pk-obs' }, h('h2', { id: 'pk-obs' }, 'Observations (', obsCount, ')'), obs.el));

    const seen = new Set(observations.map((o) => o.id));
    ctx.live((msg) => {
      const o = msg.type === 'packet' && msg.data;
      if (!o || o.hash !== p.hash || seen.has(o.id)) return;
      seen.add(o.id);
      observations.push({ id: o.id, observer_id: o.observer, observer_name: o.observer_name, iata: o.iata, timestamp: o.timestamp,
        snr: o.snr, rssi: o.rssi, hash_size: o.hash_size, hop_count: Array.isArray(o.path) ? o.path.length : null, path: o.path,
        hops: Array.isArray(o.hops) ? o.hops : undefined });
      obs.setRows(observations);
      obsCount.textContent = num(observations.length);
    });
  }
}
