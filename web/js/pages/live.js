// Live (#/live): a map on which every packet is animated along its path as it is heard
// (origin → relays → observer, coloured by type, line thickness by path hash size), above the
// text list of observations as they stream in over /ws. Copies of one packet heard by several
// observers within a few seconds are one propagation event. A hop is placed where the server
// resolved it (`resolved_path`, confidence ≥ 0.5 drawn solid); without a resolution the page
// draws what the path tells: a hop prefix that names exactly one known node is placed there,
// but drawn as uncertain (dashed) — as is any segment across a hop that could not be placed.
//
// Replay (`?mode=replay&hours=24&speed=10`) plays the last N hours back at 1×–60× from the
// API, a page of packets at a time ahead of the playhead (never the whole window), with
// pause, a scrub bar and "now". Filters (type, region, observer, node, hash_size) are the
// packet list's query parameters and apply to both. Debug counters (read-only) are on the
// section's dataset: events, active, dropped, merged, unplaced, segments, uncertain, pages,
// thinned (replay packets due in one frame beyond what is animated: listed, not drawn), gaps.

import { h, select, replace, notice } from '../dom.js';
import { get, isAbort } from '../api.js';
import { clock, dateTime, summarize, dB, shortKey, num, iso, PAYLOAD_TYPES } from '../format.js';
import { hashSizeBadge } from '../components/badges.js';
import { loadLeaflet } from '../components/leaflet.js';
import { animationLayer } from '../components/liveanim.js';

export const title = 'Live';

const KEEP = 500; // lines in the text list
const LIST_MS = 250; // how often the text list takes what arrived
const MAX_NODES = 2000;
const MAX_ACTIVE = 200; // events animating at once
const MERGE_MS = 5000; // copies of one hash this close together are one event
const MAX_RECENT = 2000; // hashes remembered for merging
const PAGE = 200; // packets per replay request
const LOW_WATER = 120; // fetch the next page when fewer are left ahead of the playhead
const GAP_MS = 2500; // a quiet stretch longer than this (wall time) is skipped
const EMIT_PER_FRAME = 40; // events started per frame in replay; more due are counted, not drawn
const SPEEDS = [1, 2, 5, 10, 30, 60];
const FILTER_KEYS = ['type', 'region', 'observer', 'node', 'hash_size'];

// Colours by payload type (canvas needs real colours; chosen to read on light map tiles).
const TYPE_COLOUR = {
  ADVERT: '#1f6feb', GRP_TXT: '#1a7f37', TXT_MSG: '#8250df', ACK: '#6e7781', PATH: '#bc4c00',
  REQ: '#cf222e', RESPONSE: '#d4a72c', TRACE: '#0598bc', ANON_REQ: '#bf3989', GRP_DATA: '#2da44e',
};
const OTHER_COLOUR = '#57606a';
const colourOf = (t) => TYPE_COLOUR[t] || OTHER_COLOUR;

function line(d, replay) {
  const dec = d.decoded || {};
  return h('li', { 'data-hash': d.hash, 'data-type': dec.payload_type_name || d.payload_type_name || '', 'data-replay': replay ? 'true' : null },
    h('span', null, h('time', { datetime: d.timestamp }, clock(d.timestamp))),
    h('span', null, h('a', { href: `#/packets/${encodeURIComponent(d.hash)}`, title: `packet ${d.hash}` }, dec.payload_type_name || '?')),
    h('span', { class: 'f-hs' }, hashSizeBadge(d.hash_size ?? dec.hash_size)),
    h('span', { class: 'f-obs', title: d.observer || d.observer_id }, d.observer_name || shortKey(d.observer || d.observer_id)),
    h('span', { class: 'f-rf muted' }, `${dB(d.snr, 'dB')} ${dB(d.rssi, 'dBm')}`),
    h('span', null, summarize(dec, d.channel)));
}

const located = (n) => n && typeof n.lat === 'number' && typeof n.lon === 'number' && Number.isFinite(n.lat)
  && Number.isFinite(n.lon) && (n.lat !== 0 || n.lon !== 0);

export function mount(root, ctx) {
  const q = ctx.query;
  const replayMode = q.mode === 'replay';
  let paused = false;
  let received = 0;
  let lagged = 0;
  const counters = { merged: 0, unplaced: 0, pages: 0, gaps: 0, thinned: 0 };

  // ---- Controls ----
  const feed = h('ol', { class: 'feed live-feed', 'aria-label': replayMode ? 'replayed packets, newest first' : 'live observations, newest first', 'aria-live': 'off' });
  const info = h('p', { class: 'muted', role: 'status' }, replayMode ? 'Loading the replay…' : 'Waiting for packets…');
  const mapStatus = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' }, 'Loading the map…');
  const pauseBtn = h('button', { type: 'button', 'aria-pressed': 'false', onclick: () => {
    paused = !paused;
    pauseBtn.setAttribute('aria-pressed', String(paused));
    pauseBtn.textContent = paused ? 'Paused — resume' : 'Pause';
  } }, 'Pause');

  function setFilter(key, value) {
    ctx.setQuery({ ...q, [key]: value });
    if (replay) replay.restart(replay.head);
  }
  const typeOpts = [['', 'all types'], ...PAYLOAD_TYPES.map((t) => [t, t])];
  if (q.type && !PAYLOAD_TYPES.includes(q.type)) typeOpts.push([q.type, q.type]);
  const typeSel = select('Show type', typeOpts, q.type, (v) => setFilter('type', v), { name: 'type' });
  const hsSel = select('Path hash size', [['', 'any size'], ['1', '1 byte'], ['2', '2 bytes'], ['3', '3 bytes']], q.hash_size, (v) => setFilter('hash_size', v), { name: 'hash_size' });
  const observerSel = select('Observer', [['', 'any observer']], q.observer || '', (v) => setFilter('observer', v), { name: 'observer' });
  if (q.observer) observerSel.append(h('option', { value: q.observer }, shortKey(q.observer)));
  observerSel.value = q.observer || '';
  const text = (key, label, placeholder) => {
    const input = h('input', { type: 'search', name: key, value: q[key] || '', placeholder, spellcheck: 'false', autocomplete: 'off', maxlength: '64' });
    let t = 0;
    input.addEventListener('input', () => {
      clearTimeout(t);
      t = setTimeout(() => setFilter(key, input.value.trim()), 400);
    });
    ctx.onCleanup(() => clearTimeout(t));
    return h('label', null, label, input);
  };
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'live filters', onsubmit: (e) => e.preventDefault() },
    h('label', null, 'Type', typeSel),
    h('label', null, 'Path hash size', hsSel),
    h('label', null, 'Observer', observerSel),
    text('region', 'Region', 'IATA, e.g. SEA'),
    text('node', 'Originator key', 'pubkey prefix'),
    replayMode ? null : pauseBtn,
    h('button', { type: 'button', onclick: () => feed.replaceChildren() }, 'Clear list'));

  const modeLinks = h('nav', { class: 'tabs', 'aria-label': 'live or replay' },
    h('a', { href: '#/live', 'aria-current': replayMode ? null : 'page' }, 'Live'),
    h('a', { href: `#/live?mode=replay${q.hours ? `&hours=${encodeURIComponent(q.hours)}` : ''}`, 'aria-current': replayMode ? 'page' : null }, 'Replay'));

  const mapEl = h('div', { id: 'live-map', class: 'live-map', role: 'region', 'aria-label': 'map of packets as they travel' });
  const legend = h('ul', { class: 'legend live-legend', 'aria-label': 'live map legend' },
    [...Object.keys(TYPE_COLOUR), 'other'].map((t) => {
      const sw = h('span', { class: 'swatch', 'aria-hidden': 'true' });
      sw.style.background = t === 'other' ? OTHER_COLOUR : TYPE_COLOUR[t];
      return h('li', null, sw, t);
    }),
    h('li', null, h('span', { class: 'swatch sw-dashed', 'aria-hidden': 'true' }), 'hop not resolved with confidence (dashed)'),
    h('li', null, 'line thickness and label: path hash size (1–3 bytes)'));

  const replayBar = replayMode ? h('div', { class: 'replay-bar filters', role: 'group', 'aria-label': 'replay controls' }) : null;
  root.append(h('h1', { tabindex: '-1' }, replayMode ? 'Live — replay' : 'Live'), modeLinks, filters);
  if (replayBar) root.append(replayBar);
  root.append(mapStatus, h('div', { class: 'map-wrap' }, mapEl), legend, info, feed);

  get('/api/observers', null, ctx.signal).then((o) => {
    for (const ob of o.observers || []) {
      observers.set(ob.id, ob);
      if (ob.id === q.observer) observerSel.querySelector(`option[value="${CSS.escape(ob.id)}"]`)?.remove();
      observerSel.append(h('option', { value: ob.id }, `${ob.name || shortKey(ob.id)}${ob.iata ? ` (${ob.iata})` : ''}`));
    }
    observerSel.value = q.observer || '';
  }, () => {});

  // ---- Where things are ----
  const nodes = new Map(); // pubkey → node with a location
  const byPrefix = new Map(); // hex prefix (2, 4 or 6 digits) → nodes (located or not)
  const observers = new Map(); // observer id → observer row
  function indexNodes(list) {
    for (const n of list) {
      if (typeof n.public_key !== 'string') continue;
      const k = n.public_key.toLowerCase();
      if (located(n)) nodes.set(k, n);
      for (const len of [2, 4, 6]) {
        const p = k.slice(0, len);
        const arr = byPrefix.get(p);
        if (arr) arr.push(n);
        else byPrefix.set(p, [n]);
      }
    }
  }
  const llOf = (n) => (located(n) ? [n.lat, n.lon] : null);
  function observerLL(id) {
    if (typeof id !== 'string') return null;
    const k = id.toLowerCase();
    return llOf(observers.get(id)) || llOf(observers.get(k)) || llOf(nodes.get(k));
  }
  function originOf(dec) {
    if (!dec || dec.payload_type_name !== 'ADVERT') return null;
    if (located(dec)) return [dec.lat, dec.lon];
    return typeof dec.pubkey === 'string' ? llOf(nodes.get(dec.pubkey.toLowerCase())) : null;
  }

  /**
   * One observer's copy as points: origin (adverts), each hop, the observer. A hop is
   * placed from the server's resolution when given (sure when confidence ≥ 0.5); otherwise
   * from its prefix when exactly one known node has it, and then never drawn as sure.
   */
  function pointsOf(origin, path, resolved, conf, observerId) {
    const pts = [];
    if (origin) pts.push({ ll: origin, sure: true });
    const hops = Array.isArray(path) ? path : [];
    const server = Array.isArray(resolved) && resolved.length === hops.length && hops.length > 0;
    for (let i = 0; i < hops.length; i++) {
      let ll = null;
      let sure = false;
      if (server) {
        const key = typeof resolved[i] === 'string' ? resolved[i].toLowerCase() : null;
        ll = key ? llOf(nodes.get(key)) : null;
        sure = !!ll && Array.isArray(conf) && Number(conf[i]) >= 0.5;
      } else if (typeof hops[i] === 'string') {
        const cands = byPrefix.get(hops[i].toLowerCase().slice(0, 6));
        if (cands && cands.length === 1) ll = llOf(cands[0]);
      }
      pts.push({ ll, sure });
    }
    const obs = observerLL(observerId);
    if (obs) pts.push({ ll: obs, sure: true });
    return pts;
  }

  /** Points → a branch: segments between placed points, unsure across any unplaced hop. */
  function branchOf(pts, start) {
    const segs = [];
    let prev = null;
    let gap = false;
    let first = null;
    for (const p of pts) {
      if (!p.ll) {
        gap = true;
        continue;
      }
      if (!first) first = p;
      if (prev) segs.push({ a: prev.ll, b: p.ll, sure: prev.sure && p.sure && !gap });
      prev = p;
      gap = false;
    }
    return { start, segs, dot: first ? first.ll : null, sure: first ? first.sure : false };
  }

  // ---- The map ----
  let L = null;
  let map = null;
  let anim = null;
  const recent = new Map(); // hash → {ev, at}
  const pendingLive = []; // observations that arrived before the map was ready (bounded)

  function publishStats(s) {
    const ds = root.dataset;
    ds.events = String(s.events);
    ds.active = String(s.active);
    ds.dropped = String(s.dropped);
    ds.segments = String(s.segments);
    ds.uncertain = String(s.uncertain);
    ds.merged = String(counters.merged);
    ds.unplaced = String(counters.unplaced);
    ds.pages = String(counters.pages);
    ds.thinned = String(counters.thinned);
    ds.gaps = String(counters.gaps);
  }

  /** Starts (or extends) the event of `hash` with the given copies (arrays of points). */
  function animate(hash, type, hs, copies, now, merge) {
    const branches = [];
    for (const c of copies) {
      const b = branchOf(c.pts, now + (c.delay || 0));
      if (b.segs.length || b.dot) branches.push(b);
    }
    const seen = merge ? recent.get(hash) : null;
    if (seen && now - seen.at < MERGE_MS) {
      counters.merged += copies.length;
      for (const b of branches) anim.addBranch(seen.ev, b);
      return;
    }
    if (!branches.length) {
      counters.unplaced++;
      return;
    }
    const size = hs === 1 || hs === 2 || hs === 3 ? hs : 1;
    const ev = anim.add({ color: colourOf(type), width: 1 + size, label: `${size}B`, branches }, now);
    if (merge) {
      recent.delete(hash);
      recent.set(hash, { ev, at: now });
      if (recent.size > MAX_RECENT) {
        for (const [k, v] of recent) {
          if (recent.size <= MAX_RECENT / 2 && now - v.at < MERGE_MS) break;
          recent.delete(k);
        }
      }
    }
  }

  function animateLive(d) {
    const dec = d.decoded || {};
    const pts = pointsOf(originOf(dec), d.path, d.resolved_path, d.resolved_confidence, d.observer_id || d.observer);
    animate(d.hash, dec.payload_type_name, d.hash_size ?? dec.hash_size, [{ pts }], performance.now(), true);
  }

  function animatePacket(p, speed) {
    const dec = p.decoded || {};
    const origin = originOf(dec);
    const t0 = Date.parse(p.first_seen || p.timestamp);
    const obs = Array.isArray(p.observations) && p.observations.length ? p.observations
      : [{ observer_id: p.observer_id, path: p.path, timestamp: p.first_seen }];
    const copies = obs.map((o) => ({
      pts: pointsOf(origin, o.path, o.resolved_path, o.resolved_confidence, o.observer_id),
      delay: Math.max(0, Math.min(2000, (Date.parse(o.timestamp) - t0) / speed || 0)),
    }));
    animate(p.hash, dec.payload_type_name || p.payload_type_name, p.hash_size ?? dec.hash_size, copies, performance.now(), false);
  }

  ctx.onCleanup(() => {
    if (anim) anim.destroy();
    if (map) map.remove();
  });

  // ---- The text list ----
  let queue = [];
  let frame = 0;
  function flush() {
    frame = 0;
    const batch = queue.slice(-KEEP);
    queue = [];
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.append(line(batch[i], replayMode));
    feed.prepend(frag);
    while (feed.children.length > KEEP) feed.lastElementChild.remove();
    if (!replayMode) info.textContent = `${num(received)} observations received since this page opened${lagged ? `; ${num(lagged)} times the feed outran this page and skipped some` : ''}. Showing the last ${num(feed.children.length)}.`;
  }
  function toList(d) {
    queue.push(d);
    if (queue.length > KEEP * 2) queue = queue.slice(-KEEP);
    // A few times a second is enough for text, and leaves the frames to the map.
    if (!frame) frame = setTimeout(flush, LIST_MS);
  }
  ctx.onCleanup(() => clearTimeout(frame));

  /** Does a live observation pass the filters? (the server applies them to replay pages) */
  function passes(d) {
    const dec = d.decoded || {};
    if (q.type) {
      const types = q.type.split(',').map((x) => x.trim().toUpperCase()).filter(Boolean);
      if (!types.includes(String(dec.payload_type_name)) && !types.includes(String(dec.payload_type))) return false;
    }
    if (q.hash_size && String(d.hash_size ?? dec.hash_size) !== q.hash_size) return false;
    if (q.observer && String(d.observer || d.observer_id).toLowerCase() !== q.observer.toLowerCase()) return false;
    if (q.region) {
      const codes = q.region.split(',').map((x) => x.trim().toUpperCase()).filter(Boolean);
      if (!codes.includes(String(d.iata || d.observer_iata || '').trim().toUpperCase())) return false;
    }
    if (q.node) {
      const from = dec.payload_type_name === 'ADVERT' && typeof dec.pubkey === 'string' ? dec.pubkey.toLowerCase() : '';
      if (!from.startsWith(q.node.toLowerCase())) return false;
    }
    return true;
  }

  if (!replayMode) {
    ctx.live((msg) => {
      if (msg.type === 'lagged') {
        lagged++;
        return;
      }
      if (msg.type !== 'packet' || !msg.data || typeof msg.data.hash !== 'string') return;
      received++;
      if (paused || !passes(msg.data)) return;
      toList(msg.data);
      if (anim) animateLive(msg.data);
      else if (pendingLive.push(msg.data) > 200) pendingLive.shift();
    });
  }

  // ---- Replay ----
  let replay = null;
  function makeReplay() {
    const hours = Math.min(24 * 30, Math.max(0.1, Number(q.hours) || 24));
    let speed = SPEEDS.includes(Number(q.speed)) ? Number(q.speed) : 10;
    const end = Date.now();
    const start = end - hours * 3600e3;
    const R = { head: start, playing: true, restart, start, end };
    let buf = [];
    let at = 0; // next packet in buf
    let from = start; // this run's `since`
    let offset = 0;
    let exhausted = false;
    let loading = false;
    let gen = 0;
    let controller = null;
    let first = true;
    let lastWall = 0;
    let lastUi = 0;
    let shown = 0;
    let dragging = false;
    let retry = 0;

    const scrub = h('input', { type: 'range', min: '0', max: '1000', step: '1', value: '0', name: 'scrub', 'aria-label': 'replay position' });
    scrub.addEventListener('input', () => {
      dragging = true;
      posLabel.textContent = dateTime(start + (end - start) * (Number(scrub.value) / 1000));
    });
    scrub.addEventListener('change', () => {
      dragging = false;
      restart(start + (end - start) * (Number(scrub.value) / 1000), true);
    });
    const playBtn = h('button', { type: 'button', 'aria-pressed': 'true', onclick: () => {
      R.playing = !R.playing;
      playBtn.setAttribute('aria-pressed', String(R.playing));
      playBtn.textContent = R.playing ? 'Pause' : 'Play';
      lastWall = 0;
      if (anim) anim.kick();
    } }, 'Pause');
    const speedSel = select('Replay speed', SPEEDS.map((s) => [String(s), `${s}×`]), String(speed), (v) => {
      speed = Number(v);
      ctx.setQuery({ ...q, speed: v });
    }, { name: 'speed' });
    const hoursSel = select('Replay window', [['1', 'last hour'], ['6', 'last 6 hours'], ['24', 'last 24 hours'], ['72', 'last 3 days'], ['168', 'last 7 days']], String(hours), (v) => {
      ctx.setQuery({ ...q, hours: v });
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    }, { name: 'hours' });
    if (![1, 6, 24, 72, 168].includes(hours)) hoursSel.append(h('option', { value: String(hours) }, `last ${hours} h`));
    hoursSel.value = String(hours);
    const posLabel = h('output', { class: 'replay-pos', 'aria-live': 'off' }, dateTime(start));
    replace(replayBar,
      playBtn,
      h('label', null, 'Speed', speedSel),
      h('label', null, 'Window', hoursSel),
      h('label', { class: 'replay-scrub' }, 'Position', scrub),
      posLabel,
      h('a', { href: '#/live', class: 'button-link' }, 'Jump to now (live)'));

    function params() {
      const p = { since: iso(from), until: iso(end), order: 'asc', limit: PAGE, offset, expand: 'observations' };
      for (const k of FILTER_KEYS) if (q[k]) p[k] = q[k];
      return p;
    }

    async function fetchMore() {
      if (loading || exhausted) return;
      loading = true;
      const g = gen;
      controller = new AbortController();
      const abort = () => controller.abort();
      ctx.signal.addEventListener('abort', abort);
      try {
        const res = await get('/api/packets', params(), controller.signal);
        if (g !== gen) return;
        counters.pages++;
        const pk = Array.isArray(res.packets) ? res.packets : [];
        let take = pk.length;
        const cut = res.truncated === true && Number.isFinite(res.nextOffset);
        if (res.truncated === true && !cut) {
          // The observations' budget ran out: a packet whose list came back short (and the
          // rest) is read again from the next page.
          const short = pk.findIndex((p) => (p.observations || []).length < Math.min(p.observation_count || 0, 500));
          if (short > 0) take = short;
        } else if (cut) {
          take = Math.max(1, res.nextOffset - offset);
        }
        offset += take;
        exhausted = !cut && take === pk.length && pk.length < PAGE;
        if (at > 0) {
          buf = buf.slice(at);
          at = 0;
        }
        for (let i = 0; i < take; i++) buf.push(pk[i]);
        if (first && buf.length) {
          // Start where the window's first packet is, not hours of silence before it.
          const t = Date.parse(buf[0].first_seen);
          if (t > R.head) R.head = t - 250;
          first = false;
        }
        if (first && exhausted) info.textContent = 'No packets in this window match these filters.';
      } catch (e) {
        if (isAbort(e) || ctx.signal.aborted || g !== gen) return;
        replace(info, notice(`Could not load the replay: ${e.message} — retrying`, 'error'));
        clearTimeout(retry);
        retry = setTimeout(() => anim && anim.kick(), 3000);
      } finally {
        ctx.signal.removeEventListener('abort', abort);
        if (g === gen) loading = false;
      }
    }

    function restart(t, keepPlaying) {
      gen++;
      if (controller) controller.abort();
      loading = false;
      buf = [];
      at = 0;
      offset = 0;
      exhausted = false;
      first = !keepPlaying && t <= start;
      from = Math.max(start, Math.min(end, t));
      R.head = from;
      lastWall = 0;
      feed.replaceChildren();
      if (anim) anim.clear();
      fetchMore();
    }

    /** Advances the playhead; called once per animation frame. */
    function tick(now) {
      const wall = lastWall ? Math.min(250, now - lastWall) : 0;
      lastWall = now;
      if (R.playing) {
        const next = buf[at];
        if (next || exhausted) {
          let target = R.head + wall * speed;
          if (!exhausted) target = Math.min(target, Date.parse(buf[buf.length - 1].first_seen));
          if (next) {
            const tn = Date.parse(next.first_seen);
            if (tn - target > GAP_MS * speed) {
              target = tn - 200 * speed;
              counters.gaps++;
            }
          }
          R.head = Math.min(end, Math.max(R.head, target));
          let started = 0;
          while (at < buf.length && Date.parse(buf[at].first_seen) <= R.head) {
            const p = buf[at++];
            shown++;
            toList(p);
            if (started++ < EMIT_PER_FRAME) animatePacket(p, speed);
            else counters.thinned++;
          }
        }
      }
      if (buf.length - at < LOW_WATER) fetchMore();
      if (now - lastUi > 200) {
        lastUi = now;
        if (!dragging) {
          scrub.value = String(Math.round(((R.head - start) / (end - start)) * 1000));
          posLabel.textContent = dateTime(R.head);
        }
        const state = !R.playing ? 'paused' : exhausted && at >= buf.length ? 'end of the window' : !buf[at] && loading ? 'loading the next page…' : `playing at ${speed}×`;
        if (!info.querySelector('.notice-error') || buf.length) info.textContent = `Replay of ${dateTime(start)} – ${dateTime(end)}: ${num(shown)} packets played, ${num(counters.pages)} pages of at most ${PAGE} read; ${state}.`;
      }
    }
    R.tick = tick;
    R.wants = () => R.playing && !(exhausted && at >= buf.length);
    ctx.onCleanup(() => {
      gen++;
      clearTimeout(retry);
      if (controller) controller.abort();
    });
    fetchMore();
    return R;
  }
  if (replayMode) replay = makeReplay();

  (async () => {
    try {
      const [Lf, cfg, res] = await Promise.all([
        loadLeaflet(),
        get('/api/config/map', null, ctx.signal),
        get('/api/nodes', { limit: MAX_NODES }, ctx.signal),
      ]);
      if (ctx.signal.aborted) return;
      L = Lf;
      indexNodes(res.nodes || []);
      map = L.map(mapEl, { worldCopyJump: true, preferCanvas: true });
      map.attributionControl.setPrefix('Leaflet');
      L.tileLayer(cfg.tileUrl, { attribution: escapeText(cfg.attribution || ''), maxZoom: 19 }).addTo(map);
      const pts = [...nodes.values()].map((n) => [n.lat, n.lon]);
      if (pts.length) map.fitBounds(L.latLngBounds(pts), { padding: [30, 30], maxZoom: 13 });
      else map.setView([20, 0], 2);
      const renderer = L.canvas({ padding: 0.2 });
      const markers = L.layerGroup().addTo(map);
      for (const n of nodes.values()) {
        const relay = n.role === 'repeater' || n.role === 'room';
        L.circleMarker([n.lat, n.lon], { renderer, radius: relay ? 5 : 3, weight: 1, color: '#ffffff', fillColor: relay ? '#24292f' : '#8c959f', fillOpacity: 0.85 })
          .bindTooltip(h('span', null, n.name || shortKey(n.public_key)), { direction: 'top', offset: [0, -4] })
          .addTo(markers);
      }
      const reduced = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
      anim = animationLayer(L, map, {
        maxActive: MAX_ACTIVE,
        reduced,
        onStats: publishStats,
        onFrame: replay ? (now) => replay.tick(now) : null,
        wantsFrames: replay ? () => replay.wants() : null,
      });
      mapEl.dataset.markers = String(nodes.size);
      mapEl.dataset.ready = 'true';
      mapStatus.textContent = `${num(nodes.size)} nodes with a location. ${replayMode ? 'Replaying packets along their paths.' : 'Packets are drawn along their paths as they are heard.'}`;
      publishStats(anim.stats);
      for (const d of pendingLive.splice(0)) animateLive(d);
      anim.kick();
    } catch (e) {
      if (ctx.signal.aborted) return;
      replace(mapStatus, notice(`The map could not be shown: ${e.message}`, 'error'));
    }
  })();
}

/** Escapes text for the one place Leaflet insists on markup: the attribution line. */
function escapeText(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
