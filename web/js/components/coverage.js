// Receive coverage without a map: the hexagon cells of /api/rx-coverage and
// /api/nodes/{pk}/rx-coverage (GeoJSON) reduced to numbers, for tables and cards.

/** The whole world as the `bbox` parameter (minLat,minLon,maxLat,maxLon). */
export const WORLD_BBOX = '-90,-180,90,180';

/** The centre [lat, lon] of a hexagon feature (the mean of its corners), or null. */
export function cellCentre(f) {
  const ring = f && f.geometry && Array.isArray(f.geometry.coordinates) ? f.geometry.coordinates[0] : null;
  if (!Array.isArray(ring) || ring.length < 2) return null;
  // The ring is closed: its last corner repeats the first.
  const corners = ring.slice(0, -1).filter((p) => Array.isArray(p) && Number.isFinite(p[0]) && Number.isFinite(p[1]));
  if (!corners.length) return null;
  const lon = corners.reduce((a, p) => a + p[0], 0) / corners.length;
  const lat = corners.reduce((a, p) => a + p[1], 0) / corners.length;
  return [lat, lon];
}

/** Cells, receptions, distinct nodes listed and the best SNR of a collection. */
export function coverageSummary(cov) {
  const features = cov && Array.isArray(cov.features) ? cov.features : [];
  const nodes = new Set();
  let receptions = 0;
  let bestSnr = null;
  for (const f of features) {
    const p = f.properties || {};
    if (typeof p.count === 'number') receptions += p.count;
    if (typeof p.best_snr === 'number' && (bestSnr === null || p.best_snr > bestSnr)) bestSnr = p.best_snr;
    for (const n of Array.isArray(p.nodes) ? p.nodes : []) nodes.add(n.prefix);
  }
  return { cells: features.length, receptions, nodes: nodes.size, bestSnr };
}
