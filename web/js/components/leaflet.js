// Loads the vendored Leaflet (web/vendor/leaflet, BSD-2-Clause) on first use, so only the map
// page pays for it. A script element with a same-origin src is allowed by the CSP.

let loading = null;

/** Resolves to the global `L` once Leaflet's CSS and script are in. */
export function loadLeaflet() {
  if (window.L) return Promise.resolve(window.L);
  if (loading) return loading;
  loading = new Promise((resolve, reject) => {
    const css = document.createElement('link');
    css.rel = 'stylesheet';
    css.href = 'vendor/leaflet/leaflet.css';
    document.head.append(css);
    const js = document.createElement('script');
    js.src = 'vendor/leaflet/leaflet.js';
    js.onload = () => (window.L ? resolve(window.L) : reject(new Error('Leaflet did not load')));
    js.onerror = () => {
      loading = null;
      js.remove();
      reject(new Error('Leaflet could not be fetched'));
    };
    document.head.append(js);
  });
  return loading;
}
