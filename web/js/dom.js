// Safe DOM construction. Everything heard on the mesh (node names, message text, channel and
// observer names) is hostile, so it only ever enters the page as text: `h()` turns string
// children into text nodes, allows a fixed set of attributes, refuses URL schemes other than
// our own hash routes, same-origin paths and http(s), and wires events as listeners — never
// as markup. No function here takes HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

const SAFE_ATTR = new Set([
  'class', 'id', 'title', 'role', 'tabindex', 'type', 'name', 'placeholder', 'for', 'colspan',
  'rowspan', 'scope', 'lang', 'dir', 'min', 'max', 'step', 'width', 'height', 'viewBox', 'd',
  'x', 'y', 'x1', 'x2', 'y1', 'y2', 'cx', 'cy', 'r', 'rx', 'fill', 'stroke', 'stroke-width',
  'points', 'transform', 'preserveAspectRatio', 'autocomplete', 'inputmode', 'spellcheck',
  'maxlength', 'size', 'rel', 'target', 'datetime', 'open', 'text-anchor', 'font-size',
  'dominant-baseline', 'focusable', 'xmlns', 'shape-rendering',
]);
// Attributes set as DOM properties (their attribute form only sets the initial state).
const PROPS = new Set(['value', 'checked', 'selected', 'disabled', 'hidden', 'multiple']);

/** True for hrefs we generate ourselves: hash routes, same-origin paths, http(s) links. */
export function safeHref(href) {
  const s = String(href);
  return s.startsWith('#') || (s.startsWith('/') && !s.startsWith('//')) || /^https?:\/\//i.test(s);
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (PROPS.has(k)) {
      el[k] = v;
    } else if (k === 'href') {
      if (safeHref(v)) el.setAttribute('href', String(v));
    } else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) if (dv !== undefined && dv !== null) el.dataset[dk] = String(dv);
    } else if (SAFE_ATTR.has(k) || k.startsWith('aria-') || k.startsWith('data-')) {
      el.setAttribute(k, v === true ? '' : String(v));
    } else {
      throw new Error(`dom: attribute ${k} not allowed`);
    }
  }
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Creates an HTML element: `h('a', {href: '#/x', class: 'y'}, 'text', child)`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Creates an SVG element, same calling convention as `h`. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Removes every child of `el` and appends the given ones. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A `<dl>` from [label, value] pairs; values are nodes or text, null rows are skipped. */
export function defList(pairs, cls = 'kv') {
  const dl = h('dl', { class: cls });
  for (const p of pairs) {
    if (!p) continue;
    dl.append(h('dt', null, p[0]), h('dd', null, p[1] ?? '—'));
  }
  return dl;
}

/** A labelled `<select>`; options are [value, text] pairs. */
export function select(label, options, value, onChange, attrs = {}) {
  const sel = h('select', { 'aria-label': label, ...attrs, onchange: (e) => onChange(e.target.value) },
    options.map(([v, t]) => h('option', { value: v }, t)));
  sel.value = value ?? '';
  return sel;
}

/** A notice box for loading, empty and error states. */
export function notice(text, kind = 'info') {
  return h('p', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}
