// The JSON API client: one `get()` with query building, abort support and readable errors.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** True when `e` is the rejection of an aborted fetch (navigating away). */
export function isAbort(e) {
  return e && (e.name === 'AbortError' || (e.cause && e.cause.name === 'AbortError'));
}

/** Builds `path?query` from an object, skipping empty values. */
export function url(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** GET a JSON document from the API. Throws ApiError (status, server message) on failure. */
export async function get(path, params, signal) {
  const res = await fetch(url(path, params), { signal, headers: { Accept: 'application/json' } });
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    if (isAbort(e)) throw e;
    if (res.ok) throw new ApiError(res.status, 'the server sent something that is not JSON');
  }
  if (!res.ok) {
    const msg = body && typeof body.error === 'string' ? body.error : `HTTP ${res.status}`;
    throw new ApiError(res.status, msg);
  }
  return body;
}
