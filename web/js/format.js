// Formatting of times, numbers, keys and packet summaries for display (text only).

const rtf = typeof Intl !== 'undefined' && Intl.RelativeTimeFormat
  ? new Intl.RelativeTimeFormat(undefined, { numeric: 'auto', style: 'short' }) : null;

/** Milliseconds since the epoch for an ISO string, a number of ms, or null. */
export function ms(t) {
  if (t === null || t === undefined || t === '') return null;
  const v = typeof t === 'number' ? t : Date.parse(t);
  return Number.isFinite(v) ? v : null;
}

/** "12 s ago", "3 min ago", "2 days ago"; "—" for no time. */
export function ago(t, now = Date.now()) {
  const v = ms(t);
  if (v === null) return '—';
  const s = Math.round((v - now) / 1000);
  const a = Math.abs(s);
  if (a < 5) return 'just now';
  if (!rtf) return `${a} s`;
  if (a < 60) return rtf.format(s, 'second');
  if (a < 3600) return rtf.format(Math.round(s / 60), 'minute');
  if (a < 86400) return rtf.format(Math.round(s / 3600), 'hour');
  return rtf.format(Math.round(s / 86400), 'day');
}

/** Local date and time, seconds precision. */
export function dateTime(t) {
  const v = ms(t);
  return v === null ? '—' : new Date(v).toLocaleString(undefined, { hour12: false });
}

/** Local time of day (HH:MM:SS). */
export function clock(t) {
  const v = ms(t);
  return v === null ? '—' : new Date(v).toLocaleTimeString(undefined, { hour12: false });
}

/** Local hours and minutes (HH:MM). */
export function hhmm(t) {
  const v = ms(t);
  return v === null ? '—' : new Date(v).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
}

/** An element-friendly ISO string for `<time datetime>`. */
export function iso(t) {
  const v = ms(t);
  return v === null ? null : new Date(v).toISOString();
}

export function num(n) {
  return typeof n === 'number' && Number.isFinite(n) ? n.toLocaleString() : '—';
}

export function pct(part, total) {
  if (!total) return '0 %';
  const p = (100 * part) / total;
  if (p === 0) return '0 %';
  return `${p < 10 ? p.toFixed(1) : Math.round(p)} %`;
}

export function shortKey(k, n = 8) {
  return typeof k === 'string' ? k.slice(0, n) : '—';
}

/** A seconds count as "3 h 20 min". */
export function duration(secs) {
  if (typeof secs !== 'number' || !Number.isFinite(secs)) return '—';
  const d = Math.floor(secs / 86400), hr = Math.floor((secs % 86400) / 3600), m = Math.floor((secs % 3600) / 60);
  if (d) return `${d} d ${hr} h`;
  if (hr) return `${hr} h ${m} min`;
  if (m) return `${m} min`;
  return `${Math.floor(secs)} s`;
}

export function dB(v, unit) {
  return typeof v === 'number' && Number.isFinite(v) ? `${v.toFixed(1)} ${unit}` : '—';
}

export const ROLES = ['repeater', 'room', 'companion', 'sensor'];
export const ROLE_LABEL = { repeater: 'Repeater', room: 'Room server', companion: 'Companion', sensor: 'Sensor' };
export const PAYLOAD_TYPES = ['REQ', 'RESPONSE', 'TXT_MSG', 'ACK', 'ADVERT', 'GRP_TXT', 'GRP_DATA',
  'ANON_REQ', 'PATH', 'TRACE', 'MULTIPART', 'CONTROL', 'RAW_CUSTOM'];
export const ROUTE_TYPES = ['TRANSPORT_FLOOD', 'FLOOD', 'DIRECT', 'TRANSPORT_DIRECT'];

/** The name of a payload type number (wire values 0–11 and 15), else "type N". */
export function payloadTypeName(n) {
  const v = Number(n);
  if (v === 15) return 'RAW_CUSTOM';
  return Number.isInteger(v) && v >= 0 && v < 12 ? PAYLOAD_TYPES[v] : `type ${n}`;
}

/** The name of a route type number (0–3), else "route N". */
export function routeTypeName(n) {
  const v = Number(n);
  return Number.isInteger(v) && v >= 0 && v < 4 ? ROUTE_TYPES[v] : `route ${n}`;
}

/** One line saying what a decoded packet is about. */
export function summarize(d, channel) {
  if (!d || d.valid === false) return d && d.error ? `invalid: ${d.error}` : 'undecoded';
  switch (d.payload_type_name) {
    case 'ADVERT': {
      const role = d.node_type_name ? d.node_type_name.toLowerCase() : 'node';
      return `${d.name || shortKey(d.pubkey)} (${role})${d.signature_valid === false ? ' — bad signature' : ''}`;
    }
    case 'GRP_TXT':
    case 'GRP_DATA': {
      const ch = d.channel || channel;
      if (d.plaintext && typeof d.plaintext.text === 'string') return `${ch || 'channel'}: ${d.plaintext.text}`;
      return `encrypted, channel hash ${d.channel_hash ?? '?'}`;
    }
    case 'TXT_MSG':
    case 'REQ':
    case 'RESPONSE':
    case 'PATH':
      return `${d.src_hash ?? '?'} → ${d.dest_hash ?? '?'}`;
    case 'ANON_REQ':
      return `to ${d.dest_hash ?? '?'} from ${shortKey(d.pubkey)}`;
    case 'ACK':
      return d.checksum ? `checksum ${d.checksum}` : 'ack';
    case 'TRACE':
      return d.tag !== undefined ? `tag ${d.tag}` : 'trace';
    default:
      return d.payload_len !== undefined ? `${d.payload_len} bytes` : '';
  }
}
