// Map (#/map): nodes with a location, coloured by role or — in the multi-byte overlay — by
// capability status, with repeaters that hold multi-byte back (the rows' own
// `multi_byte_legacy_suspect` flag) ringed in red. Popups and tooltips are DOM nodes built
// with textContent (Leaflet would take HTML strings; we never give it any). `?mode=capability`
// and `?node=<pubkey>` deep-link.

import { h, replace, notice, select } from '../dom.js';
import { get } from '../api.js';
import { ago, shortKey, ROLES, ROLE_LABEL } from '../format.js';
import { roleBadge, capBadge } from '../components/badges.js';
import { loadLeaflet } from '../components/leaflet.js';

export const title = 'Map';

const MAX_NODES = 2000;

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/** Escapes text for the one place Leaflet insists on markup: the attribution line. */
function escapeText(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function popupFor(n, legacy) {
  return h('div', { class: 'map-popup', 'data-pubkey': n.public_key },
    h('strong', null, h('a', { href: `#/nodes/${encodeURIComponent(n.public_key)}`, class: 'popup-name' }, n.name || '(no name)')),
    h('div', null, roleBadge(n.role), ' ', capBadge(n.multi_byte_status, legacy)),
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
  const findInput = h('input', { type: 'search', placeholder: 'name or key prefix', name: 'find', spellcheck: 'false', autocomplete: 'off' });
  const controls = h('form', { class: 'filters', 'aria-label': 'map controls', onsubmit: (e) => {
    e.preventDefault();
    find(findInput.value.trim());
  } },
  h('label', null, 'Colour by', modeSel),
  h('fieldset', { class: 'roles-fieldset' }, h('legend', { class: 'sr-only' }, 'Roles shown'),
    roleBoxes.map(([r, box]) => h('label', { class: 'check' }, box, `${ROLE_LABEL[r]}s`))),
  h('label', null, 'Find a node', findInput),
  h('button', { type: 'submit' }, 'Find'));
  root.append(h('h1', { tabindex: '-1' }, 'Map'), controls, status, h('div', { class: 'map-wrap' }, mapEl), legend);

  let L = null;
  let map = null;
  let layer = null;
  let nodes = [];
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
    }), h('li', null, h('span', { class: 'swatch sw-legacy', 'aria-hidden': 'true' }), 'holding back multi-byte (legacy suspect)'));
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
      m.bindPopup(() => popupFor(n, isLegacy));
      m.bindTooltip(h('span', null, n.name || shortKey(n.public_key)), { direction: 'top', offset: [0, -6] });
      m.addTo(layer);
      const el = m.getElement();
      if (el) el.setAttribute('data-pubkey', n.public_key);
      markers.set(n.public_key, m);
      count++;
    }
    mapEl.dataset.markers = String(count);
    drawLegend();
    status.textContent = `${count} nodes with a location shown${nodes.length >= MAX_NODES ? ` (first ${MAX_NODES})` : ''}.`;
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
      layer = L.layerGroup().addTo(map);
      draw();
      if (q.node) find(q.node);
      mapEl.dataset.ready = 'true';
    } catch (e) {
      if (ctx.signal.aborted) return;
      replace(status, notice(`The map could not be shown: ${e.message}`, 'error'));
    }
  })();
}
