// API reference (#/api-docs, also what /api/docs redirects to): every route of the HTTP API
// from /api/openapi.json, grouped by tag, with its parameters. CoreScope's paths, parameters
// and keys answer here as they do there; meshlens's own routes are listed beside them.

import { h, replace, notice } from '../dom.js';
import { get } from '../api.js';

export const title = 'API';

function operation(path, method, op) {
  const params = Array.isArray(op.parameters) ? op.parameters : [];
  return h('li', { class: 'api-op', 'data-path': path, 'data-method': method },
    h('p', null,
      h('code', { class: 'badge' }, method.toUpperCase()), ' ',
      h('code', { class: 'mono' }, path)),
    op.summary ? h('p', { class: 'muted' }, op.summary) : null,
    params.length
      ? h('ul', { class: 'api-params' }, params.map((p) => h('li', null,
        h('code', null, p.name), ` (${p.in}${p.required ? ', required' : ''})`,
        p.description ? ` — ${p.description}` : '')))
      : null);
}

export function mount(root, ctx) {
  const body = h('div', null, notice('Loading…'));
  root.append(h('h1', { tabindex: '-1' }, 'API'), body);
  ctx.guard(get('/api/openapi.json', null, ctx.signal), body).then((spec) => {
    if (!spec) return;
    const byTag = new Map();
    for (const [path, item] of Object.entries(spec.paths || {})) {
      for (const [method, op] of Object.entries(item || {})) {
        const tag = (Array.isArray(op.tags) && op.tags[0]) || 'other';
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push(operation(path, method, op));
      }
    }
    const info = spec.info || {};
    replace(body,
      h('p', null, info.description || ''),
      h('p', null, 'The machine-readable document: ', h('a', { href: '/api/openapi.json' }, '/api/openapi.json')),
      ...[...byTag.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([tag, ops]) =>
        h('section', { class: 'panel', 'aria-label': `${tag} routes` }, h('h2', null, tag), h('ul', { class: 'api-ops' }, ops))));
  });
}
