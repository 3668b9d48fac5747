// The one live connection to /ws, shared by every page that wants packets as they arrive.
// It opens when the first subscriber appears, closes a little after the last one leaves,
// reconnects with backoff (1 s doubling to 30 s) and reports its state to the header badge.
// Messages are JSON: {"type":"packet","data":{...}} per observation, {"type":"lagged"} when
// this client fell behind and missed some.

const subscribers = new Set();
const statusListeners = new Set();
let socket = null;
let state = 'idle';
let retryMs = 1000;
let retryTimer = 0;
let closeTimer = 0;

function setState(s) {
  state = s;
  for (const fn of statusListeners) fn(s);
}

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

function open() {
  clearTimeout(retryTimer);
  if (socket) return;
  setState('connecting');
  const ws = new WebSocket(wsUrl());
  socket = ws;
  ws.addEventListener('open', () => {
    retryMs = 1000;
    setState('live');
  });
  ws.addEventListener('message', (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!msg || typeof msg.type !== 'string') return;
    for (const fn of subscribers) {
      try {
        fn(msg);
      } catch (e) {
        // A page bug must not cut the others off; surface it in the console.
        console.warn('live subscriber failed', e);
      }
    }
  });
  ws.addEventListener('close', () => {
    if (socket !== ws) return;
    socket = null;
    if (subscribers.size) {
      setState('offline');
      retryTimer = setTimeout(open, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    } else {
      setState('idle');
    }
  });
}

function close() {
  if (socket) {
    const ws = socket;
    socket = null;
    ws.close();
  }
  clearTimeout(retryTimer);
  setState('idle');
}

/** Calls `fn(message)` for every live message until the returned function is called. */
export function subscribe(fn) {
  subscribers.add(fn);
  clearTimeout(closeTimer);
  open();
  return () => {
    subscribers.delete(fn);
    if (!subscribers.size) {
      clearTimeout(closeTimer);
      closeTimer = setTimeout(() => subscribers.size || close(), 5000);
    }
  };
}

/** Calls `fn(state)` now and on every change: idle | connecting | live | offline. */
export function onStatus(fn) {
  statusListeners.add(fn);
  fn(state);
  return () => statusListeners.delete(fn);
}
