// Map (#/map): nodes with a location, coloured by role or — in the multi-byte overlay — by
// capability status, with repeaters that hold multi-byte back (the rows' own
// `multi_byte_legacy_suspect` flag) ringed in red. Popups and tooltips are DOM nodes built
// with textContent (Leaflet would take HTML strings; we never give it any). Neighbor links
// from `/api/analytics/neighbor-graph` join located nodes: width by packets seen, opacity and
// colour by confidence, filtered by the server (`min_count`, `min_score`); bridges (nodes whose
// loss splits the mesh) are ringed. `?mode=capability`, `?node=<pubkey>`, `?links=0`,
// `?min_count=` and `?min_score=` deep-link.

import { h, replace, notice, select } from '../dom.js';
import { get } from '../api.js';
import { ago, shortKey, num, ROLES, ROLE_LABEL } from '../format.js';
import { roleBadge, capBadge } from '../components/badges.js';
import { loadLeaflet } from '../components/leaflet.js';

export const title = 'Map';

const MAX_NODES = 2000;
// The neighbor graph's own defaults (CoreScope's).
const MIN_COUNT = 5;
const MIN_SCORE = 0.1;
const SCORES = [['0', 'any'], ['0.1', '10 %'], ['0.5', '50 %'], ['0.7', '70 %'], ['0.9', '90 %']];

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/** Escapes text for the one place Leaflet insists on markup: the attribution line. */
function escapeText(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function pctOf(p) {
  return typeof p === 'number' && Number.isFinite(p) ? `${Math.round(p * 100)} %` : '—';
}

/** A link's tooltip: both ends by name (text nodes), packets, confidence, distance, and the
 * mean SNR and observer count of the observations that showed it (when known). */
function linkTip(e, a, b) {
  const observers = typeof e.observer_count === 'number' && e.observer_count > 0
    ? ` · ${num(e.observer_count)} observer${e.observer_count === 1 ? '' : 's'}` : '';
  return h('span', { class: 'link-tip' },
    h('strong', null, a.name || shortKey(a.public_key)), ' ↔ ', h('strong', null, b.name || shortKey(b.public_key)),
    h('br'), `${num(e.weight)} packets · confidence ${pctOf(e.score)}`,
    typeof e.distance_km === 'number' ? ` · ${e.distance_km.toFixed(1)} km` : '',
    typeof e.avg_snr === 'number' ? ` · SNR ${e.avg_snr.toFixed(1)} dB` : '', observers);
}

function popupFor(n, legacy, bridge) {
  return h('div', { class: 'map-popup', 'data-pubkey': n.public_key },
    h('strong', null, h('a', { href: `#/nodes/${encodeURIComponent(n.public_key)}`, class: 'popup-name' }, n.name || '(no name)')),
    h('div', null, roleBadge(n.role), ' ', capBadge(n.multi_byte_status, legacy)),
    bridge ? h('div', { class: 'bridge-note' }, `Bridge: without it ${num(bridge.cut_off)} node${bridge.cut_off === 1 ? '' : 's'} would be cut off`) : null,
    h('div', { class: 'muted' }, `last heard ${ago(n.last_seen)} · ${shortKey(n.public_key, 10)}`));
}

export function mount(root, ctx) {
  const q = ctx.query;
  const mapEl = h('div', { id: 'map', role: 'region', 'aria-label': 'map of nodes' });
  const status = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' }, 'Loading the map…');
  const legend = h('ul', { class: 'legend map-legend', 'aria-label': 'map legend' });
  const roleBoxes = ROLES.map((r) => {
    const box = h('input', { type: 'checkbox', checked: true, name: `role-${r}`, onchange: () => draw() });
    return [r, box];
  });
  let mode = q.mode === 'capability' ? 'capability' : 'role';
  const modeSel = select('Colour nodes by', [['role', 'role'], ['capability', 'multi-byte capability']], mode, (v) => {
    mode = v;
    ctx.setQuery({ ...q, mode: v === 'role' ? '' : v });
    draw();
  }, { name: 'mode' });
  const intParam = (v, d) => (/^[1-9][0-9]{0,8}$/.test(v || '') ? Number(v) : d);
  const scoreParam = (v) => (SCORES.some(([x]) => x === v) ? v : String(MIN_SCORE));
  const linksBox = h('input', { type: 'checkbox', checked: q.links !== '0', name: 'links', onchange: () => {
    setLinkQuery();
    drawLinks();
    drawLegend();
  } });
  const minCount = h('input', { type: 'number', name: 'min_count', min: '1', step: '1', value: String(intParam(q.min_count, MIN_COUNT)), inputmode: 'numeric', onchange: () => {
    minCount.value = String(intParam(minCount.value, MIN_COUNT));
    setLinkQuery();
    loadLinks();
  } });
  const minScore = select('Minimum confidence of a link', SCORES, scoreParam(q.min_score), () => {
    setLinkQuery();
    loadLinks();
  }, { name: 'min_score' });
  function setLinkQuery() {
    ctx.setQuery({ ...q, links: linksBox.checked ? '' : '0',
      min_count: Number(minCount.value) === MIN_COUNT ? '' : minCount.value,
      min_score: Number(minScore.value) === MIN_SCORE ? '' : minScore.value });
  }
  const findInput = h('input', { type: 'search', placeholder: 'name or key prefix', name: 'find', spellcheck: 'false', autocomplete: 'off' });
  const controls = h('form', { class: 'filters', 'aria-label': 'map controls', onsubmit: (e) => {
    e.preventDefault();
    find(findInput.value.trim());
  } },
  h('label', null, 'Colour by', modeSel),
  h('fieldset', { class: 'roles-fieldset' }, h('legend', { class: 'sr-only' }, 'Roles shown'),
    roleBoxes.map(([r, box]) => h('label', { class: 'check' }, box, `${ROLE_LABEL[r]}s`))),
  h('fieldset', { class: 'roles-fieldset' }, h('legend', { class: 'sr-only' }, 'Neighbor links'),
    h('label', { class: 'check' }, linksBox, 'Neighbor links'),
    h('label', null, 'Seen in at least (packets)', minCount),
    h('label', null, 'Confidence at least', minScore)),
  h('label', null, 'Find a node', findInput),
  h('button', { type: 'submit' }, 'Find'));
  root.append(h('h1', { tabindex: '-1' }, 'Map'), controls, status, h('div', { class: 'map-wrap' }, mapEl), legend);

  let L = null;
  let map = null;
  let layer = null;
  let linkLayer = null;
  let nodes = [];
  let graph = null; // the last neighbor-graph answer, null while links are off or loading
  let bridges = new Map();
  let linkSeq = 0;
  let shownCount = 0;
  const markers = new Map();

  ctx.onCleanup(() => {
    if (map) map.remove();
  });

  function colour(n) {
    if (mode === 'capability') return cssVar(`--${{ confirmed: 'ok', suspected: 'warn' }[n.multi_byte_status] || 'unk'}`);
    return cssVar(`--role-${ROLES.includes(n.role) ? n.role : 'repeater'}`);
  }

  function drawLegend() {
    const items = mode === 'capability'
      ? [['ok', 'confirmed'], ['warn', 'suspected'], ['unk', 'unknown']]
      : ROLES.map((r) => [`role-${r}`, ROLE_LABEL[r]]);
    replace(legend, items.map(([v, label]) => {
      const sw = h('span', { class: 'swatch', 'aria-hidden': 'true' });
      sw.style.background = cssVar(`--${v}`);
      return h('li', null, sw, label);
    }), h('li', null, h('span', { class: 'swatch sw-legacy', 'aria-hidden': 'true' }), 'holding back multi-byte (legacy suspect)'),
    h('li', null, h('span', { class: 'swatch sw-bridge', 'aria-hidden': 'true' }), 'bridge: its loss would split the mesh'),
    linksBox.checked ? h('li', null, h('span', { class: 'swatch sw-link', 'aria-hidden': 'true' }), 'neighbor link (wider: more packets; fainter and amber: less sure)') : null);
  }

  function draw() {
    if (!map) return;
    layer.clearLayers();
    markers.clear();
    const shown = new Set(roleBoxes.filter(([, b]) => b.checked).map(([r]) => r));
    let count = 0;
    for (const n of nodes) {
      if (ROLES.includes(n.role) && !shown.has(n.role)) continue;
      const isLegacy = !!n.multi_byte_legacy_suspect;
      const relay = n.role === 'repeater' || n.role === 'room';
      const m = L.circleMarker([n.lat, n.lon], {
        radius: relay ? 8 : 5,
        color: isLegacy ? cssVar('--bad') : cssVar('--panel'),
        weight: isLegacy ? 4 : 1.5,
        fillColor: colour(n),
        fillOpacity: 0.9,
        className: `node-marker${isLegacy ? ' legacy' : ''}`,
      });
      m.bindPopup(() => popupFor(n, isLegacy, bridges.get(n.public_key)));
      m.bindTooltip(h('span', null, n.name || shortKey(n.public_key)), { direction: 'top', offset: [0, -6] });
      m.addTo(layer);
      const el = m.getElement();
      if (el) el.setAttribute('data-pubkey', n.public_key);
      markers.set(n.public_key, m);
      count++;
    }
    shownCount = count;
    mapEl.dataset.markers = String(count);
    ringBridges();
    drawLinks();
    drawLegend();
  }

  /** Rings the bridges among the markers (markers stay: an open popup stays open). */
  function ringBridges() {
    const byKey = new Map(nodes.map((n) => [n.public_key, n]));
    for (const [key, m] of markers) {
      const n = byKey.get(key);
      if (!n || n.multi_byte_legacy_suspect) continue; // the red ring says more
      const bridge = bridges.has(key);
      m.setStyle({ color: bridge ? cssVar('--fg') : cssVar('--panel'), weight: bridge ? 4 : 1.5, dashArray: bridge ? '3 3' : null });
      const el = m.getElement();
      if (el) el.classList.toggle('bridge', bridge);
    }
  }

  function showStatus(links) {
    status.textContent = `${shownCount} nodes with a location shown${nodes.length >= MAX_NODES ? ` (first ${MAX_NODES})` : ''}`
      + `${links === null ? '' : `, ${links} neighbor link${links === 1 ? '' : 's'} between them${graph && graph.truncated ? ' (the strongest only)' : ''}`}.`;
  }

  /** Draws the graph's edges between shown markers (only the links layer is redrawn). */
  function drawLinks() {
    linkLayer.clearLayers();
    if (!linksBox.checked || !graph) {
      mapEl.dataset.links = linksBox.checked ? '' : '0';
      showStatus(null);
      return;
    }
    const byKey = new Map(nodes.map((n) => [n.public_key, n]));
    const good = cssVar('--accent');
    const weak = cssVar('--warn');
    let drawn = 0;
    for (const e of graph.edges || []) {
      const a = byKey.get(e.source);
      const b = byKey.get(e.target);
      if (!a || !b || !markers.has(a.public_key) || !markers.has(b.public_key)) continue;
      const score = typeof e.score === 'number' ? Math.min(1, Math.max(0, e.score)) : 0;
      const line = L.polyline([[a.lat, a.lon], [b.lat, b.lon]], {
        color: score >= 0.7 ? good : weak,
        weight: Math.min(8, 1 + Math.log2(Math.max(1, e.weight || 1)) / 2),
        opacity: 0.2 + 0.6 * score,
        className: `neighbor-link${score >= 0.7 ? '' : ' link-weak'}`,
        interactive: true,
      });
      line.bindTooltip(linkTip(e, a, b), { sticky: true });
      line.addTo(linkLayer);
      const el = line.getElement();
      if (el) {
        el.setAttribute('data-source', e.source);
        el.setAttribute('data-target', e.target);
        el.setAttribute('data-weight', String(e.weight));
      }
      drawn++;
    }
    mapEl.dataset.links = String(drawn);
    showStatus(drawn);
  }

  /**
   * Fetches the neighbor graph under the current filter (the server filters), then redraws.
   * Fetched with links off too: the bridges come with it.
   */
  async function loadLinks() {
    const mine = ++linkSeq;
    mapEl.removeAttribute('data-links-ready');
    try {
      const g = await get('/api/analytics/neighbor-graph', { min_count: minCount.value, min_score: minScore.value }, ctx.signal);
      if (mine !== linkSeq || ctx.signal.aborted) return;
      graph = g;
      bridges = new Map((g.bridges || []).map((b) => [b.pubkey, b]));
    } catch (e) {
      if (mine !== linkSeq || ctx.signal.aborted) return;
      status.textContent = `Neighbor links could not be loaded: ${e.message}`;
      return;
    }
    ringBridges();
    drawLinks();
    mapEl.dataset.bridges = String([...bridges.keys()].filter((k) => markers.has(k)).length);
    mapEl.dataset.linksReady = 'true';
  }

  function find(text) {
    if (!text) return;
    const t = text.toLowerCase();
    const n = nodes.find((x) => x.public_key.startsWith(t)) || nodes.find((x) => (x.name || '').toLowerCase().includes(t));
    if (!n) {
      status.textContent = 'No node with a location matches.';
      return;
    }
    const box = roleBoxes.find(([r]) => r === n.role);
    if (box && !box[1].checked) {
      box[1].checked = true;
      draw();
    }
    const m = markers.get(n.public_key);
    if (m) {
      map.setView(m.getLatLng(), Math.max(map.getZoom(), 13));
      m.openPopup();
    }
  }

  (async () => {
    try {
      const [Lf, cfg, res] = await Promise.all([
        loadLeaflet(),
        get('/api/config/map', null, ctx.signal),
        get('/api/nodes', { limit: MAX_NODES }, ctx.signal),
      ]);
      if (ctx.signal.aborted) return;
      L = Lf;
      nodes = (res.nodes || []).filter((n) => typeof n.lat === 'number' && typeof n.lon === 'number' && Number.isFinite(n.lat) && Number.isFinite(n.lon) && (n.lat !== 0 || n.lon !== 0));
      map = L.map(mapEl, { preferCanvas: false, worldCopyJump: true });
      map.attributionControl.setPrefix('Leaflet');
      L.tileLayer(cfg.tileUrl, { attribution: escapeText(cfg.attribution || ''), maxZoom: 19 }).addTo(map);
      if (nodes.length) map.fitBounds(L.latLngBounds(nodes.map((n) => [n.lat, n.lon])), { padding: [30, 30], maxZoom: 14 });
      else map.setView([20, 0], 2);
      linkLayer = L.layerGroup().addTo(map);
      layer = L.layerGroup().addTo(map);
      draw();
      if (q.node) find(q.node);
      mapEl.dataset.ready = 'true';
      loadLinks();
    } catch (e) {
      if (ctx.signal.aborted) return;
      replace(status, notice(`The map could not be shown: ${e.message}`, 'error'));
    }
  })();
}
