// A dependency-free image viewer: it reads only standard DICOMweb (QIDO-RS series, WADO-RS metadata, and frames
// decoded by the server to little-endian native pixels), applies rescale and then the window or the file's VOI LUT in
// the browser, and draws on a canvas. Stack scrolling by wheel, keys and drag; window/level by drag and CT presets;
// zoom, pan, invert, reset; length, angle and ROI in millimetres where the file says how big a pixel is (pixel
// spacing, detector spacing, ultrasound regions). With a finger: one finger applies the current tool, two pinch to
// zoom and move the image.
import { t, date, personName } from './i18n.js';

const dw = '/dicomweb';
const rawAccept = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1';

const presets = { brain: [40, 80], subdural: [75, 215], lung: [-600, 1500], mediastinum: [50, 350], abdomen: [60, 400], bone: [300, 1500] };

function v(obj, tag, i = 0) { const a = obj[tag]; return a && a.Value ? a.Value[i] : undefined; }
function num(obj, tag, def, i = 0) { const x = v(obj, tag, i); return x === undefined || x === null || x === '' ? def : Number(x); }
function items(obj, tag) { const a = obj[tag]; return (a && a.Value) || []; }

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: 'application/dicom+json' } });
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || r.statusText);
  return r.status === 204 ? [] : r.json();
}

// firstPart returns the body of the first part of a multipart/related answer.
function firstPart(buf, contentType) {
  const m = /boundary="?([^";]+)"?/.exec(contentType);
  const bytes = new Uint8Array(buf);
  if (!m) return bytes;
  const enc = new TextEncoder();
  const find = (needle, from) => {
    outer: for (let i = from; i <= bytes.length - needle.length; i++) {
      for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  };
  const start = find(enc.encode('\r\n\r\n'), 0) + 4;
  const end = find(enc.encode('\r\n--' + m[1]), start);
  return bytes.subarray(start, end < 0 ? bytes.length : end);
}

// bulk fetches a value sent by BulkDataURI (PS3.18 8.4.1.1), as little-endian bytes.
async function bulk(uri) {
  const r = await fetch(uri, { headers: { Accept: 'multipart/related; type="application/octet-stream"' } });
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || r.statusText);
  return firstPart(await r.arrayBuffer(), r.headers.get('Content-Type') || '');
}

async function frame(study, series, inst, n) {
  const r = await fetch(`${dw}/studies/${study}/series/${series}/instances/${inst}/frames/${n}`, { headers: { Accept: rawAccept } });
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || r.statusText);
  return firstPart(await r.arrayBuffer(), r.headers.get('Content-Type') || '');
}

// windowGrey applies the VOI LUT function LINEAR of PS3.3 C.11.2.1.2.1 (the same as the server's render package and
// dcmtk) to modality values, giving grey levels; MONOCHROME1 (or invert) turns them around.
export function windowGrey(values, wc, ww, inverted) {
  const out = new Uint8ClampedArray(values.length);
  const w1 = Math.max(1, ww) - 1 || 1; const lo = wc - 0.5 - w1 / 2; const hi = wc - 0.5 + w1 / 2;
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    const g = x <= lo ? 0 : x > hi ? 255 : Math.round(((x - (wc - 0.5)) / w1 + 0.5) * 255);
    out[i] = inverted ? 255 - g : g;
  }
  return out;
}

// lutGrey applies a VOI LUT (PS3.3 C.11.2.1.1, as the server's render package does) to modality values: a value
// below the first input mapped takes the first entry, one past the last the last entry; entries go from 0 (black) to
// 2^bits − 1 (white). MONOCHROME1 (or invert) turns the result around.
export function lutGrey(values, lut, inverted) {
  const top = 2 ** lut.bits - 1; const n = lut.data.length;
  const grey = new Uint8ClampedArray(n);
  for (let i = 0; i < n; i++) grey[i] = Math.round(Math.min(lut.data[i], top) / top * 255);
  const out = new Uint8ClampedArray(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = values[i]; const k = (x < 0 ? -Math.round(-x) : Math.round(x)) - lut.first; // halves away from zero, as Go's math.Round
    const g = grey[Math.min(n - 1, Math.max(0, k))];
    out[i] = inverted ? 255 - g : g;
  }
  return out;
}

// lutTable resolves one of imageMeta's VOI LUTs to { first, bits, data }: its LUT Data comes as a Value list, inline
// or by BulkDataURI. 8-bit entries packed two to a word are accepted, as the server's render package does.
export function lutTable(l) {
  if (!l.table) {
    l.table = (async () => {
      const [count, first0, bits] = l.desc.map(Number);
      const n = (count < 0 ? count + 65536 : count) || 65536;
      // The first input mapped is signed when the descriptor says SS, or when modality values can be negative.
      const first = first0 >= 32768 && l.signedFirst ? first0 - 65536 : first0;
      const src = l.data || {};
      let data;
      if (src.Value) data = Uint16Array.from(src.Value.map(Number));
      else {
        const bytes = src.InlineBinary ? Uint8Array.from(atob(src.InlineBinary), (c) => c.charCodeAt(0)) : src.BulkDataURI ? await bulk(src.BulkDataURI) : new Uint8Array(0);
        if (bytes.length >= 2 * n) data = new Uint16Array(bytes.slice(0, 2 * n).buffer);
        else if (bits === 8 && bytes.length >= n) data = Uint16Array.from(bytes.subarray(0, n));
      }
      if (!data || data.length < n || bits < 8 || bits > 16) throw new Error(`VOI LUT: ${n} entries of ${bits} bits, ${data ? data.length : 0} given`);
      l.ready = { first, bits, data: data.subarray(0, n) };
      return l.ready;
    })();
  }
  return l.table;
}

// imageMeta reads what drawing needs from an instance's DICOM JSON metadata.
export function imageMeta(m) {
  const bits = num(m, '00280100', 16);
  const iop = m['00200037'] && m['00200037'].Value ? m['00200037'].Value.map(Number) : null;
  const signed = num(m, '00280103', 0) === 1; const intercept = num(m, '00281052', 0);
  // The file's windows, each with its explanation (PS3.3 C.11.2.1.2), and its VOI LUTs (C.11.2.1.1).
  const windows = items(m, '00281051').map((w, i) => ({ wc: num(m, '00281050', null, i), ww: Number(w), explanation: v(m, '00281055', i) || '' }))
    .filter((w) => w.wc !== null && w.ww > 0);
  const voiLUTs = items(m, '00283010').map((it) => ({ desc: items(it, '00283002'), data: it['00283006'], explanation: v(it, '00283003') || '',
    signedFirst: (it['00283002'] || {}).vr === 'SS' || signed || intercept < 0 })).filter((l) => l.desc.length === 3);
  // Ultrasound regions (PS3.3 C.8.5.5.1): bounds in pixels, and physical units and size of a pixel per region.
  const regions = items(m, '00186011').map((r) => ({ x0: num(r, '00186018', 0), y0: num(r, '0018601A', 0), x1: num(r, '0018601C', -1), y1: num(r, '0018601E', -1),
    unitsX: num(r, '00186024', 0), unitsY: num(r, '00186026', 0), dx: num(r, '0018602C', 0), dy: num(r, '0018602E', 0) }));
  return { orientation: iop, rows: num(m, '00280010', 0), cols: num(m, '00280011', 0), bits, bitsStored: num(m, '00280101', bits), signed,
    slope: num(m, '00281053', 1), intercept, photometric: v(m, '00280004') || 'MONOCHROME2',
    samples: num(m, '00280002', 1), planar: num(m, '00280006', 0), wc: windows.length ? windows[0].wc : null, ww: windows.length ? windows[0].ww : null,
    windows, voiLUTs, regions,
    pixelSpacing: v(m, '00280030') !== undefined ? [num(m, '00280030', 1, 0), num(m, '00280030', 1, 1)] : null,
    imagerSpacing: v(m, '00181164') !== undefined ? [num(m, '00181164', 1, 0), num(m, '00181164', 1, 1)] : null,
    modality: v(m, '00080060') || '' };
}

// loadFrame fetches a frame decoded by the server and turns it into modality values (or RGB).
export async function loadFrame(study, series, inst, n, md) {
  return pixels(await frame(study, series, inst, n), md);
}

// pixels turns a frame's bytes into modality values (rescaled) or RGB. Stored values are taken to BitsStored
// (masked, or sign-extended when signed), as the pixel data module says (PS3.3 C.7.6.3.1.1).
function pixels(bytes, md) {
  const n = md.rows * md.cols;
  if (md.samples === 3) return { rgb: bytes, planar: md.planar === 1 };
  let src;
  const b = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  if (md.bits === 16) src = md.signed ? new Int16Array(b, 0, n) : new Uint16Array(b, 0, n);
  else if (md.bits === 32) src = md.signed ? new Int32Array(b, 0, n) : new Uint32Array(b, 0, n);
  else src = new Uint8Array(b, 0, n);
  const out = new Float32Array(n);
  let lo = Infinity; let hi = -Infinity;
  const bs = md.bitsStored || md.bits; const shift = 32 - bs; const mask = bs >= 32 ? -1 : (1 << bs) - 1;
  for (let i = 0; i < n; i++) {
    let raw = src[i];
    if (bs < md.bits) raw = md.signed ? (raw << shift) >> shift : raw & mask;
    const x = raw * md.slope + md.intercept;
    out[i] = x;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return { values: out, lo, hi };
}

// viewer shows a study in root. opts.suffix distinguishes the element ids of a second viewer on the page (comparison);
// opts.onScroll(fraction) is told where in the stack the user went, and the returned setPosition(fraction) moves
// there: two viewers scroll together through them.
export async function viewer(root, study, h, message, opts = {}) {
  const sfx = opts.suffix || '';
  const series = await getJSON(`${dw}/studies/${study}/series`);
  if (!series.length) throw new Error(t('studies.none'));
  const canvas = h('canvas', { id: 'viewport' + sfx, tabindex: 0 });
  const overlay = h('div', { class: 'overlay', id: 'overlay' + sfx });
  const thumbs = h('div', { class: 'series-list', id: 'series-list' + sfx });
  const tools = h('div', { class: 'tools' });
  root.replaceChildren(h('div', { class: 'viewer' }, thumbs, h('div', { class: 'stage' }, tools, h('div', { class: 'canvas-wrap' }, canvas, overlay))));

  // voi: null for the window wc/ww, else the index of the image's VOI LUT shown.
  const state = { slices: [], index: 0, wc: 40, ww: 400, voi: null, zoom: 1, panX: 0, panY: 0, invert: false, rotate: 0, flipH: false, flipV: false,
    md: null, cache: new Map(), info: {},
    tool: 'wl', marks: new Map(), pending: null, view: null };
  const ctx = canvas.getContext('2d');

  // Image coordinates (pixel centres at .5) of a pointer position on the canvas.
  function toImage(e) {
    const r = canvas.getBoundingClientRect();
    const p = (state.matrix || new DOMMatrix()).inverse().transformPoint(new DOMPoint(e.clientX - r.left, e.clientY - r.top));
    return { x: p.x, y: p.y };
  }
  function toCanvas(p) { const q = state.matrix.transformPoint(new DOMPoint(p.x, p.y)); return [q.x, q.y]; }

  // markers writes the patient's directions at the edges (PS3.3 C.7.6.2.1.1: L/R, A/P, H/F from the image's
  // orientation), turned with the image.
  function markers(md) {
    const iop = md.orientation;
    if (!iop || iop.length !== 6) { canvas.dataset.markers = ''; return; }
    const row = iop.slice(0, 3); const col = iop.slice(3, 6);
    const ax = state.matrix.transformPoint(new DOMPoint(1, 0)); const ay = state.matrix.transformPoint(new DOMPoint(0, 1));
    const o = state.matrix.transformPoint(new DOMPoint(0, 0));
    const vx = [ax.x - o.x, ax.y - o.y]; const vy = [ay.x - o.x, ay.y - o.y];
    const len = (v) => Math.hypot(v[0], v[1]) || 1;
    // The patient-space direction that points to the screen's right (i = 0) or down (i = 1).
    const dir = (i) => [0, 1, 2].map((k) => row[k] * vx[i] / len(vx) + col[k] * vy[i] / len(vy));
    const letters = (v) => [[v[0], 'L', 'R'], [v[1], 'P', 'A'], [v[2], 'H', 'F']]
      .filter(([c]) => Math.abs(c) > 0.3).sort((a, b) => Math.abs(b[0]) - Math.abs(a[0])).map(([c, pos, neg]) => (c > 0 ? pos : neg)).join('');
    const right = letters(dir(0)); const down = letters(dir(1));
    const opposite = (s) => s.replace(/./g, (c) => ({ L: 'R', R: 'L', A: 'P', P: 'A', H: 'F', F: 'H' })[c]);
    ctx.save();
    ctx.fillStyle = '#9fe'; ctx.font = 'bold 18px sans-serif'; ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
    const w = canvas.width; const hh = canvas.height;
    ctx.fillText(right, w - 16, hh / 2); ctx.fillText(opposite(right), 16, hh / 2);
    ctx.fillText(down, w / 2, hh - 14); ctx.fillText(opposite(down), w / 2, 14);
    ctx.restore();
    canvas.dataset.markers = [opposite(down), right, down, opposite(right)].join(' '); // top right bottom left
  }

  // spacing says how big a pixel is where the points pts lie, and by what: PixelSpacing (the patient), else
  // ImagerPixelSpacing (measured at the detector, PS3.3 10.7.1.3), else the ultrasound region that holds every point
  // if it is calibrated in centimetres both ways (PS3.3 C.8.5.5.1.15: units 3), else nothing (pixels). It is always
  // shown with the figure.
  function spacing(md, pts) {
    if (md.pixelSpacing) return { row: md.pixelSpacing[0], col: md.pixelSpacing[1], unit: 'mm', note: '' };
    if (md.imagerSpacing) return { row: md.imagerSpacing[0], col: md.imagerSpacing[1], unit: 'mm', note: t('measure.detector') };
    if (md.regions.length) {
      // Bounds are pixel indices, inclusive; a pixel covers [i, i+1) in image coordinates.
      const inside = (r, p) => p.x >= r.x0 && p.x < r.x1 + 1 && p.y >= r.y0 && p.y < r.y1 + 1;
      const r = md.regions.find((g) => g.unitsX === 3 && g.unitsY === 3 && g.dx > 0 && g.dy > 0 && pts.every((p) => inside(g, p)));
      if (r) return { row: r.dy * 10, col: r.dx * 10, unit: 'mm', note: t('measure.ultrasound') };
      return { row: 1, col: 1, unit: 'px', note: t('measure.uncalibrated') };
    }
    return { row: 1, col: 1, unit: 'px', note: t('measure.pixels') };
  }

  function measure(m, md, px) {
    const sp = spacing(md, [m.a, m.b, m.c].filter(Boolean));
    if (m.kind === 'length') {
      const d = Math.hypot((m.b.x - m.a.x) * sp.col, (m.b.y - m.a.y) * sp.row);
      return `${d.toFixed(sp.unit === 'mm' ? 1 : 0)} ${sp.unit}${sp.note ? ' ' + sp.note : ''}`;
    }
    if (m.kind === 'angle' && m.c) {
      const a1 = Math.atan2((m.a.y - m.b.y) * sp.row, (m.a.x - m.b.x) * sp.col);
      const a2 = Math.atan2((m.c.y - m.b.y) * sp.row, (m.c.x - m.b.x) * sp.col);
      let deg = Math.abs(a1 - a2) * 180 / Math.PI;
      if (deg > 180) deg = 360 - deg;
      return `${deg.toFixed(1)}°`;
    }
    if (m.kind === 'roi' && px && px.values) {
      const cx = (m.a.x + m.b.x) / 2; const cy = (m.a.y + m.b.y) / 2; const rx = Math.abs(m.b.x - m.a.x) / 2; const ry = Math.abs(m.b.y - m.a.y) / 2;
      let n = 0; let sum = 0; let sq = 0;
      for (let y = Math.floor(cy - ry); y <= Math.ceil(cy + ry); y++) {
        for (let x = Math.floor(cx - rx); x <= Math.ceil(cx + rx); x++) {
          if (x < 0 || y < 0 || x >= md.cols || y >= md.rows || rx === 0 || ry === 0) continue;
          const dx = (x + 0.5 - cx) / rx; const dy = (y + 0.5 - cy) / ry;
          if (dx * dx + dy * dy > 1) continue;
          const val = px.values[y * md.cols + x];
          n++; sum += val; sq += val * val;
        }
      }
      if (!n) return '';
      const mean = sum / n; const sd = Math.sqrt(Math.max(0, sq / n - mean * mean));
      const unit = md.modality === 'CT' ? ' HU' : '';
      const area = Math.PI * rx * ry * sp.row * sp.col;
      return `${t('measure.mean')} ${mean.toFixed(1)}${unit} SD ${sd.toFixed(1)} (${area.toFixed(1)} ${sp.unit}²${sp.note ? ' ' + sp.note : ''})`;
    }
    return '';
  }

  // drawShared draws what a live consult shares (opts.overlay()): arrows and circles, and the laser pointers, each in
  // its author's colour, on the slice they were drawn on.
  function drawShared(s) {
    if (!opts.overlay) return;
    const items = opts.overlay().filter((m) => m.key === s.key);
    ctx.save();
    ctx.lineWidth = 3;
    for (const m of items) {
      ctx.strokeStyle = m.color || '#ff4d4d'; ctx.fillStyle = m.color || '#ff4d4d';
      const [ax, ay] = toCanvas(m.a);
      if (m.kind === 'pointer') { ctx.beginPath(); ctx.arc(ax, ay, 7, 0, 2 * Math.PI); ctx.fill(); continue; }
      const [bx, by] = toCanvas(m.b);
      ctx.beginPath();
      if (m.kind === 'circle') ctx.ellipse((ax + bx) / 2, (ay + by) / 2, Math.abs(bx - ax) / 2 || 1, Math.abs(by - ay) / 2 || 1, 0, 0, 2 * Math.PI);
      else {
        ctx.moveTo(ax, ay); ctx.lineTo(bx, by);
        const ang = Math.atan2(by - ay, bx - ax);
        for (const d of [0.5, -0.5]) { ctx.moveTo(bx, by); ctx.lineTo(bx - 14 * Math.cos(ang + d), by - 14 * Math.sin(ang + d)); }
      }
      ctx.stroke();
    }
    ctx.restore();
    canvas.dataset.shared = String(items.filter((m) => m.kind !== 'pointer').length);
  }

  function drawMarks(s, px) {
    const marks = (state.marks.get(s.key) || []).concat(state.pending && state.pending.key === s.key ? [state.pending] : []);
    ctx.save();
    ctx.strokeStyle = '#ffd400'; ctx.fillStyle = '#ffd400'; ctx.lineWidth = 2; ctx.font = '16px sans-serif';
    const results = [];
    for (const m of marks) {
      const [ax, ay] = toCanvas(m.a); const [bx, by] = toCanvas(m.b);
      ctx.beginPath();
      if (m.kind === 'roi' || m.kind === 'circle') ctx.ellipse((ax + bx) / 2, (ay + by) / 2, Math.abs(bx - ax) / 2, Math.abs(by - ay) / 2, 0, 0, 2 * Math.PI);
      else { ctx.moveTo(ax, ay); ctx.lineTo(bx, by); if (m.c) { const [cx, cy] = toCanvas(m.c); ctx.lineTo(cx, cy); } }
      ctx.stroke();
      const label = measure(m, s.md, px);
      if (label) {
        // Beside the mark, but kept on the canvas (a narrow tablet screen would cut it off).
        const x = Math.max(4, Math.min(Math.max(ax, bx) + 6, canvas.width - ctx.measureText(label).width - 4));
        ctx.fillText(label, x, Math.max(18, Math.min(ay, by) - 6));
        results.push(label);
      }
    }
    ctx.restore();
    canvas.dataset.measurements = JSON.stringify(results);
  }

  // voiLUT is the table of the VOI LUT chosen for an image, or null when the window is shown (or while the table is
  // fetched: the image is drawn again when it comes).
  function voiLUT(md) {
    const l = state.voi !== null && md.voiLUTs[state.voi];
    if (!l) return null;
    if (!l.table) lutTable(l).then(draw, (e) => message(e.message));
    return l.ready || null;
  }
  const voiName = (l, i) => (l.explanation ? `VOI LUT: ${l.explanation}` : `VOI LUT ${i + 1}`);

  // The file's windows and VOI LUTs, a button each, when there is a choice (a LUT, or more than one window).
  let voiButtons = [];
  function voiChoices(md) {
    voiButtons.forEach((b) => b.remove());
    voiButtons = [];
    if (!md || !(md.voiLUTs.length || md.windows.length > 1)) return;
    md.windows.forEach((w, i) => voiButtons.push(h('button', { class: 'secondary voi', 'data-voi': 'w' + (i + 1),
      onclick: () => { state.voi = null; state.wc = w.wc; state.ww = w.ww; draw(); } }, w.explanation || `WL ${w.wc} / WW ${w.ww}`)));
    md.voiLUTs.forEach((l, i) => voiButtons.push(h('button', { class: 'secondary voi', 'data-voi': 'lut' + (i + 1),
      onclick: () => { state.voi = i; lutTable(l).then(draw, (e) => message(e.message)); draw(); } }, voiName(l, i))));
    tools.prepend(...voiButtons);
    fingerSize();
  }
  function markVoi(md) {
    const k = state.voi !== null ? 'lut' + (state.voi + 1) : 'w' + (md.windows.findIndex((w) => w.wc === state.wc && w.ww === state.ww) + 1);
    voiButtons.forEach((b) => { b.className = (b.dataset.voi === k ? '' : 'secondary ') + 'voi'; });
  }

  function draw() {
    const s = state.slices[state.index];
    if (s && s.key !== state.shownKey) { state.shownKey = s.key; canvas.dispatchEvent(new Event('renkei-slice')); }
    const px = s && state.cache.get(s.key);
    const lut = s && voiLUT(s.md);
    const w = canvas.clientWidth; const hgt = canvas.clientHeight;
    if (canvas.width !== w || canvas.height !== hgt) { canvas.width = w; canvas.height = hgt; }
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, w, hgt);
    if (px && !(px instanceof Promise)) {
      const md = s.md;
      const img = new ImageData(md.cols, md.rows);
      const d = img.data;
      const n = md.rows * md.cols;
      if (px.bitmap) {
        // Colour from the server's rendering (PALETTE COLOR, YBR): drawn as it comes.
      } else if (px.values) {
        const inverted = state.invert !== (md.photometric === 'MONOCHROME1');
        const g = lut ? lutGrey(px.values, lut, inverted) : windowGrey(px.values, state.wc, state.ww, inverted);
        for (let i = 0, j = 0; i < n; i++, j += 4) { d[j] = d[j + 1] = d[j + 2] = g[i]; d[j + 3] = 255; }
      } else {
        for (let i = 0, j = 0; i < n; i++, j += 4) {
          const [r, g, b] = px.planar ? [px.rgb[i], px.rgb[n + i], px.rgb[2 * n + i]] : [px.rgb[3 * i], px.rgb[3 * i + 1], px.rgb[3 * i + 2]];
          d[j] = state.invert ? 255 - r : r; d[j + 1] = state.invert ? 255 - g : g; d[j + 2] = state.invert ? 255 - b : b; d[j + 3] = 255;
        }
      }
      let off = px.bitmap;
      if (!off) {
        off = new OffscreenCanvas(md.cols, md.rows);
        off.getContext('2d').putImageData(img, 0, 0);
      }
      const turned = state.rotate % 180 !== 0;
      const fit = Math.min(w / (turned ? md.rows : md.cols), hgt / (turned ? md.cols : md.rows)) * state.zoom;
      ctx.imageSmoothingEnabled = fit < 1;
      // Image to canvas: centre, pan, rotate, flip, scale (a DOMMatrix, inverted for the pointer).
      state.matrix = new DOMMatrix().translate(w / 2 + state.panX, hgt / 2 + state.panY).rotate(state.rotate)
        .scale(state.flipH ? -fit : fit, state.flipV ? -fit : fit).translate(-md.cols / 2, -md.rows / 2);
      ctx.setTransform(state.matrix);
      ctx.drawImage(off, 0, 0);
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      const o = state.matrix.transformPoint(new DOMPoint(0, 0));
      state.view = { ox: o.x, oy: o.y, scale: fit };
      canvas.dataset.view = JSON.stringify(state.view);
      drawMarks(s, px);
      drawShared(s);
      markers(md);
      markVoi(md);
    }
    const i = state.info;
    overlay.replaceChildren(
      h('div', { class: 'tl' }, personName(i.name), h('br'), `ID ${i.id || ''}`, h('br'), date(i.date)),
      h('div', { class: 'tr' }, i.series || '', h('br'), `${state.index + 1} / ${state.slices.length}`),
      h('div', { class: 'bl', id: 'wl' + sfx }, lut ? voiName(s.md.voiLUTs[state.voi], state.voi)
        : `WL ${Math.round(state.wc)} / WW ${Math.round(state.ww)}`),
      h('div', { class: 'br' }, `×${state.zoom.toFixed(1)}`));
    canvas.dataset.slice = String(state.index + 1);
    canvas.dataset.zoom = String(state.zoom);
    canvas.dataset.voi = lut ? `lut${state.voi + 1}` : 'window';
    canvas.dataset.loaded = String(!!(px && !(px instanceof Promise)));
  }

  function load(k) {
    const s = state.slices[k];
    if (!s || state.cache.has(s.key)) return s && state.cache.get(s.key);
    const colour = s.md.photometric === 'PALETTE COLOR' || s.md.photometric.startsWith('YBR');
    const fetched = colour
      ? fetch(`${dw}/studies/${study}/series/${s.series}/instances/${s.uid}/frames/${s.frame}/rendered`, { headers: { Accept: 'image/png' } })
        .then((r) => { if (!r.ok) throw new Error(r.statusText); return r.blob(); }).then((b) => createImageBitmap(b)).then((bitmap) => ({ bitmap }))
      : frame(study, s.series, s.uid, s.frame).then((bytes) => pixels(bytes, s.md));
    const p = fetched.then((px) => {
      state.cache.set(s.key, px);
      if (k === state.index) draw();
    }).catch((e) => { state.cache.delete(s.key); message(e.message); });
    state.cache.set(s.key, p);
    return p;
  }

  async function openSeries(se) {
    const uid = v(se, '0020000E');
    const meta = await getJSON(`${dw}/studies/${study}/series/${uid}/metadata`);
    // One entry per frame: a CT series is many instances of one frame, an ultrasound or angiography run one
    // instance of many frames.
    const slices = meta.flatMap((m) => Array.from({ length: Math.max(1, num(m, '00280008', 1)) }, (_, f) => ({
      uid: v(m, '00080018'), series: uid, frame: f + 1, key: `${v(m, '00080018')}/${f + 1}`,
      order: (num(m, '00200032', null, 2) ?? num(m, '00200013', 0)) + f / 10000,
      fps: num(m, '00180040', 0) || (num(m, '00181063', 0) ? 1000 / num(m, '00181063', 0) : 0),
      md: imageMeta(m),
    }))).filter((s) => s.md.rows > 0);
    slices.sort((a, b) => a.order - b.order);
    const oneInstance = slices.every((s) => s.uid === slices[0].uid);
    stopCine();
    Object.assign(state, { slices, index: oneInstance ? 0 : Math.floor(slices.length / 2), cache: new Map(), zoom: 1, panX: 0, panY: 0 });
    const m0 = meta[0] || {};
    state.info = { name: (v(m0, '00100010') || {}).Alphabetic ? [v(m0, '00100010').Alphabetic, v(m0, '00100010').Ideographic, v(m0, '00100010').Phonetic].map((x) => x || '').join('=') : '',
      id: v(m0, '00100020'), date: v(m0, '00080020'), series: v(m0, '0008103E') || v(m0, '00080060') };
    // The file's first window, else its first VOI LUT, else the image's range (as dcmtk's dcm2pnm +Wi 1, +Wl 1, +Wm).
    const md = slices[state.index] && slices[state.index].md;
    state.voi = null;
    if (md && md.wc !== null && md.ww !== null) { state.wc = md.wc; state.ww = md.ww; } else if (md && md.voiLUTs.length) {
      state.voi = 0;
      await lutTable(md.voiLUTs[0]).catch((e) => { state.voi = null; message(e.message); });
    }
    voiChoices(md);
    await load(state.index);
    const px = state.cache.get(slices[state.index].key);
    if (md && (md.wc === null || md.ww === null) && px && px.values) { state.ww = Math.max(1, px.hi - px.lo); state.wc = px.lo + state.ww / 2; }
    draw();
    // Then the rest of the stack, nearest first, four at a time.
    const order = slices.map((_, k) => k).sort((a, b) => Math.abs(a - state.index) - Math.abs(b - state.index));
    const next = async () => { while (order.length) { await load(order.shift()); } };
    await Promise.all([next(), next(), next(), next()]);
    canvas.dataset.stack = 'loaded';
  }

  for (const se of series) {
    const b = h('button', { class: 'secondary series', onclick: () => openSeries(se).catch((e) => message(e.message)) },
      h('img', { class: 'thumb', alt: '', src: `${dw}/studies/${study}/series/${v(se, '0020000E')}/thumbnail?viewport=96,96` }),
      h('div', {}, `${v(se, '00080060') || ''} ${v(se, '0008103E') || ''}`.trim() || '—'), h('div', { class: 'muted' }, `${v(se, '00201209') || ''}`));
    thumbs.append(b);
  }
  const go = (d) => {
    state.index = Math.max(0, Math.min(state.slices.length - 1, state.index + d));
    load(state.index);
    draw();
    if (opts.onScroll && state.slices.length > 1) opts.onScroll(state.index / (state.slices.length - 1));
  };
  const setPosition = (fraction) => {
    if (!state.slices.length) return;
    state.index = Math.round(fraction * (state.slices.length - 1));
    load(state.index);
    draw();
  };
  // Cine: frames one after the other at the file's rate (CineRate, else FrameTime), 10 per second otherwise.
  let cine = null;
  const cineButton = h('button', { class: 'secondary', id: 'cine' + sfx, onclick: () => (cine ? stopCine() : startCine()) }, t('viewer.play'));
  function startCine() {
    const s = state.slices[state.index];
    const fps = Math.min(60, (s && s.fps) || 10);
    cine = setInterval(() => { state.index = (state.index + 1) % state.slices.length; load(state.index); draw(); }, 1000 / fps);
    cineButton.textContent = t('viewer.pause');
    canvas.dataset.cine = 'playing';
  }
  function stopCine() {
    if (cine) clearInterval(cine);
    cine = null;
    cineButton.textContent = t('viewer.play');
    canvas.dataset.cine = 'stopped';
  }
  for (const [name, [c, w]] of Object.entries(presets)) {
    tools.append(h('button', { class: 'secondary preset', 'data-preset': name, onclick: () => { state.voi = null; state.wc = c; state.ww = w; draw(); } }, t('preset.' + name)));
  }
  const toolButtons = [];
  for (const tool of ['wl', 'stack', 'length', 'angle', 'roi'].concat(opts.onAnnotate ? ['arrow', 'circle', 'pointer'] : [])) {
    const b = h('button', { class: tool === 'wl' ? 'tool' : 'secondary tool', 'data-tool': tool, onclick: () => {
      state.tool = tool; state.pending = null;
      toolButtons.forEach((x) => { x.className = x.dataset.tool === tool ? 'tool' : 'secondary tool'; });
      draw();
    } }, t('tool.' + tool));
    toolButtons.push(b);
    tools.append(b);
  }
  tools.append(h('button', { class: 'secondary', id: 'clear-marks' + sfx, onclick: () => { state.marks.clear(); state.pending = null; draw(); } }, t('tool.clear')));
  tools.append(h('button', { class: 'secondary', id: 'invert' + sfx, onclick: () => { state.invert = !state.invert; draw(); } }, t('viewer.invert')),
    h('button', { class: 'secondary', onclick: () => { state.zoom *= 1.25; draw(); } }, '＋'),
    h('button', { class: 'secondary', onclick: () => { state.zoom /= 1.25; draw(); } }, '－'),
    cineButton,
    h('button', { class: 'secondary', id: 'rotate' + sfx, onclick: () => { state.rotate = (state.rotate + 90) % 360; draw(); } }, t('viewer.rotate')),
    h('button', { class: 'secondary', id: 'flip' + sfx, onclick: () => { state.flipH = !state.flipH; draw(); } }, t('viewer.flip')),
    h('button', { class: 'secondary', id: 'reset' + sfx, onclick: () => {
      Object.assign(state, { zoom: 1, panX: 0, panY: 0, invert: false, rotate: 0, flipH: false, flipV: false }); draw();
    } }, t('viewer.reset')));

  // Key images: when the viewer is opened for a reading report (opts.keyImages), a button marks the image on screen
  // as one the report points to, or unmarks it.
  if (opts.keyImages) {
    const kb = h('button', { class: 'secondary', id: 'key-image' + sfx });
    const label = () => {
      const s = state.slices[state.index];
      const on = s && opts.keyImages.has({ study, series: s.series, instance: s.uid, frame: s.frame });
      kb.textContent = `${on ? '★' : '☆'} ${t('viewer.key')} (${opts.keyImages.count()})`;
      kb.setAttribute('aria-pressed', on ? 'true' : 'false');
    };
    kb.addEventListener('click', () => {
      const s = state.slices[state.index];
      if (s) opts.keyImages.toggle({ study, series: s.series, instance: s.uid, frame: s.frame });
      label();
    });
    canvas.addEventListener('renkei-slice', label);
    tools.append(kb);
    label();
  }

  // On a touch screen (a coarse pointer) the tool buttons are a finger's size: 44 px (WCAG 2.5.5). Set here rather
  // than in app.css, next to the buttons it sizes (CSSOM is allowed under the page's style-src 'self').
  const coarse = window.matchMedia('(pointer: coarse)');
  function fingerSize() { tools.querySelectorAll('button').forEach((b) => { b.style.minHeight = coarse.matches ? '44px' : ''; }); }
  coarse.addEventListener('change', fingerSize);
  fingerSize();
  // The viewer takes the height left below it in the window, so that the whole canvas is on the screen however
  // many lines the header and the tool bar wrap to (a tablet held upright); side by side, the comparison's CSS does.
  const box = root.firstChild;
  function fitHeight() {
    if (opts.suffix || !box.isConnected) return;
    const hgt = `${Math.max(360, Math.floor(window.innerHeight - box.getBoundingClientRect().top - window.scrollY - 16))}px`;
    if (box.style.height !== hgt) box.style.height = hgt;
  }
  const fitter = window.ResizeObserver ? new ResizeObserver(fitHeight) : null;
  if (fitter) fitter.observe(document.body);
  window.addEventListener('resize', fitHeight);
  fitHeight();
  window.addEventListener('hashchange', () => {
    stopCine(); coarse.removeEventListener('change', fingerSize); window.removeEventListener('resize', fitHeight); if (fitter) fitter.disconnect();
  }, { once: true });
  canvas.addEventListener('wheel', (e) => { e.preventDefault(); go(e.deltaY > 0 ? 1 : -1); }, { passive: false });
  canvas.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' || e.key === 'ArrowRight' || e.key === 'PageDown') { go(1); e.preventDefault(); }
    if (e.key === 'ArrowUp' || e.key === 'ArrowLeft' || e.key === 'PageUp') { go(-1); e.preventDefault(); }
  });
  let drag = null;
  const addMark = (m) => { const s = state.slices[state.index]; const list = state.marks.get(s.key) || []; list.push(m); state.marks.set(s.key, list); };
  // The fingers (or the mouse) down on the canvas, by pointer id. One applies the current tool as the mouse does;
  // a second one turns the gesture into a pinch, which zooms about the fingers and moves the image with them.
  const pointers = new Map();
  let pinch = null;
  function fingers() {
    const [p, q] = [...pointers.values()];
    const r = canvas.getBoundingClientRect();
    return { d: Math.hypot(q.x - p.x, q.y - p.y) || 1, x: (p.x + q.x) / 2 - r.left, y: (p.y + q.y) / 2 - r.top };
  }
  canvas.addEventListener('pointerdown', (e) => {
    canvas.setPointerCapture(e.pointerId);
    canvas.focus({ preventScroll: true }); // scrolling the page would move the image under the finger
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (pointers.size === 2) {
      // What the first finger began gives way to the pinch: a line being drawn is dropped, a window change undone.
      if (drag && drag.mode === 'measure') state.pending = null;
      if (drag && drag.mode === 'angle-c' && state.pending) delete state.pending.c;
      if (drag && drag.mode === 'wl') { state.wc = drag.wc; state.ww = drag.ww; }
      drag = null;
      const f = fingers();
      pinch = { d: f.d, x: f.x, y: f.y, zoom: state.zoom, panX: state.panX, panY: state.panY };
      draw();
      return;
    }
    if (pointers.size > 2 || pinch) return;
    const s = state.slices[state.index];
    if (state.tool === 'pointer' && opts.onPointer && s) {
      drag = { mode: 'pointer' };
      opts.onPointer({ key: s.key, a: toImage(e) });
      return;
    }
    if (['length', 'angle', 'roi', 'arrow', 'circle'].includes(state.tool) && e.button === 0 && !e.shiftKey && s) {
      const p = toImage(e);
      if (state.tool === 'angle' && state.pending && state.pending.kind === 'angle' && state.pending.b) {
        state.pending.c = p; drag = { mode: 'angle-c' }; draw();
        return;
      }
      state.pending = { kind: state.tool, key: s.key, a: p, b: p };
      drag = { mode: 'measure' };
      return;
    }
    drag = { x: e.clientX, y: e.clientY, wc: state.wc, ww: state.ww,
      mode: e.shiftKey || e.button === 1 ? 'pan' : e.button === 2 || e.ctrlKey || state.tool === 'stack' ? 'stack' : 'wl' };
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!pointers.has(e.pointerId)) return;
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (pinch) {
      if (pointers.size < 2) return;
      const f = fingers();
      state.zoom = Math.min(40, Math.max(0.1, pinch.zoom * f.d / pinch.d));
      // The image point that was under the fingers' midpoint stays under it: the drawing is centre + pan + zoom × …
      const k = state.zoom / pinch.zoom; const cx = canvas.clientWidth / 2; const cy = canvas.clientHeight / 2;
      state.panX = f.x - cx - k * (pinch.x - cx - pinch.panX);
      state.panY = f.y - cy - k * (pinch.y - cy - pinch.panY);
      draw();
      return;
    }
    if (!drag) return;
    if (drag.mode === 'pointer') { const s = state.slices[state.index]; if (s) opts.onPointer({ key: s.key, a: toImage(e) }); return; }
    if (drag.mode === 'measure') { state.pending.b = toImage(e); draw(); return; }
    if (drag.mode === 'angle-c') { state.pending.c = toImage(e); draw(); return; }
    const dx = e.clientX - drag.x; const dy = e.clientY - drag.y;
    if (drag.mode === 'wl') { state.voi = null; state.ww = Math.max(1, state.ww + dx * Math.max(1, state.ww / 200)); state.wc += dy * Math.max(1, state.ww / 400); draw(); }
    if (drag.mode === 'pan') { state.panX += dx; state.panY += dy; draw(); }
    if (drag.mode === 'stack' && Math.abs(dy) > 4) { go(dy > 0 ? 1 : -1); }
    drag.x = e.clientX; drag.y = e.clientY;
  });
  const up = (e) => {
    if (!pointers.delete(e.pointerId)) return;
    if (pinch) {
      if (!pointers.size) pinch = null;
      return;
    }
    const measuring = drag && state.pending && (drag.mode === 'measure' || drag.mode === 'angle-c');
    if (measuring && e.type === 'pointerup') {
      if (drag.mode === 'measure') state.pending.b = toImage(e);
      else state.pending.c = toImage(e);
      if (['arrow', 'circle'].includes(state.pending.kind)) {
        // A consult's arrow or circle belongs to the room, not to this viewer's own measurements.
        if (opts.onAnnotate) opts.onAnnotate({ kind: state.pending.kind, key: state.pending.key, a: state.pending.a, b: state.pending.b });
        state.pending = null;
      } else if (state.pending.kind !== 'angle' || state.pending.c) { addMark(state.pending); state.pending = null; }
    } else if (measuring) { // cancelled: the line being drawn goes
      if (drag.mode === 'measure') state.pending = null;
      else delete state.pending.c;
    }
    drag = null;
    if (measuring) draw();
  };
  canvas.addEventListener('pointerup', up);
  canvas.addEventListener('pointercancel', up);
  canvas.addEventListener('contextmenu', (e) => e.preventDefault());
  // A live consult follows what is shown: opts.onDraw hears the view after every drawing, and setView (below)
  // shows a view another participant chose.
  const view = () => {
    const s = state.slices[state.index];
    return { series: s ? s.series : '', index: state.index, wc: state.wc, ww: state.ww, zoom: state.zoom, panX: state.panX, panY: state.panY,
      rotate: state.rotate, flipH: state.flipH, invert: state.invert };
  };
  if (opts.onDraw) {
    const inner = draw;
    draw = () => { inner(); opts.onDraw(view()); };
  }
  async function setView(vw) {
    const cur = state.slices[state.index];
    if (vw.series && (!cur || cur.series !== vw.series)) {
      const se = series.find((x) => v(x, '0020000E') === vw.series);
      if (se) await openSeries(se);
    }
    Object.assign(state, { wc: vw.wc, ww: vw.ww, zoom: vw.zoom, panX: vw.panX, panY: vw.panY, rotate: vw.rotate, flipH: vw.flipH, invert: vw.invert, voi: null });
    state.index = Math.max(0, Math.min(state.slices.length - 1, vw.index));
    load(state.index);
    draw();
  }
  // Redraw whenever the canvas's box changes (window resize, a second viewer appearing beside it).
  if (window.ResizeObserver) new ResizeObserver(() => draw()).observe(canvas);
  else window.addEventListener('resize', draw);
  const ready = openSeries(series[0]);
  if (opts.returnEarly) return { setPosition, ready, setView, redraw: () => draw() };
  await ready;
  return { setPosition, ready, setView, redraw: () => draw() };
}

// compare shows two studies side by side (a current one and a prior), scrolling together while sync is on.
export async function compare(root, a, b, h, message) {
  const left = h('div', { class: 'compare-pane' });
  const right = h('div', { class: 'compare-pane' });
  const sync = h('input', { type: 'checkbox', id: 'sync', checked: true });
  root.replaceChildren(h('div', { class: 'compare-bar' }, h('label', { for: 'sync', class: 'inline' }, sync, ' ', t('compare.sync'))),
    h('div', { class: 'compare' }, left, right));
  let va = null; let vb = null;
  va = await viewer(left, a, h, message, { suffix: '-a', returnEarly: true, onScroll: (f) => { if (sync.checked && vb) vb.setPosition(f); } });
  vb = await viewer(right, b, h, message, { suffix: '-b', returnEarly: true, onScroll: (f) => { if (sync.checked && va) va.setPosition(f); } });
  await Promise.all([va.ready, vb.ready]);
}
