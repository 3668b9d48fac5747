// Channels (#/channels, #/channels/<hash>): the group channels heard, and the decrypted
// messages of one, newest first, with new ones arriving live. Message text and sender
// names are written as text only.

import { h, replace, notice } from '../dom.js';
import { get } from '../api.js';
import { ago, num, dateTime, iso } from '../format.js';
import { hashSizeBadge } from '../components/badges.js';

export const title = 'Channels';

const LIMIT = 200;

function message(m) {
  const text = m.encrypted ? h('span', { class: 'muted' }, 'encrypted — no key for this channel') : h('span', { class: 'text' }, m.message ?? m.text ?? '');
  return h('li', { 'data-hash': m.hash },
    m.sender ? h('span', { class: 'sender' }, m.sender) : null, text,
    h('span', { class: 'meta' },
      h('time', { datetime: iso(m.timestamp), title: dateTime(m.timestamp) }, ago(m.timestamp)),
      ` · ${num(m.observation_count)} observation${m.observation_count === 1 ? '' : 's'} · ${m.hop_count ?? '?'} hops · `,
      hashSizeBadge(m.hash_size), ' · ',
      h('a', { href: `#/packets/${encodeURIComponent(m.hash)}` }, 'packet')));
}

export function mount(root, ctx) {
  const current = ctx.params.hash || null;
  const side = h('nav', { 'aria-label': 'channels' }, notice('Loading…'));
  const main = h('div', { class: 'panel' });
  root.append(h('h1', { tabindex: '-1' }, current ? `Channel ${current}` : 'Channels'), h('div', { class: 'chat-layout' }, side, main));

  ctx.guard(get('/api/channels', { includeEncrypted: 'true' }, ctx.signal), side).then((d) => {
    if (!d) return;
    const chans = Array.isArray(d.channels) ? d.channels : [];
    if (!chans.length) {
      replace(side, notice('No channel traffic yet.'));
      return;
    }
    replace(side, h('ul', { class: 'channel-list' }, chans.map((c) => h('li', { 'data-channel': c.hash },
      h('a', { href: `#/channels/${encodeURIComponent(c.hash)}`, 'aria-current': c.hash === current ? 'page' : null },
        h('strong', null, c.name || c.hash), c.encrypted ? ' (encrypted)' : '', h('span', { class: 'muted' }, ` · ${num(c.messageCount)}`),
        h('span', { class: 'last' }, c.lastSender ? `${c.lastSender}: ` : '', c.lastMessage || '', c.lastActivity ? ` — ${ago(c.lastActivity)}` : ''))))));
  });

  if (!current) {
    replace(main, h('p', null, 'Pick a channel to read its messages.'));
    return;
  }
  const list = h('ol', { class: 'messages', 'aria-label': `messages in ${current}` });
  const count = h('p', { class: 'muted', role: 'status' }, 'Loading…');
  replace(main, count, list);
  const seen = new Set();
  let total = 0;
  ctx.guard(get(`/api/channels/${encodeURIComponent(current)}/messages`, { limit: LIMIT }, ctx.signal), main).then((d) => {
    if (!d) return;
    // The API lists the page oldest first (as CoreScope does); this page shows newest first.
    const msgs = Array.isArray(d.messages) ? d.messages.slice().reverse() : [];
    total = d.total ?? msgs.length;
    for (const m of msgs) seen.add(m.hash);
    replace(list, msgs.map(message));
    count.textContent = msgs.length ? `${num(total)} messages; the latest ${num(msgs.length)} shown, newest first.` : 'No messages in this channel yet.';
  });

  ctx.live((msg) => {
    const d = msg.type === 'packet' && msg.data;
    if (!d || d.channel !== current || seen.has(d.hash)) return;
    const pt = d.decoded && d.decoded.plaintext;
    if (!pt) return;
    seen.add(d.hash);
    total++;
    list.prepend(message({ hash: d.hash, timestamp: d.timestamp, sender: pt.sender, message: pt.message ?? pt.text, encrypted: false,
      observation_count: d.observation_count, hop_count: Array.isArray(d.path) ? d.path.length : null, hash_size: d.hash_size }));
    while (list.children.length > LIMIT) list.lastElementChild.remove();
    count.textContent = `${num(total)} messages; the latest ${num(list.children.length)} shown, newest first.`;
  });
}
