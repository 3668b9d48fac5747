// Live (#/live): observations streaming in over /ws as they are heard — one line per
// observation (time, type, path hash size, observer, SNR/RSSI, what it is about). The list
// is bounded (the last 500) and can be paused and filtered by type without a round trip.

import { h, select } from '../dom.js';
import { clock, summarize, dB, shortKey, num, PAYLOAD_TYPES } from '../format.js';
import { hashSizeBadge } from '../components/badges.js';

export const title = 'Live';

const KEEP = 500;

function line(d) {
  const dec = d.decoded || {};
  return h('li', { 'data-hash': d.hash, 'data-type': dec.payload_type_name || '' },
    h('span', null, h('time', { datetime: d.timestamp }, clock(d.timestamp))),
    h('span', null, h('a', { href: `#/packets/${encodeURIComponent(d.hash)}`, title: `packet ${d.hash}` }, dec.payload_type_name || '?')),
    h('span', { class: 'f-hs' }, hashSizeBadge(d.hash_size ?? dec.hash_size)),
    h('span', { class: 'f-obs', title: d.observer }, d.observer_name || shortKey(d.observer)),
    h('span', { class: 'f-rf muted' }, `${dB(d.snr, 'dB')} ${dB(d.rssi, 'dBm')}`),
    h('span', null, summarize(dec, d.channel)));
}

export function mount(root, ctx) {
  const q = ctx.query;
  let paused = false;
  let received = 0;
  let lagged = 0;
  const feed = h('ol', { class: 'feed', 'aria-label': 'live observations, newest first', 'aria-live': 'off' });
  const info = h('p', { class: 'muted', role: 'status' }, 'Waiting for packets…');
  const pauseBtn = h('button', { type: 'button', 'aria-pressed': 'false', onclick: () => {
    paused = !paused;
    pauseBtn.setAttribute('aria-pressed', String(paused));
    pauseBtn.textContent = paused ? 'Paused — resume' : 'Pause';
  } }, 'Pause');
  const typeSel = select('Show type', [['', 'all types'], ...PAYLOAD_TYPES.map((t) => [t, t])], q.type, (v) => ctx.setQuery({ ...q, type: v }), { name: 'type' });
  root.append(h('h1', { tabindex: '-1' }, 'Live'),
    h('div', { class: 'filters' }, h('label', null, 'Type', typeSel), pauseBtn, h('button', { type: 'button', onclick: () => feed.replaceChildren() }, 'Clear')),
    info, feed);

  let queue = [];
  let frame = 0;
  function flush() {
    frame = 0;
    const batch = queue.slice(-KEEP);
    queue = [];
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.append(line(batch[i]));
    feed.prepend(frag);
    while (feed.children.length > KEEP) feed.lastElementChild.remove();
    info.textContent = `${num(received)} observations received since this page opened${lagged ? `; ${num(lagged)} times the feed outran this page and skipped some` : ''}. Showing the last ${num(feed.children.length)}.`;
  }
  ctx.live((msg) => {
    if (msg.type === 'lagged') {
      lagged++;
      return;
    }
    if (msg.type !== 'packet' || !msg.data || typeof msg.data.hash !== 'string') return;
    received++;
    if (paused) return;
    const t = q.type;
    if (t && (msg.data.decoded || {}).payload_type_name !== t) return;
    queue.push(msg.data);
    if (!frame) frame = requestAnimationFrame(flush);
  });
  ctx.onCleanup(() => cancelAnimationFrame(frame));
}
