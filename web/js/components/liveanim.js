// The animation layer of the live map: one <canvas> over a Leaflet map, drawn with
// requestAnimationFrame only while something is moving. An event is one packet (one hash):
// each copy an observer heard is a branch, a chain of segments origin → relays → observer
// drawn one after the other. A segment is solid only when both its ends are placed with
// confidence and no unplaced hop lies between them; otherwise it is dashed and faded.
// State is bounded: at most `maxActive` events animate at once (the oldest are dropped
// beyond it), and nothing is kept once its animation has faded out. No text from the mesh is
// ever drawn here (only the path hash size, "1B".."3B").

const SEG_MS = 450; // one hop's travel time on screen
const HOLD_MS = 900; // how long a finished path stays before fading
const FADE_MS = 700;
const PULSE_MS = 800; // a packet with a single known point: a ring grows there

/**
 * @param {object} L Leaflet
 * @param {object} map a Leaflet map
 * @param {{maxActive?: number, reduced?: boolean, onFrame?: (now: number) => void, onStats?: (s: object) => void}} opts
 */
export function animationLayer(L, map, opts = {}) {
  const maxActive = opts.maxActive || 200;
  const reduced = !!opts.reduced;
  const seg = reduced ? 0 : SEG_MS;
  const container = map.getContainer();
  const canvas = document.createElement('canvas');
  canvas.className = 'live-anim';
  canvas.setAttribute('aria-hidden', 'true');
  container.append(canvas);
  const g = canvas.getContext('2d');
  let dpr = 1;
  let w = 0;
  let hgt = 0;
  const active = [];
  const stats = { events: 0, active: 0, dropped: 0, segments: 0, uncertain: 0, frames: 0 };
  let raf = 0;
  let dirty = false;

  function resize() {
    dpr = window.devicePixelRatio || 1;
    w = container.clientWidth;
    hgt = container.clientHeight;
    canvas.width = Math.max(1, Math.round(w * dpr));
    canvas.height = Math.max(1, Math.round(hgt * dpr));
    canvas.style.width = `${w}px`;
    canvas.style.height = `${hgt}px`;
    kick();
  }

  function kick() {
    dirty = true;
    if (!raf) raf = requestAnimationFrame(frame);
  }

  function endOf(ev) {
    let end = ev.born;
    for (const b of ev.branches) end = Math.max(end, b.start + Math.max(b.segs.length * seg, b.segs.length ? 0 : PULSE_MS));
    return end + HOLD_MS + FADE_MS;
  }

  function frame(now) {
    raf = 0;
    stats.frames++;
    if (opts.onFrame) opts.onFrame(now);
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    let keep = 0;
    for (let i = 0; i < active.length; i++) {
      const ev = active[i];
      if (now >= ev.end) continue;
      active[keep++] = ev;
      draw(ev, now);
    }
    active.length = keep;
    stats.active = keep;
    if (opts.onStats) opts.onStats(stats);
    if (keep || opts.onFrame && opts.wantsFrames && opts.wantsFrames()) raf = requestAnimationFrame(frame);
    dirty = false;
  }

  function pt(ll) {
    return map.latLngToContainerPoint(ll);
  }

  function draw(ev, now) {
    const fade = now > ev.end - FADE_MS ? Math.max(0, (ev.end - now) / FADE_MS) : 1;
    g.lineWidth = ev.width;
    g.lineCap = 'round';
    g.strokeStyle = ev.color;
    g.fillStyle = ev.color;
    let labelAt = null;
    for (const b of ev.branches) {
      const t = now - b.start;
      if (t < 0) continue;
      if (!b.segs.length) {
        if (!b.dot) continue;
        const p = pt(b.dot);
        const k = reduced ? 1 : Math.min(1, t / PULSE_MS);
        g.globalAlpha = fade * (b.sure ? 0.9 : 0.45) * (1 - 0.6 * k);
        g.setLineDash(b.sure ? [] : [3, 3]);
        g.beginPath();
        g.arc(p.x, p.y, 4 + 12 * k, 0, Math.PI * 2);
        g.stroke();
        labelAt = labelAt || p;
        continue;
      }
      for (let i = 0; i < b.segs.length; i++) {
        const s = b.segs[i];
        const k = seg ? Math.min(1, (t - i * seg) / seg) : 1;
        if (k <= 0) break;
        const a = pt(s.a);
        const z = pt(s.b);
        const x = a.x + (z.x - a.x) * k;
        const y = a.y + (z.y - a.y) * k;
        g.globalAlpha = fade * (s.sure ? 0.9 : 0.45);
        g.setLineDash(s.sure ? [] : [5, 6]);
        g.beginPath();
        g.moveTo(a.x, a.y);
        g.lineTo(x, y);
        g.stroke();
        if (i === 0) labelAt = labelAt || a;
        if (k < 1) {
          g.setLineDash([]);
          g.beginPath();
          g.arc(x, y, ev.width + 1.5, 0, Math.PI * 2);
          g.fill();
        }
      }
    }
    if (labelAt && ev.label) {
      g.globalAlpha = fade;
      g.setLineDash([]);
      g.font = '600 10px system-ui, sans-serif';
      g.fillText(ev.label, labelAt.x + 6, labelAt.y - 6);
    }
    g.globalAlpha = 1;
  }

  /** Starts animating `ev` ({color, width, label, branches}); returns it, to add copies later. */
  function add(ev, now = performance.now()) {
    ev.born = now;
    ev.branches = ev.branches || [];
    for (const b of ev.branches) count(b);
    ev.end = endOf(ev);
    active.push(ev);
    stats.events++;
    while (active.length > maxActive) {
      active.shift();
      stats.dropped++;
    }
    kick();
    return ev;
  }

  function count(b) {
    stats.segments += b.segs.length;
    for (const s of b.segs) if (!s.sure) stats.uncertain++;
  }

  /** Adds another observer's copy to an event already animating (or finished: it restarts). */
  function addBranch(ev, b) {
    ev.branches.push(b);
    count(b);
    ev.end = endOf(ev);
    if (!active.includes(ev)) {
      active.push(ev);
      while (active.length > maxActive) {
        active.shift();
        stats.dropped++;
      }
    }
    kick();
  }

  map.on('resize', resize);
  map.on('move zoom', () => !dirty && kick());
  resize();

  return {
    add,
    addBranch,
    stats,
    kick,
    clear() {
      active.length = 0;
      kick();
    },
    destroy() {
      cancelAnimationFrame(raf);
      raf = 0;
      active.length = 0;
      canvas.remove();
    },
  };
}
