// A sortable table for lists of modest size (observers, adopters, legacy suspects): header
// buttons sort, `aria-sort` tells assistive technology, rows carry data-* hooks. Cells are
// text or nodes built by the caller, never markup.

import { h, replace } from '../dom.js';

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined || a === '') return 1;
  if (b === null || b === undefined || b === '') return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true, sensitivity: 'base' });
}

/**
 * @param {object} o
 * @param {Array<{key,label,render:(row)=>any,value?:(row)=>any,cls?:string}>} o.columns
 * @param {string} o.label          caption (visually hidden unless `o.showCaption`)
 * @param {(row)=>object} [o.rowAttrs]
 * @param {string} [o.sortKey] @param {'asc'|'desc'} [o.sortDir]
 * @param {(key, dir)=>void} [o.onSort] told about user sorting (to put it in the URL)
 * @param {string} [o.empty] text when there are no rows
 */
export function sortableTable(o) {
  let rows = [];
  let sortKey = o.sortKey || null;
  let sortDir = o.sortDir === 'desc' ? 'desc' : 'asc';
  const tbody = h('tbody');
  const headCells = o.columns.map((c) => {
    const btn = h('button', { type: 'button', class: 'sort', onclick: () => sortBy(c.key) }, c.label);
    return h('th', { scope: 'col', class: c.cls || null, 'data-key': c.key }, c.value === null ? c.label : btn);
  });
  const table = h('table', { class: 'data' },
    h('caption', { class: o.showCaption ? null : 'sr-only' }, o.label),
    h('thead', null, h('tr', null, headCells)), tbody);
  const el = h('div', { class: 'table-wrap' }, table);

  function sortBy(key) {
    if (sortKey === key) sortDir = sortDir === 'asc' ? 'desc' : 'asc';
    else {
      sortKey = key;
      sortDir = 'asc';
    }
    if (o.onSort) o.onSort(sortKey, sortDir);
    render();
  }

  function render() {
    headCells.forEach((th, i) => {
      const k = o.columns[i].key;
      if (k === sortKey) th.setAttribute('aria-sort', sortDir === 'asc' ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    });
    let list = rows;
    const col = o.columns.find((c) => c.key === sortKey);
    if (col) {
      const val = col.value || ((r) => r[col.key]);
      list = [...rows].sort((a, b) => (sortDir === 'asc' ? 1 : -1) * compare(val(a), val(b)));
    }
    if (!list.length) {
      replace(tbody, h('tr', null, h('td', { colspan: String(o.columns.length), class: 'muted' }, o.empty || 'Nothing to show.')));
      return;
    }
    replace(tbody, list.map((r) => h('tr', o.rowAttrs ? o.rowAttrs(r) : null,
      o.columns.map((c) => h('td', { class: c.cls || null }, c.render ? c.render(r) : (r[c.key] ?? '—'))))));
  }

  return {
    el,
    setRows(next) {
      rows = next;
      render();
    },
  };
}
