// A virtualised table: only the rows in view (plus a few either side) exist in the DOM, so a
// list of 10,000 packets scrolls like one of 50. Rows are links (role="row") with a roving
// tabindex: Tab enters the list at one row, arrow keys, Page Up/Down, Home and End move,
// Enter opens. Rows are cached by key and version, and the visible window is reconciled in
// place so a focused row keeps its focus while the list scrolls or grows at the top.

import { h } from '../dom.js';

/**
 * @param {object} o
 * @param {Array<{key:string,label:string,render:(item)=>any}>} o.columns
 * @param {(item)=>string} o.key          stable identity of an item
 * @param {(item)=>object} o.rowAttrs     attributes of the row link (href, data-*)
 * @param {string} o.label                accessible name of the table
 * @param {number} [o.rowHeight]
 * @param {()=>void} [o.onEndReached]      called when the last rows come into view
 */
export function virtualList(o) {
  const rh = o.rowHeight || 36;
  const overscan = 8;
  let items = [];
  let active = 0;
  let frame = 0;
  const cache = new Map(); // key -> {v, el}

  const head = h('div', { class: 'vrow vhead', role: 'row' },
    o.columns.map((c) => h('span', { class: `cell col-${c.key}`, role: 'columnheader' }, c.label)));
  const win = h('div', { class: 'vlist-window', role: 'rowgroup' });
  const spacer = h('div', { class: 'vlist-spacer' }, win);
  const scroller = h('div', { class: 'vlist-scroll' }, spacer);
  const el = h('div', { class: 'vlist', role: 'table', 'aria-label': o.label }, h('div', { role: 'rowgroup', class: 'vlist-headgroup' }, head), scroller);
  el.style.setProperty('--row-h', `${rh}px`);

  function rowFor(item, index) {
    const k = o.key(item);
    const v = item._v || 0;
    let c = cache.get(k);
    if (!c || c.v !== v) {
      const row = h('a', { class: 'vrow', role: 'row', ...o.rowAttrs(item) },
        o.columns.map((col) => h('span', { class: `cell col-${col.key}`, role: 'cell' }, col.render(item))));
      c = { v, el: row };
      cache.set(k, c);
    }
    c.el.dataset.index = String(index);
    c.el.setAttribute('aria-rowindex', String(index + 2));
    return c.el;
  }

  function render() {
    frame = 0;
    const n = items.length;
    spacer.style.height = `${n * rh}px`;
    el.setAttribute('aria-rowcount', String(n + 1));
    el.dataset.count = String(n);
    const top = scroller.scrollTop;
    const vh = scroller.clientHeight || 600;
    const start = Math.max(0, Math.floor(top / rh) - overscan);
    const end = Math.min(n, Math.ceil((top + vh) / rh) + overscan);
    win.style.transform = `translateY(${start * rh}px)`;
    const want = [];
    for (let i = start; i < end; i++) want.push(rowFor(items[i], i));
    const keep = new Set(want);
    for (const child of [...win.children]) if (!keep.has(child)) child.remove();
    want.forEach((node, j) => {
      const at = win.children[j];
      if (at !== node) win.insertBefore(node, at || null);
    });
    const tabbable = active >= start && active < end ? active : start;
    for (const node of want) node.tabIndex = Number(node.dataset.index) === tabbable ? 0 : -1;
    if (cache.size > 4 * (end - start) + 200) {
      // Forget rows far out of view; they are rebuilt when scrolled back to.
      for (const [k, c] of cache) if (!keep.has(c.el)) cache.delete(k);
    }
    if (o.onEndReached && n && end >= n - overscan) o.onEndReached();
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(render);
  }

  function focusIndex(i) {
    const n = items.length;
    if (!n) return;
    i = Math.max(0, Math.min(n - 1, i));
    active = i;
    const vh = scroller.clientHeight;
    if (i * rh < scroller.scrollTop) scroller.scrollTop = i * rh;
    else if ((i + 1) * rh > scroller.scrollTop + vh) scroller.scrollTop = (i + 1) * rh - vh;
    render();
    const row = win.querySelector(`[data-index="${i}"]`);
    if (row) row.focus({ preventScroll: true });
  }

  scroller.addEventListener('scroll', schedule, { passive: true });
  scroller.addEventListener('focusin', (e) => {
    const idx = e.target && e.target.dataset ? Number(e.target.dataset.index) : NaN;
    if (Number.isFinite(idx)) active = idx;
  });
  scroller.addEventListener('keydown', (e) => {
    const idx = Number(e.target && e.target.dataset ? e.target.dataset.index : NaN);
    if (!Number.isFinite(idx)) return;
    const page = Math.max(1, Math.floor(scroller.clientHeight / rh) - 1);
    const moves = { ArrowDown: idx + 1, ArrowUp: idx - 1, PageDown: idx + page, PageUp: idx - page, Home: 0, End: items.length - 1 };
    if (e.key in moves) {
      e.preventDefault();
      focusIndex(moves[e.key]);
    }
  });
  const ro = typeof ResizeObserver === 'function' ? new ResizeObserver(schedule) : null;
  if (ro) ro.observe(scroller);

  return {
    el,
    /** Replaces the items (the array is kept by reference; mutate it and call `changed`). */
    setItems(next) {
      items = next;
      active = Math.min(active, Math.max(0, items.length - 1));
      schedule();
    },
    /** Call after mutating the items; `prepended` rows were added at the top. */
    changed(prepended = 0) {
      if (prepended) {
        if (scroller.scrollTop > 0) {
          spacer.style.height = `${items.length * rh}px`;
          scroller.scrollTop += prepended * rh;
        }
        if (document.activeElement && win.contains(document.activeElement)) active += prepended;
        else active = 0;
      }
      schedule();
    },
    /** True when the user has scrolled away from the top. */
    scrolled() {
      return scroller.scrollTop > rh;
    },
    scrollToTop() {
      scroller.scrollTop = 0;
      schedule();
    },
    destroy() {
      if (ro) ro.disconnect();
      cancelAnimationFrame(frame);
    },
  };
}
