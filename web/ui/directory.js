// The regional directory: who can take this patient now. A search (functions, specialty, equipment, emergencies, free
// beds, distance), results as a list (and a map where the deployment provides tiles), an institution's page with its
// capacity history, and, for its own administrator or 地域連携室, the forms that keep it current.
import { t, term, getLang, date } from './i18n.js';

let options = null;
async function directoryOptions(api) {
  if (!options) options = await api('GET', '/api/directory/options');
  return options;
}

// ago says how long ago a time was, in words.
function ago(iso) {
  const m = Math.max(0, Math.round((Date.now() - new Date(iso)) / 60000));
  if (m < 60) return t('dir.ago.min', { n: m });
  if (m < 48 * 60) return t('dir.ago.h', { n: Math.round(m / 60) });
  return t('dir.ago.d', { n: Math.round(m / 1440) });
}

const name = (inst) => (getLang() === 'en' && inst.nameEn ? inst.nameEn : inst.name);

// capacityView shows an institution's capacity items, each with its age; a stale one is greyed and says so.
function capacityView(h, items) {
  if (!items.length) return h('p', { class: 'muted' }, t('dir.nocapacity'));
  const text = (it) => {
    if (it.key === 'emergency') {
      return [t('dir.emergency'), ': ', h('strong', { class: it.emergency === 'no' ? 'danger-text' : '' }, t('dir.em.' + it.emergency)),
        it.only && it.only.length ? ` (${it.only.join('、')})` : ''];
    }
    if (it.key.startsWith('beds:')) return [t('dir.beds', { kind: term(it.key.slice(5)) }), ': ', h('strong', {}, String(it.beds))];
    if (it.key === 'oncall') return [t('dir.oncall'), ': ', (it.onCall || []).join('、') || t('dir.none')];
    return [t('dir.note'), ': ', it.note || ''];
  };
  const rank = (k) => (k === 'emergency' ? 0 : k.startsWith('beds:') ? 1 : k === 'oncall' ? 2 : 3);
  const sorted = items.slice().sort((a, b) => rank(a.key) - rank(b.key) || a.key.localeCompare(b.key));
  return h('ul', { class: 'capacity' }, sorted.map((it) => h('li', { class: it.stale ? 'stale' : '', 'data-key': it.key, 'data-stale': it.stale ? 'true' : 'false' },
    text(it), ' ', h('span', { class: 'muted' }, `(${ago(it.updatedAt)})`), it.stale ? h('span', { class: 'badge stale-badge' }, t('dir.stale')) : '')));
}

// ---- search ----

export async function directoryPage(ui, query) {
  const { h, api } = ui;
  const opt = await directoryOptions(api);
  const q = new URLSearchParams(query);
  const checked = (k, v) => (q.get(k) || '').split(',').includes(v);
  const f = h('form', { class: 'card search', id: 'dir-search' },
    h('fieldset', { class: 'functions' }, h('legend', {}, t('dir.functions')),
      opt.careFunctions.map((c) => h('label', { class: 'check inline-check' }, h('input', { type: 'checkbox', name: 'function', value: c, checked: checked('function', c) }), ' ', term(c)))),
    h('div', {}, ...ui.field(t('dir.specialty'), ui.input('dir-specialty', { value: q.get('specialty') || '', placeholder: t('dir.specialty.hint') }))),
    h('div', {}, ...ui.field(t('dir.equipment'), h('select', { id: 'dir-equipment' }, h('option', { value: '' }, t('search.any')),
      opt.equipment.map((e) => h('option', { value: e, selected: q.get('equipment') === e }, term(e)))))),
    h('div', {}, ...ui.field(t('dir.beds.kind'), h('select', { id: 'dir-beds' }, h('option', { value: '' }, t('search.any')),
      opt.wardKinds.map((k) => h('option', { value: k, selected: q.get('beds') === k }, term(k)))))),
    h('div', {}, ...ui.field(t('dir.km'), ui.input('dir-km', { type: 'number', min: 0, max: 500, value: q.get('km') || '' }))),
    h('div', {}, ...ui.field(t('dir.sort'), h('select', { id: 'dir-sort' }, ['distance', 'fresh'].map((s) => h('option', { value: s, selected: q.get('sort') === s }, t('dir.sort.' + s)))))),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', id: 'dir-emergency', checked: q.get('emergency') === '1' }), ' ', t('dir.emergency.now')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'dir-submit' }, t('search.submit'))));
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    const fn = [...f.querySelectorAll('input[name="function"]:checked')].map((c) => c.value);
    if (fn.length) p.set('function', fn.join(','));
    for (const [k, id] of [['specialty', 'dir-specialty'], ['equipment', 'dir-equipment'], ['beds', 'dir-beds'], ['km', 'dir-km'], ['sort', 'dir-sort']]) {
      const v = f.querySelector('#' + id).value.trim();
      if (v) p.set(k, v);
    }
    if (f.querySelector('#dir-emergency').checked) p.set('emergency', '1');
    ui.route('#/directory?' + p.toString());
  });
  const list = await api('GET', '/api/directory?' + q.toString());
  const results = list.length === 0 ? h('p', { id: 'dir-none' }, t('dir.none.found')) : h('ol', { class: 'directory', id: 'dir-results' }, list.map((e) => h('li', { class: 'card', 'data-institution': e.institution.id },
    h('h2', {}, h('a', { href: `#/directory/${encodeURIComponent(e.institution.id)}` }, name(e.institution)),
      e.distanceKm !== undefined ? h('span', { class: 'muted distance' }, ` ${e.distanceKm.toFixed(1)} km`) : ''),
    h('p', {}, (e.institution.careFunctions || []).map((c) => h('span', { class: 'badge function' }, term(c))), ' ',
      [...e.profile.specialties, ...e.profile.departments].join('、'), e.profile.equipment.length ? h('div', { class: 'muted' }, e.profile.equipment.map(term).join('・')) : ''),
    capacityView(h, e.capacity),
    h('div', { class: 'actions' },
      h('a', { class: 'button', href: `#/referral/new?to=${encodeURIComponent(e.institution.id)}`, 'data-refer': e.institution.id }, t('dir.refer')),
      e.institution.kind === 'hospital' ? h('a', { class: 'button danger', href: `#/emergency/new?to=${encodeURIComponent(e.institution.id)}`, 'data-transfer': e.institution.id }, t('dir.transfer')) : '',
      e.profile.contactPhone ? h('a', { class: 'button secondary', href: `tel:${e.profile.contactPhone}` }, t('dir.call'), ' ', e.profile.contactPhone) : ''))));
  ui.show(h('h1', {}, t('dir.title')), h('p', { class: 'muted' }, t('dir.intro', { hours: opt.staleHours }), ' ',
    h('a', { href: '/api/directory/fhir', download: 'directory.fhir.json', id: 'dir-fhir' }, t('dir.fhir'))), f,
    opt.mapTiles && list.some((e) => e.profile.latitude || e.profile.longitude) ? tileMap(h, opt.mapTiles, list) : '', results);
}

// tileMap draws the results on the deployment's map tiles (Web Mercator, {z}/{x}/{y}): no map library, a fixed
// view that holds every located result, a numbered pin per institution matching the list.
function tileMap(h, template, list) {
  const pts = list.filter((e) => e.profile.latitude || e.profile.longitude);
  const W = 640; const H = 360; const T = 256;
  const world = (lat, lon, z) => {
    const s = T * 2 ** z; const r = Math.PI / 180;
    return [(lon + 180) / 360 * s, (1 - Math.log(Math.tan(lat * r) + 1 / Math.cos(lat * r)) / Math.PI) / 2 * s];
  };
  let z = 15;
  for (; z > 3; z--) {
    const xs = pts.map((e) => world(e.profile.latitude, e.profile.longitude, z));
    const w = Math.max(...xs.map((p) => p[0])) - Math.min(...xs.map((p) => p[0]));
    const hh = Math.max(...xs.map((p) => p[1])) - Math.min(...xs.map((p) => p[1]));
    if (w < W - 60 && hh < H - 60) break;
  }
  const xs = pts.map((e) => world(e.profile.latitude, e.profile.longitude, z));
  const cx = (Math.max(...xs.map((p) => p[0])) + Math.min(...xs.map((p) => p[0]))) / 2;
  const cy = (Math.max(...xs.map((p) => p[1])) + Math.min(...xs.map((p) => p[1]))) / 2;
  const x0 = cx - W / 2; const y0 = cy - H / 2;
  const box = h('div', { class: 'tile-map', id: 'dir-map', role: 'img', 'aria-label': t('dir.map') });
  for (let tx = Math.floor(x0 / T); tx * T < x0 + W; tx++) {
    for (let ty = Math.floor(y0 / T); ty * T < y0 + H; ty++) {
      const img = h('img', { alt: '', src: template.replace('{z}', z).replace('{x}', tx).replace('{y}', ty) });
      img.style.left = `${tx * T - x0}px`; img.style.top = `${ty * T - y0}px`;
      box.append(img);
    }
  }
  pts.forEach((e, i) => {
    const [px, py] = xs[i];
    const pin = h('a', { class: 'pin', href: `#/directory/${encodeURIComponent(e.institution.id)}`, title: name(e.institution) }, String(list.indexOf(e) + 1));
    pin.style.left = `${px - x0}px`; pin.style.top = `${py - y0}px`;
    box.append(pin);
  });
  return box;
}

// ---- one institution ----

// historyChart draws free beds by ward kind over the last days as a small SVG line chart.
function historyChart(h, hist) {
  const series = new Map();
  for (const it of hist) {
    if (!it.key.startsWith('beds:')) continue;
    if (!series.has(it.key)) series.set(it.key, []);
    series.get(it.key).push([new Date(it.updatedAt).getTime(), it.beds]);
  }
  if (!series.size) return h('p', { class: 'muted', id: 'history-none' }, t('dir.history.none'));
  const all = [...series.values()].flat();
  const t0 = Math.min(...all.map((p) => p[0])); const t1 = Math.max(...all.map((p) => p[0])) || t0 + 1;
  const max = Math.max(1, ...all.map((p) => p[1]));
  const W = 600; const H = 160; const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H + 20}`); svg.setAttribute('class', 'history-chart'); svg.id = 'history-chart';
  const colors = ['#0b5cad', '#b00020', '#1b6e2e', '#6a3fb5', '#b25e00', '#555'];
  [...series.entries()].forEach(([key, pts], i) => {
    const path = document.createElementNS(ns, 'polyline');
    path.setAttribute('fill', 'none'); path.setAttribute('stroke', colors[i % colors.length]); path.setAttribute('stroke-width', '2');
    path.setAttribute('points', pts.map(([x, y]) => `${((x - t0) / Math.max(1, t1 - t0) * (W - 20) + 10).toFixed(1)},${(H - y / max * (H - 10)).toFixed(1)}`).join(' '));
    path.dataset.key = key;
    for (const [x, y] of pts) { // each report as a dot: one report alone is still seen
      const c = document.createElementNS(ns, 'circle');
      c.setAttribute('cx', ((x - t0) / Math.max(1, t1 - t0) * (W - 20) + 10).toFixed(1)); c.setAttribute('cy', (H - y / max * (H - 10)).toFixed(1));
      c.setAttribute('r', '3'); c.setAttribute('fill', colors[i % colors.length]);
      svg.append(c);
    }
    const label = document.createElementNS(ns, 'text');
    label.setAttribute('x', 10 + i * 150); label.setAttribute('y', H + 16); label.setAttribute('fill', colors[i % colors.length]);
    label.textContent = `${term(key.slice(5))} (${t('dir.max')} ${Math.max(...pts.map((p) => p[1]))})`;
    svg.append(path, label);
  });
  return svg;
}

export async function institutionPage(ui, id) {
  const { h, api, busy } = ui;
  const [e, hist, opt] = await Promise.all([api('GET', `/api/directory/${encodeURIComponent(id)}`),
    api('GET', `/api/directory/${encodeURIComponent(id)}/history?days=30`), directoryOptions(api)]);
  const p = e.profile;
  const rows = [['dir.address', p.address], ['dir.hours', p.hours], ['dir.phone', p.phone],
    ['dir.contact', [p.contactName, p.contactPhone, p.contactFax && `FAX ${p.contactFax}`, p.contactEmail].filter(Boolean).join(' ・ ')],
    ['dir.departments', p.departments.join('、')], ['dir.specialties', p.specialties.join('、')], ['dir.equipment', p.equipment.map(term).join('・')],
    ['dir.accepts', p.accepts.map(term).join('・')], ['dir.code', e.institution.code]].filter(([, v]) => v);
  const parts = [h('h1', {}, name(e.institution), ' ', (e.institution.careFunctions || []).map((c) => h('span', { class: 'badge function' }, term(c)))),
    h('div', { class: 'actions' }, h('a', { class: 'button', href: `#/referral/new?to=${encodeURIComponent(id)}` }, t('dir.refer'))),
    h('section', { class: 'card' }, h('h2', {}, t('dir.capacity')), capacityView(h, e.capacity)),
    h('section', { class: 'card' }, h('h2', {}, t('dir.profile')), h('dl', { class: 'profile' }, rows.flatMap(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v)]))),
    h('section', { class: 'card' }, h('h2', {}, t('dir.history')), historyChart(h, hist))];
  if (e.editable) {
    // Capacity: the quick form the 地域連携室 uses several times a day.
    const em = e.capacity.find((c) => c.key === 'emergency') || {};
    const cap = h('form', { class: 'card', id: 'capacity-form' }, h('h2', {}, t('dir.capacity.update')),
      h('fieldset', {}, h('legend', {}, t('dir.emergency')), ['yes', 'partial', 'no'].map((v) => h('label', { class: 'check inline-check' },
        h('input', { type: 'radio', name: 'em', value: v, checked: em.emergency === v }), ' ', t('dir.em.' + v)))),
      ...ui.field(t('dir.only'), ui.input('cap-only', { value: (em.only || []).join('、') })),
      h('div', { class: 'grid2' }, opt.wardKinds.map((k) => {
        const cur = e.capacity.find((c) => c.key === 'beds:' + k);
        return h('div', {}, ...ui.field(t('dir.beds', { kind: term(k) }), ui.input('cap-beds-' + k, { type: 'number', min: 0, value: cur ? cur.beds : '', 'data-kind': k })));
      })),
      ...ui.field(t('dir.oncall'), ui.input('cap-oncall', { value: ((e.capacity.find((c) => c.key === 'oncall') || {}).onCall || []).join('、') })),
      ...ui.field(t('dir.note'), h('textarea', { id: 'cap-note' }, (e.capacity.find((c) => c.key === 'note') || {}).note || '')),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'cap-submit' }, t('dir.capacity.send'))));
    const words = (v) => v.split(/[、,，\s]+/).map((s) => s.trim()).filter(Boolean);
    cap.addEventListener('submit', (ev) => { ev.preventDefault(); busy(cap, async () => {
      const items = [];
      const sel = cap.querySelector('input[name="em"]:checked');
      if (sel) items.push({ key: 'emergency', emergency: sel.value, only: sel.value === 'partial' ? words(cap.querySelector('#cap-only').value) : [] });
      cap.querySelectorAll('input[data-kind]').forEach((i) => { if (i.value !== '') items.push({ key: 'beds:' + i.dataset.kind, beds: +i.value }); });
      const oc = cap.querySelector('#cap-oncall').value.trim();
      if (oc) items.push({ key: 'oncall', onCall: words(oc) });
      const note = cap.querySelector('#cap-note').value.trim();
      if (note) items.push({ key: 'note', note });
      await api('POST', `/api/directory/${encodeURIComponent(id)}/capacity`, items);
      ui.message(t('dir.capacity.done'), 'info');
      ui.render();
    }); });
    // Profile.
    const pf = h('form', { class: 'card', id: 'profile-form' }, h('h2', {}, t('dir.profile.edit')),
      h('div', { class: 'grid2' },
        ...[['address', 'dir.address'], ['hours', 'dir.hours'], ['phone', 'dir.phone'], ['contactName', 'dir.contact.name'], ['contactPhone', 'dir.contact.phone'],
          ['contactFax', 'dir.contact.fax'], ['contactEmail', 'dir.contact.email'], ['latitude', 'dir.lat'], ['longitude', 'dir.lon']]
          .map(([k, label]) => h('div', {}, ...ui.field(t(label), ui.input('pf-' + k, { value: p[k] || '' })))),
        ...[['departments', 'dir.departments'], ['specialties', 'dir.specialties']].map(([k, label]) => h('div', {}, ...ui.field(t(label), ui.input('pf-' + k, { value: p[k].join('、') }))))),
      h('fieldset', {}, h('legend', {}, t('dir.functions')), opt.careFunctions.map((q) => h('label', { class: 'check inline-check' },
        h('input', { type: 'checkbox', name: 'functions', value: q, checked: (e.institution.careFunctions || []).includes(q) }), ' ', term(q)))),
      h('fieldset', {}, h('legend', {}, t('dir.equipment')), opt.equipment.map((q) => h('label', { class: 'check inline-check' },
        h('input', { type: 'checkbox', name: 'equipment', value: q, checked: p.equipment.includes(q) }), ' ', term(q)))),
      h('fieldset', {}, h('legend', {}, t('dir.accepts')), opt.accepts.map((q) => h('label', { class: 'check inline-check' },
        h('input', { type: 'checkbox', name: 'accepts', value: q, checked: p.accepts.includes(q) }), ' ', term(q)))),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'pf-submit' }, t('dir.profile.save'))));
    pf.addEventListener('submit', (ev) => { ev.preventDefault(); busy(pf, async () => {
      const v = (k) => pf.querySelector('#pf-' + k).value.trim();
      await api('PUT', `/api/directory/${encodeURIComponent(id)}/profile`, { address: v('address'), hours: v('hours'), phone: v('phone'),
        contactName: v('contactName'), contactPhone: v('contactPhone'), contactFax: v('contactFax'), contactEmail: v('contactEmail'),
        latitude: +v('latitude') || 0, longitude: +v('longitude') || 0, departments: words(v('departments')), specialties: words(v('specialties')),
        equipment: [...pf.querySelectorAll('input[name="equipment"]:checked')].map((c) => c.value),
        careFunctions: [...pf.querySelectorAll('input[name="functions"]:checked')].map((c) => c.value),
        accepts: [...pf.querySelectorAll('input[name="accepts"]:checked')].map((c) => c.value) });
      ui.message(t('dir.profile.done'), 'info');
      ui.render();
    }); });
    parts.splice(2, 0, cap);
    parts.push(pf);
  }
  ui.show(...parts);
}

// ---- a referral or a transfer: first choose the patient ----

// A clerk knows the patient's name (山田太郎, やまだ, ﾔﾏﾀﾞ, Yamada) or part of the ID more often than the exact ID: the
// picker searches as they type, by name in any script or width (the server folds it as it folds names for study
// searches: any component's prefix) and by ID prefix in any case, among the patients of the user's own institution
// (a referral is always about one of them), with images or not (a referral is often a letter alone), and lists
// them to choose with the mouse or the arrow keys and Enter.
const pickDelay = 250; // ms after the last key: a search per pause, not per key
const pickShown = 8;

// splitName returns the groups of a DICOM person name (alphabetic=ideographic=phonetic) as words.
function splitName(pn) {
  const [alpha = '', ideo = '', phon = ''] = (pn || '').split('=').map((g) => g.replace(/\^+/g, ' ').trim());
  return { alpha, ideo, phon };
}

// findPatients returns the own institution's patients whose name or ID starts with what was typed, an exact ID
// first, then ID prefixes, then names (the server's order). Each patient returned is recorded as read (audit):
// enough for a handful, not a whole list.
async function findPatients(ui, typed) {
  const q = typed.normalize('NFKC').trim();
  if (!q) return { list: [], more: false };
  const own = encodeURIComponent(ui.me().user.institution);
  const list = await ui.api('GET', `/api/patients?institution=${own}&limit=${pickShown + 1}&q=${encodeURIComponent(q)}`);
  return { list: list.slice(0, pickShown), more: list.length > pickShown };
}

// A patient renkei does not hold at all (a letter, no image, no record) is typed in: ID, name, kana, birth date,
// sex. The letter or transfer form that follows sends them with the new draft, which registers them (nothing is
// written before). The typed patient stays in this page's memory only, not in the address or the browser's storage.
let typed = null;

// typedPatient returns the patient typed in the picker for this ID, or null (after a reload, or for another ID).
export function typedPatient(id) {
  return typed && typed.patientId === id ? typed : null;
}

// ownPatient returns the own institution's patient whose ID is id, in any case (as the picker matches IDs), or null.
export async function ownPatient(ui, id) {
  const key = (id || '').normalize('NFKC').replace(/\s+/g, '').toUpperCase();
  if (!key) return null;
  const list = await ui.api('GET', `/api/patients?institution=${encodeURIComponent(ui.me().user.institution)}&limit=2&q=${encodeURIComponent(key)}`);
  return list.find((s) => s.patientId.toUpperCase() === key) || null;
}

export async function patientPicker(ui, to, kind = 'referral') {
  const { h, api, busy } = ui;
  const next = (issuer, id) => ui.route(`#/${kind}/new/${encodeURIComponent(issuer)}/${encodeURIComponent(id)}?to=${encodeURIComponent(to)}`);
  const box = ui.input('pick-id', { required: true, autofocus: true, autocomplete: 'off', role: 'combobox', 'aria-autocomplete': 'list',
    'aria-expanded': 'false', 'aria-controls': 'pick-list', placeholder: t('pick.placeholder') });
  const list = h('ul', { id: 'pick-list', class: 'pick-list', role: 'listbox', 'aria-label': t('pick.candidates') });
  const status = h('p', { id: 'pick-status', class: 'muted', role: 'status', 'aria-live': 'polite' });
  // From a directory result the next page is addressed to that institution; from a board it is not yet.
  const f = h('form', { class: 'card narrow', id: 'pick-patient' }, h('h1', {}, t(kind === 'emergency' ? 'em.pick.title' : 'dir.pick.title')),
    h('p', {}, t(to ? 'dir.pick.hint' : 'pick.hint')),
    ...ui.field(t('pick.label'), box), list, status,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('dir.pick.next'))));
  let found = [];
  let active = -1;
  let seq = 0;
  let timer = 0;
  const mark = (i) => {
    active = i;
    [...list.children].forEach((li, j) => li.setAttribute('aria-selected', j === i ? 'true' : 'false'));
    if (i >= 0) { box.setAttribute('aria-activedescendant', list.children[i].id); list.children[i].scrollIntoView({ block: 'nearest' }); } else box.removeAttribute('aria-activedescendant');
  };
  const draw = (res, typed) => {
    found = res.list;
    active = -1;
    box.removeAttribute('aria-activedescendant');
    list.replaceChildren(...found.map((s, i) => {
      const n = splitName(s.name);
      const main = n.ideo || n.alpha || n.phon || s.patientId;
      const sex = s.sex ? t('sex.' + s.sex) : '';
      return h('li', { id: `pick-${i}`, role: 'option', 'aria-selected': 'false', 'data-patient-id': s.patientId, 'data-issuer': s.issuer,
        onmousedown: (ev) => ev.preventDefault(), onclick: () => next(s.issuer, s.patientId), onmousemove: () => { if (active !== i) mark(i); } },
      h('strong', { class: 'pick-name' }, main), n.phon && n.phon !== main ? h('span', { class: 'pick-kana' }, ` (${n.phon})`) : '',
      n.ideo && n.alpha ? h('span', { class: 'muted' }, ` ${n.alpha}`) : '',
      h('div', { class: 'muted' }, [`ID ${s.patientId}`, s.birthDate ? date(s.birthDate) : '', sex,
        s.lastStudyDate ? t('pick.last', { date: date(s.lastStudyDate) }) : t('pick.noimages')].filter(Boolean).join(' ・ ')));
    }));
    box.setAttribute('aria-expanded', found.length ? 'true' : 'false');
    status.textContent = !typed ? '' : !found.length ? t('pick.none') : res.more ? t('pick.more', { n: found.length }) : t('pick.count', { n: found.length });
  };
  const search = async () => {
    const typed = box.value.trim();
    const mine = ++seq;
    if (!typed) { draw({ list: [], more: false }, ''); return; }
    try {
      const res = await findPatients(ui, typed);
      if (mine === seq) draw(res, typed); // an older answer arriving late does not replace a newer one
    } catch (e) {
      if (mine === seq) status.textContent = e.message;
    }
  };
  box.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(search, pickDelay); });
  box.addEventListener('keydown', (ev) => {
    if (ev.isComposing) return; // the IME's own Enter and arrows (choosing kanji) are not ours
    if (ev.key === 'ArrowDown' && found.length) { ev.preventDefault(); mark((active + 1) % found.length); }
    if (ev.key === 'ArrowUp' && found.length) { ev.preventDefault(); mark(active <= 0 ? found.length - 1 : active - 1); }
    if (ev.key === 'Escape') { mark(-1); }
    if (ev.key === 'Enter' && active >= 0) { ev.preventDefault(); next(found[active].issuer, found[active].patientId); }
  });
  // Next without choosing from the list: the one candidate, or the exact ID, as before the list existed.
  f.addEventListener('submit', (ev) => { ev.preventDefault(); busy(f, async () => {
    const id = box.value.trim();
    if (active >= 0) return next(found[active].issuer, found[active].patientId);
    const key = id.normalize('NFKC').replace(/\s+/g, '').toUpperCase();
    const same = found.filter((s) => s.patientId.toUpperCase() === key);
    if (same.length === 1) return next(same[0].issuer, same[0].patientId);
    const exact = await ownPatient(ui, id);
    if (exact) return next(exact.issuer, exact.patientId);
    if (found.length === 1) return next(found[0].issuer, found[0].patientId);
    throw new Error(t(found.length ? 'pick.choose' : 'dir.pick.none'));
  }); });
  // Not found at all: the patient is typed in. What was searched for fills the ID (letters and digits) or the name.
  const looksLikeID = (v) => /^[\x21-\x7e]+$/.test(v.normalize('NFKC'));
  const nf = h('form', { id: 'pick-new-form' },
    ...ui.field(t('pick.new.id'), ui.input('pick-new-id', { required: true, maxlength: 64, autocomplete: 'off' })),
    ...ui.field(t('pick.new.name'), ui.input('pick-new-name', { required: true, autocomplete: 'off', placeholder: t('pick.new.name.example') })),
    ...ui.field(t('pick.new.kana'), ui.input('pick-new-kana', { autocomplete: 'off', placeholder: t('pick.new.kana.example') })),
    ...ui.field(t('pick.new.birth'), ui.input('pick-new-birth', { type: 'date', required: true })),
    ...ui.field(t('pick.new.sex'), h('select', { id: 'pick-new-sex' }, h('option', { value: '' }, t('pick.new.sex.unknown')),
      ['M', 'F', 'O'].map((x) => h('option', { value: x }, t('sex.' + x))))),
    h('p', { class: 'muted' }, t('pick.new.note')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'pick-new-next' }, t('pick.new.next'))));
  const more = h('details', { class: 'card narrow', id: 'pick-new', ontoggle: () => {
    if (!more.open) return;
    const v = box.value.trim();
    const id = nf.querySelector('#pick-new-id'), name = nf.querySelector('#pick-new-name');
    if (v && !id.value && !name.value) (looksLikeID(v) ? id : name).value = v;
    (id.value ? name : id).focus();
  } }, h('summary', { id: 'pick-new-open' }, t('pick.new.open')), nf);
  nf.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = (sel) => nf.querySelector(sel).value.trim();
    typed = { patientId: v('#pick-new-id').normalize('NFKC'), name: v('#pick-new-name'), kana: v('#pick-new-kana'), birthDate: v('#pick-new-birth'),
      sex: v('#pick-new-sex') };
    next('-', typed.patientId); // '-': no issuer yet; the institution's is given when the draft registers the patient
  });
  f.append(h('p', { id: 'pick-new-hint', class: 'muted' }, t('pick.new.hint')));
  ui.show(f, more);
  box.focus();
}
