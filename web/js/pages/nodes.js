// Nodes (#/nodes): the directory. Role tabs, name/key search, sort, and a capability filter
// (confirmed, suspected, unknown, holding back) — all in the URL query and all applied by the
// server (`multiByte=`), so counts and paging stay right with thousands of nodes. Rows show
// the multi-byte capability badges, "holding back" from the row's own legacy-suspect flag;
// the list is virtualised like the packets list.

import { h, replace, select } from '../dom.js';
import { get } from '../api.js';
import { ago, num, shortKey, ROLES, ROLE_LABEL, iso } from '../format.js';
import { virtualList } from '../components/vlist.js';
import { roleBadge, capBadge, hashSizeBadge } from '../components/badges.js';

export const title = 'Nodes';

const PAGE = 500;
const CAPS = [['', 'any capability'], ['confirmed', 'confirmed'], ['suspected', 'suspected'], ['unknown', 'unknown'], ['legacy', 'holding back']];
const CAP_VALUES = new Set(CAPS.map(([v]) => v).filter(Boolean));
const CAP_NOTE = { confirmed: 'confirmed multi-byte', suspected: 'suspected multi-byte', unknown: 'unknown capability', legacy: 'holding back multi-byte' };
const SORTS = [['last_seen', 'last heard'], ['name', 'name'], ['advert_count', 'adverts'], ['first_seen', 'first seen'], ['role', 'role']];

export function mount(root, ctx) {
  const q = ctx.query;
  // A deep link with an unknown capability shows every node rather than an error.
  if (q.cap && !CAP_VALUES.has(q.cap)) ctx.setQuery({ ...q, cap: '' });
  const all = [];
  let total = 0;
  let counts = {};
  let loading = false;
  let exhausted = false;
  let generation = 0;

  const status = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' }, 'Loading…');
  const tabs = h('ul', { class: 'tabs', 'aria-label': 'roles' });
  const listBox = h('div', { class: 'nodes-list' });
  const list = virtualList({
    label: 'nodes',
    rowHeight: 40,
    key: (n) => n.public_key,
    rowAttrs: (n) => ({ href: `#/nodes/${encodeURIComponent(n.public_key)}`, 'data-pubkey': n.public_key, 'data-role': n.role || '', 'data-cap': n.multi_byte_status || 'unknown', 'data-legacy': n.multi_byte_legacy_suspect ? 'true' : null }),
    columns: [
      { key: 'name', label: 'Name', render: (n) => h('span', { class: 'node-name' }, n.name || '(no name)') },
      { key: 'role', label: 'Role', render: (n) => roleBadge(n.role) },
      { key: 'cap', label: 'Multi-byte', render: (n) => capBadge(n.multi_byte_status, !!n.multi_byte_legacy_suspect) },
      { key: 'hs', label: 'Adv. hash', render: (n) => hashSizeBadge(n.hash_size) },
      { key: 'adverts', label: 'Adverts', render: (n) => num(n.advert_count) },
      { key: 'seen', label: 'Last heard', render: (n) => h('time', { datetime: iso(n.last_seen) }, ago(n.last_seen)) },
      { key: 'key', label: 'Key', render: (n) => shortKey(n.public_key, 10) },
    ],
    onEndReached: () => loadMore(),
  });
  list.setItems(all);
  ctx.onCleanup(() => list.destroy());

  function change(next) {
    ctx.setQuery({ ...q, ...next });
    renderTabs();
    reload();
  }

  const search = h('input', { type: 'search', value: q.search || '', placeholder: 'name or key prefix', spellcheck: 'false', autocomplete: 'off', maxlength: '64', name: 'search' });
  let t = 0;
  search.addEventListener('input', () => {
    clearTimeout(t);
    t = setTimeout(() => change({ search: search.value.trim() }), 300);
  });
  ctx.onCleanup(() => clearTimeout(t));
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'node filters', onsubmit: (e) => e.preventDefault() },
    h('label', null, 'Search', search),
    h('label', null, 'Capability', select('Multi-byte capability', CAPS, q.cap, (v) => change({ cap: v }), { name: 'cap' })),
    h('label', null, 'Sort by', select('Sort by', SORTS, q.sortBy || 'last_seen', (v) => change({ sortBy: v === 'last_seen' ? '' : v }), { name: 'sortBy' })),
    h('label', null, 'Heard within', select('Heard within', [['', 'any time'], ['1h', '1 hour'], ['24h', '24 hours'], ['7d', '7 days'], ['30d', '30 days']], q.lastHeard, (v) => change({ lastHeard: v }), { name: 'lastHeard' })));

  root.append(h('h1', { tabindex: '-1' }, 'Nodes'), tabs, filters, status, listBox);
  replace(listBox, list.el);

  function tabHref(role) {
    const next = { ...q, role };
    const qs = new URLSearchParams(Object.entries(next).filter(([, v]) => v)).toString();
    return `#/nodes${qs ? `?${qs}` : ''}`;
  }
  function renderTabs() {
    const sum = ROLES.reduce((a, r) => a + (counts[r] || 0), 0);
    replace(tabs, [['', 'All', sum], ...ROLES.map((r) => [r, `${ROLE_LABEL[r]}s`, counts[r] || 0])].map(([r, label, c]) =>
      h('li', null, h('a', { href: tabHref(r), 'aria-current': (q.role || '') === r ? 'page' : null, 'data-role-tab': r || 'all' }, `${label} (${num(c)})`))));
  }

  /** The status line; `data-total` (the server's filtered count) is set once a page has loaded. */
  function showStatus() {
    const capNote = q.cap ? ` (${CAP_NOTE[q.cap]})` : '';
    status.dataset.total = String(total);
    status.textContent = all.length ? `${num(all.length)} of ${num(total)} nodes loaded${capNote}` : `No nodes match${capNote}.`;
  }

  async function load(offset) {
    const gen = generation;
    loading = true;
    const params = { limit: PAGE, offset, role: q.role, search: q.search, sortBy: q.sortBy, lastHeard: q.lastHeard, multiByte: q.cap };
    const res = await ctx.guard(get('/api/nodes', params, ctx.signal), listBox);
    if (gen !== generation) return;
    loading = false;
    if (!res) return;
    total = res.total;
    if (res.counts) {
      counts = res.counts;
      renderTabs();
    }
    const have = new Set(all.map((n) => n.public_key));
    for (const n of res.nodes) {
      if (have.has(n.public_key)) continue;
      n._v = generation;
      all.push(n);
    }
    exhausted = res.nodes.length < PAGE || all.length >= total;
    showStatus();
    list.changed();
  }
  function loadMore() {
    if (!loading && !exhausted) load(all.length);
  }
  function reload() {
    generation++;
    all.length = 0;
    exhausted = false;
    loading = false;
    delete status.dataset.total;
    status.textContent = 'Loading…';
    if (!listBox.contains(list.el)) replace(listBox, list.el);
    list.scrollToTop();
    load(0);
  }

  renderTabs();
  load(0);
  // Refresh "last heard" and newly heard nodes now and then (cheap: one page).
  ctx.every(30000, () => {
    if (!list.scrolled() && !loading && !listBox.contains(document.activeElement)) reload();
  });
}
