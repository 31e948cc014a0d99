// Upload, replacing the CD-ROM: files, folders (a CD-ROM or USB stick chosen as a folder: every file is looked at,
// whether DICOMDIR lists it or not) and zip files, each file sent to POST /api/upload with its own progress and
// result in words a clerk understands.
import { t } from './i18n.js';

const maxZipTotal = 20 * 2 ** 30; // what a zip may expand to, all entries together
const maxZipRatio = 200; // and how much one entry may expand: beyond, it is a zip bomb

// An item to send: a name as the user sees it and a way to get its bytes (a File, or a zip entry).
function item(name, size, blob) { return { name, size, blob, state: 'waiting', sent: 0, result: null }; }

async function readDir(entry, prefix, out) {
  const reader = entry.createReader();
  for (;;) {
    const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
    if (!batch.length) break;
    for (const e of batch) await walk(e, prefix + entry.name + '/', out);
  }
}

async function walk(entry, prefix, out) {
  if (entry.isDirectory) return readDir(entry, prefix, out);
  const file = await new Promise((res, rej) => entry.file(res, rej));
  out.push({ file, path: prefix + entry.name });
}

// zipItems lists a zip file's entries as items, refusing the dangerous ones instead of expanding them.
async function zipItems(file, refused) {
  const buf = new Uint8Array(await file.arrayBuffer());
  const dv = new DataView(buf.buffer);
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) if (dv.getUint32(i, true) === 0x06054b50) { eocd = i; break; }
  if (eocd < 0) { refused.push({ name: file.name, reason: 'bad-zip' }); return []; }
  const count = dv.getUint16(eocd + 10, true);
  let p = dv.getUint32(eocd + 16, true);
  const items = [];
  let total = 0;
  const dec = new TextDecoder();
  for (let k = 0; k < count && p + 46 <= buf.length; k++) {
    if (dv.getUint32(p, true) !== 0x02014b50) break;
    const method = dv.getUint16(p + 10, true); const csize = dv.getUint32(p + 20, true); const usize = dv.getUint32(p + 24, true);
    const nlen = dv.getUint16(p + 28, true); const xlen = dv.getUint16(p + 30, true); const clen = dv.getUint16(p + 32, true);
    const attrs = dv.getUint32(p + 38, true); const local = dv.getUint32(p + 42, true);
    const name = dec.decode(buf.subarray(p + 46, p + 46 + nlen));
    p += 46 + nlen + xlen + clen;
    const shown = `${file.name}/${name}`;
    if (name.endsWith('/')) continue;
    if (name.startsWith('/') || name.split(/[\\/]/).includes('..') || /^[a-zA-Z]:/.test(name)) { refused.push({ name: shown, reason: 'unsafe-path' }); continue; }
    if (((attrs >>> 16) & 0xf000) === 0xa000) { refused.push({ name: shown, reason: 'symlink' }); continue; }
    total += usize;
    if (total > maxZipTotal || (csize > 0 && usize / csize > maxZipRatio && usize > 1 << 20)) { refused.push({ name: shown, reason: 'zip-bomb' }); continue; }
    if (method !== 0 && method !== 8) { refused.push({ name: shown, reason: 'bad-zip' }); continue; }
    const ln = dv.getUint16(local + 26, true); const lx = dv.getUint16(local + 28, true);
    const data = buf.subarray(local + 30 + ln + lx, local + 30 + ln + lx + csize);
    const blob = method === 0 ? new Blob([data]) : () => inflate(data, usize);
    items.push(item(shown, usize, blob));
  }
  return items;
}

// inflate expands a deflated zip entry, stopping at the size its header announced (a lying header is a bomb).
async function inflate(data, limit) {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  const reader = stream.getReader();
  const parts = []; let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > limit) { reader.cancel(); throw new Error('zip-bomb'); }
    parts.push(value);
  }
  return new Blob(parts);
}

async function isDICOM(blob) {
  const head = new Uint8Array(await blob.slice(128, 132).arrayBuffer());
  return head.length === 4 && head[0] === 0x44 && head[1] === 0x49 && head[2] === 0x43 && head[3] === 0x4d; // "DICM"
}

const chunkSize = 8 * 2 ** 20; // files above this go in resumable chunks (a long ultrasound or angiography run)

// sendResumable sends a large file in chunks, resuming from the server's offset after a dropped line.
async function sendResumable(it, blob, csrf, onprogress) {
  const headers = { 'X-CSRF-Token': csrf };
  const start = await fetch('/api/uploads', { method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: it.name, size: blob.size }) });
  if (!start.ok) return { file: it.name, outcome: 'refused', reason: 'failed', detail: (await start.json().catch(() => ({}))).detail };
  const { id } = await start.json();
  let offset = 0; let failures = 0;
  for (;;) {
    let r;
    try {
      r = await fetch(`/api/uploads/${id}`, { method: 'PATCH', headers: { ...headers, 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' },
        body: blob.slice(offset, Math.min(blob.size, offset + chunkSize)) });
    } catch (e) { r = null; }
    if (r && r.ok) {
      const body = await r.json();
      if (body.outcome) return body; // the last chunk: the file's result
      offset = body.offset; failures = 0;
      onprogress(offset);
      continue;
    }
    if (++failures > 6) return { file: it.name, outcome: 'refused', reason: 'network' };
    await new Promise((ok) => setTimeout(ok, 500 * 2 ** failures)); // the line may come back
    try {
      const st = await fetch(`/api/uploads/${id}`);
      if (st.ok) offset = (await st.json()).offset;
    } catch (e) { /* try again */ }
  }
}

// prepare gets an item's bytes and says whether to send it: the CD's DICOMDIR and files that are not DICOM images
// are answered here, without a trip to the server.
async function prepare(it) {
  let blob = it.blob;
  try {
    if (typeof blob === 'function') blob = await blob();
  } catch (e) {
    return { refused: { file: it.name, outcome: 'refused', reason: 'zip-bomb' } };
  }
  if (/(^|\/)DICOMDIR$/i.test(it.name)) return { refused: { file: it.name, outcome: 'refused', reason: 'dicomdir' } };
  if (!(await isDICOM(blob))) return { refused: { file: it.name, outcome: 'refused', reason: 'not-dicom' } };
  return { blob };
}

// sendBatch sends small files together (a CD of 500 slices is 25 requests, not 500), and returns their results in
// order.
// sendBatch sends small files together (multipart/form-data), telling onprogress how many bytes have gone, so that
// the overall bar moves on a slow line too.
async function sendBatch(items, csrf, onprogress = () => {}) {
  const results = new Array(items.length);
  const form = new FormData();
  const sent = [];
  for (let i = 0; i < items.length; i++) {
    const p = await prepare(items[i]);
    if (p.refused) { results[i] = p.refused; continue; }
    form.append('file', p.blob, items[i].name);
    sent.push(i);
  }
  if (sent.length) {
    const answers = await new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/api/upload');
      xhr.setRequestHeader('X-CSRF-Token', csrf);
      xhr.upload.onprogress = (e) => onprogress(e.loaded);
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if (xhr.status === 200 && Array.isArray(body)) { resolve(body); return; }
        for (const i of sent) results[i] = { file: items[i].name, outcome: 'refused', reason: 'failed', detail: body && body.detail };
        resolve(null);
      };
      xhr.onerror = () => {
        for (const i of sent) results[i] = { file: items[i].name, outcome: 'refused', reason: 'network' };
        resolve(null);
      };
      xhr.send(form);
    });
    if (answers) sent.forEach((i, k) => { results[i] = { ...answers[k], file: items[i].name }; });
  }
  return results;
}

function send(it, csrf, onprogress) {
  return new Promise((resolve) => {
    const run = async () => {
      let blob = it.blob;
      try {
        if (typeof blob === 'function') blob = await blob();
      } catch (e) {
        resolve({ file: it.name, outcome: 'refused', reason: 'zip-bomb' });
        return;
      }
      // DICOMDIR is the CD's table of contents, itself a DICOM file but no image: every file is looked at anyway,
      // so nothing it lists (or forgets to list) is missed.
      if (/(^|\/)DICOMDIR$/i.test(it.name)) {
        resolve({ file: it.name, outcome: 'refused', reason: 'dicomdir' });
        return;
      }
      if (!(await isDICOM(blob))) {
        resolve({ file: it.name, outcome: 'refused', reason: 'not-dicom' });
        return;
      }
      if (blob.size > chunkSize) {
        resolve(await sendResumable(it, blob, csrf, onprogress));
        return;
      }
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/api/upload?name=' + encodeURIComponent(it.name));
      xhr.setRequestHeader('Content-Type', 'application/dicom');
      xhr.setRequestHeader('X-CSRF-Token', csrf);
      xhr.upload.onprogress = (e) => onprogress(e.loaded);
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
        if (xhr.status === 200) resolve(body);
        else resolve({ file: it.name, outcome: 'refused', reason: 'failed', detail: body.detail || xhr.statusText });
      };
      xhr.onerror = () => resolve({ file: it.name, outcome: 'refused', reason: 'network' });
      xhr.send(blob);
    };
    run();
  });
}

export function uploadPage(root, h, csrf) {
  const files = h('input', { type: 'file', id: 'upload-files', class: 'visually-hidden', multiple: true });
  const folder = h('input', { type: 'file', id: 'upload-folder', class: 'visually-hidden', multiple: true, webkitdirectory: true });
  const drop = h('div', { class: 'dropzone', id: 'dropzone' }, t('upload.drop'));
  const overall = h('progress', { id: 'upload-overall', max: 1, value: 0 });
  const summary = h('p', { id: 'upload-summary', class: 'muted' });
  const tbody = h('tbody');
  const table = h('table', { id: 'upload-results' }, h('thead', {}, h('tr', {}, h('th', {}, t('upload.file')), h('th', {}, t('upload.progress')), h('th', {}, t('upload.result')))), tbody);
  delete root.dataset.finished;
  root.replaceChildren(h('h1', {}, t('upload.title')), h('p', {}, t('upload.intro')),
    h('div', { class: 'card' }, drop, h('div', { class: 'actions' }, h('label', { class: 'button', for: 'upload-folder' }, t('upload.folder')), folder,
      h('label', { class: 'button secondary', for: 'upload-files' }, t('upload.files')), files)),
    overall, summary, table);

  // unlisted reads a folder's DICOMDIR (on the server) and names the files it lists that the folder lacks.
  async function unlisted(list) {
    const dd = list.find(({ path, file }) => /(^|\/)DICOMDIR$/i.test(path || file.name));
    if (!dd) return [];
    const base = (dd.path || '').replace(/DICOMDIR$/i, '');
    try {
      const r = await fetch('/api/dicomdir', { method: 'POST', headers: { 'X-CSRF-Token': csrf(), 'Content-Type': 'application/dicom' }, body: dd.file });
      if (!r.ok) return [];
      const have = new Set(list.map(({ path, file }) => (path || file.name).toUpperCase()));
      return (await r.json()).files.map((f) => base + f).filter((f) => !have.has(f.toUpperCase()));
    } catch (e) { return []; }
  }

  async function start(list) {
    delete root.dataset.finished;
    const refused = (await unlisted(list)).map((name) => ({ name, reason: 'unlisted' }));
    const items = [];
    for (const { file, path } of list) {
      if (/\.zip$/i.test(file.name)) items.push(...await zipItems(file, refused));
      else items.push(item(path || file.webkitRelativePath || file.name, file.size, file));
    }
    const rows = new Map();
    const total = items.reduce((s, it) => s + it.size, 0) || 1;
    let done = 0; const counts = { stored: 0, duplicate: 0, refused: 0 };
    const flying = new Map(); // batch → bytes sent so far
    const show = (name, res) => {
      const words = res.outcome === 'refused' ? t('upload.refused') + ': ' + t('reason.' + (res.reason || 'failed')) : t('upload.' + res.outcome);
      const row = rows.get(name) || h('tr', { class: res.outcome === 'refused' ? 'refused' : '' });
      row.className = res.outcome;
      row.replaceChildren(h('td', {}, name), h('td', {}, '100%'), h('td', {}, words,
        res.detail ? h('div', { class: 'muted' }, res.detail) : '', res.warnings && res.warnings.length ? h('div', { class: 'muted' }, res.warnings.join(' ')) : ''));
      if (!rows.has(name)) { rows.set(name, row); tbody.append(row); }
      counts[res.outcome] = (counts[res.outcome] || 0) + 1;
      summary.textContent = t('upload.summary', { stored: counts.stored, duplicate: counts.duplicate, refused: counts.refused, n: items.length + refused.length });
    };
    for (const r of refused) show(r.name, { outcome: 'refused', reason: r.reason });
    for (const it of items) {
      const bar = h('progress', { max: it.size || 1, value: 0 });
      const row = h('tr', {}, h('td', {}, it.name), h('td', {}, bar), h('td', { class: 'muted' }, t('upload.waiting')));
      rows.set(it.name, row);
      tbody.append(row);
      it.bar = bar;
    }
    const queue = items.slice();
    const small = 2 * 2 ** 20;
    const worker = async () => {
      while (queue.length) {
        // Up to fifty small files go together (fewer, larger requests keep a CD's import near the STOW-RS rate:
        // docs/benchmarks.md); a larger one goes alone, with its own progress.
        const batch = [queue.shift()];
        let bytes = batch[0].size;
        while (batch[0].size <= small && queue.length && batch.length < 50 && queue[0].size <= small && bytes + queue[0].size <= 24 * small) {
          bytes += queue[0].size;
          batch.push(queue.shift());
        }
        let results;
        // The overall bar counts what is done and what the requests in flight have sent so far.
        const progress = (n) => { flying.set(batch, n); overall.value = (done + [...flying.values()].reduce((a, b) => a + b, 0)) / total; };
        if (batch.length > 1) {
          results = await sendBatch(batch, csrf(), progress);
        } else {
          const it = batch[0];
          results = [await send(it, csrf(), (n) => { it.bar.value = n; progress(n); })];
        }
        flying.delete(batch);
        batch.forEach((it, k) => {
          done += it.size;
          show(it.name, results[k]);
        });
        overall.value = done / total;
      }
    };
    await Promise.all([worker(), worker(), worker(), worker(), worker(), worker()]); // a browser opens six connections to a host
    overall.value = 1;
    root.dataset.finished = 'true';
  }

  folder.addEventListener('change', () => start([...folder.files].map((f) => ({ file: f, path: f.webkitRelativePath }))));
  files.addEventListener('change', () => start([...files.files].map((f) => ({ file: f, path: f.name }))));
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    // The dropped items are valid only during the event: take their entries now, read them after.
    const taken = [...e.dataTransfer.items].map((it) => ({ entry: it.webkitGetAsEntry && it.webkitGetAsEntry(), file: it.getAsFile() }));
    const list = [];
    for (const { entry, file } of taken) {
      if (entry) await walk(entry, '', list);
      else if (file) list.push({ file, path: file.name });
    }
    start(list);
  });
}
