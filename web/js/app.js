// The app shell: the hash router, the navigation and the live-connection badge.
// Routes look like `#/packets/<hash>?type=ADVERT`; each page module is loaded on first use
// (dynamic import, so the initial load stays small) and gets a fresh context on every
// navigation: route params, the query, an AbortSignal that fires when the page is left, and
// helpers whose timers and subscriptions end with the page.

import { h, replace, notice } from './dom.js';
import { isAbort } from './api.js';
import { subscribe, onStatus } from './live.js';

const ROUTES = [
  { pattern: '', page: 'overview', load: () => import('./pages/overview.js') },
  { pattern: 'packets', page: 'packets', load: () => import('./pages/packets.js') },
  { pattern: 'packets/:hash', page: 'packet', load: () => import('./pages/packet.js') },
  { pattern: 'nodes', page: 'nodes', load: () => import('./pages/nodes.js') },
  { pattern: 'nodes/:pubkey', page: 'node', load: () => import('./pages/node.js') },
  { pattern: 'map', page: 'map', load: () => import('./pages/map.js') },
  { pattern: 'topology', page: 'topology', load: () => import('./pages/topology.js') },
  { pattern: 'multibyte', page: 'multibyte', load: () => import('./pages/multibyte.js') },
  { pattern: 'observers', page: 'observers', load: () => import('./pages/observers.js') },
  { pattern: 'observers/:id', page: 'observer', load: () => import('./pages/observer.js') },
  { pattern: 'channels', page: 'channels', load: () => import('./pages/channels.js') },
  { pattern: 'channels/:hash', page: 'channels', load: () => import('./pages/channels.js') },
  { pattern: 'analytics', page: 'analytics', load: () => import('./pages/analytics.js') },
  { pattern: 'live', page: 'live', load: () => import('./pages/live.js') },
  { pattern: 'alerts', page: 'alerts', load: () => import('./pages/alerts.js') },
  { pattern: 'api-docs', page: 'api-docs', load: () => import('./pages/apidocs.js') },
];

const NAV = [
  ['#/', 'Overview', ''],
  ['#/packets', 'Packets', 'packets'],
  ['#/live', 'Live', 'live'],
  ['#/nodes', 'Nodes', 'nodes'],
  ['#/map', 'Map', 'map'],
  ['#/topology', 'Topology', 'topology'],
  ['#/multibyte', 'Multi-byte', 'multibyte'],
  ['#/observers', 'Observers', 'observers'],
  ['#/channels', 'Channels', 'channels'],
  ['#/analytics', 'Analytics', 'analytics'],
  ['#/alerts', 'Alerts', 'alerts'],
];

/** Splits the location hash into path segments and a plain query object. */
export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, '');
  const qi = raw.indexOf('?');
  const path = qi < 0 ? raw : raw.slice(0, qi);
  const query = {};
  if (qi >= 0) for (const [k, v] of new URLSearchParams(raw.slice(qi + 1))) query[k] = v;
  const segments = path.split('/').filter(Boolean).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  return { segments, query };
}

/** Builds `#/a/b?k=v` from path segments and a query object (empty values dropped). */
export function buildHash(segments, query = {}) {
  const path = segments.map((s) => encodeURIComponent(s)).join('/');
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const qs = q.toString();
  return `#/${path}${qs ? `?${qs}` : ''}`;
}

function match(segments) {
  for (const r of ROUTES) {
    const parts = r.pattern ? r.pattern.split('/') : [];
    if (parts.length !== segments.length) continue;
    const params = {};
    let ok = true;
    parts.forEach((p, i) => {
      if (p.startsWith(':')) params[p.slice(1)] = segments[i];
      else if (p !== segments[i]) ok = false;
    });
    if (ok) return { route: r, params };
  }
  return null;
}

const main = document.getElementById('app');
let current = null; // { controller, cleanups }
let navSeq = 0;

function makeContext(segments, params, query, controller, cleanups) {
  const signal = controller.signal;
  return {
    params,
    query,
    signal,
    /** Replaces the query in the address bar without reloading the page (deep links). */
    setQuery(next) {
      Object.keys(query).forEach((k) => delete query[k]);
      Object.assign(query, next);
      history.replaceState(history.state, '', buildHash(segments, query));
    },
    onCleanup(fn) {
      cleanups.push(fn);
    },
    /** Runs `fn` every `ms` while the tab is visible (and once when it becomes visible again). */
    every(ms, fn) {
      const tick = () => {
        if (document.visibilityState === 'visible' && !signal.aborted) fn();
      };
      const id = setInterval(tick, ms);
      const vis = () => document.visibilityState === 'visible' && tick();
      document.addEventListener('visibilitychange', vis);
      cleanups.push(() => {
        clearInterval(id);
        document.removeEventListener('visibilitychange', vis);
      });
    },
    /** Subscribes to live messages for the lifetime of the page. */
    live(fn) {
      cleanups.push(subscribe(fn));
    },
    /** Awaits `promise`; on failure (not an abort) shows the error in `where` and resolves null. */
    async guard(promise, where) {
      try {
        return await promise;
      } catch (e) {
        if (isAbort(e) || signal.aborted) return null;
        if (where) replace(where, notice(`Could not load: ${e.message}`, 'error'));
        return null;
      }
    },
  };
}

function updateNav(page) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === page || (page === 'packet' && a.dataset.nav === 'packets') || (page === 'node' && a.dataset.nav === 'nodes')
      || (page === 'observer' && a.dataset.nav === 'observers')) {
      a.setAttribute('aria-current', 'page');
    } else {
      a.removeAttribute('aria-current');
    }
  }
}

async function route(initial) {
  const seq = ++navSeq;
  if (current) {
    current.controller.abort();
    for (const fn of current.cleanups.splice(0)) {
      try {
        fn();
      } catch (e) {
        console.warn('cleanup failed', e);
      }
    }
    current = null;
  }
  const { segments, query } = parseHash();
  const m = match(segments);
  const section = h('section', { class: 'page', 'data-page': m ? m.route.page : 'notfound' });
  replace(main, section);
  document.body.classList.remove('nav-open');
  document.getElementById('nav-toggle').setAttribute('aria-expanded', 'false');
  if (!m) {
    updateNav(null);
    document.title = 'Not found — meshlens';
    section.append(h('h1', { tabindex: '-1' }, 'Not found'), h('p', null, 'There is no such page. ', h('a', { href: '#/' }, 'Go to the overview.')));
    return;
  }
  updateNav(m.route.page);
  const controller = new AbortController();
  const cleanups = [];
  current = { controller, cleanups };
  let mod;
  try {
    mod = await m.route.load();
  } catch (e) {
    if (seq === navSeq) section.append(notice(`Could not load this page: ${e.message}`, 'error'));
    return;
  }
  if (seq !== navSeq) return;
  document.title = `${mod.title || 'meshlens'} — meshlens`;
  mod.mount(section, makeContext(segments, m.params, query, controller, cleanups));
  if (!initial) {
    window.scrollTo(0, 0);
    const h1 = section.querySelector('h1');
    if (h1) h1.focus({ preventScroll: true });
  }
}

function buildShell() {
  const nav = document.getElementById('nav');
  replace(nav, h('ul', null, NAV.map(([href, label, key]) => h('li', null, h('a', { href, 'data-nav': key }, label)))));
  const toggle = document.getElementById('nav-toggle');
  toggle.addEventListener('click', () => {
    const open = document.body.classList.toggle('nav-open');
    toggle.setAttribute('aria-expanded', String(open));
  });
  document.getElementById('skip').addEventListener('click', () => {
    const target = main.querySelector('h1') || main;
    target.focus();
  });
  const badge = document.getElementById('live-status');
  const LABEL = { idle: 'live feed idle', connecting: 'connecting…', live: 'live', offline: 'offline, retrying' };
  onStatus((s) => {
    badge.dataset.state = s;
    badge.textContent = LABEL[s] || s;
  });
}

buildShell();
window.addEventListener('hashchange', () => route(false));
route(true);
