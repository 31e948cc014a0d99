// The page a share link opens (/link/{token}), for someone outside renkei, usually on a phone: the PIN, then the
// studies, then the images one at a time (buttons, a slider, swipes or arrow keys), each fitted to the screen. It
// talks only to /api/link/{token}/…; the view the PIN opens is an HttpOnly cookie this script never sees. Text is
// set with textContent only; the strings are the app's (i18n.js, which needs nothing of the app).
import { t, date, personName, getLang, setLang } from './i18n.js';

const token = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');
const base = `/api/link/${encodeURIComponent(token)}`;
let redraw = () => {}; // draws the current screen again (after a change of language)
let leave = null; // undoes what the current screen added to the document (the viewer's keys)

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c.nodeType ? c : String(c));
  return el;
}

function show(...nodes) {
  if (leave) { leave(); leave = null; }
  document.body.classList.remove('viewing');
  document.getElementById('app').replaceChildren(...nodes);
  window.scrollTo(0, 0);
}

function message(text, kind = 'error') {
  const m = document.getElementById('message');
  m.textContent = text || '';
  m.className = kind;
  m.hidden = !text;
}

// call asks the link's API; it answers the status and the JSON (a problem document says the link's state).
async function call(method, path, body) {
  try {
    const r = await fetch(base + path, { method, credentials: 'same-origin', headers: body ? { 'Content-Type': 'application/json', 'Accept-Language': getLang() } : { 'Accept-Language': getLang() },
      body: body ? JSON.stringify(body) : undefined });
    const data = await r.json().catch(() => ({}));
    return { status: r.status, ok: r.ok, data };
  } catch (e) {
    return { status: 0, ok: false, data: {} };
  }
}

// answer shows what a refusal means: the PIN again, or why the link cannot be used.
function answer(r) {
  const state = r.data.state;
  if (r.status === 0) return message(t('error.network'));
  if (state === 'pin') return pinPage(t('link.pin.again'));
  if (state === 'busy') return message(t('link.busy'));
  if (['unknown', 'expired', 'locked'].includes(state)) return refused(state);
  return message(r.data.detail || t('link.image.error'));
}

function refused(state) {
  redraw = () => refused(state);
  message('');
  show(h('div', { class: 'card refused', id: 'refused', 'data-state': state }, h('h1', {}, t('link.title')), h('p', {}, t('link.state.' + state))));
}

function pinPage(note = '') {
  redraw = () => pinPage(note);
  const pin = h('input', { id: 'pin', class: 'pin', type: 'text', inputmode: 'numeric', pattern: '[0-9]*', autocomplete: 'one-time-code',
    maxlength: 12, required: true, 'aria-describedby': 'pin-prompt' });
  const f = h('form', { class: 'card narrow', id: 'pin-form' }, h('h1', {}, t('link.title')),
    h('p', { id: 'pin-prompt' }, t('link.pin.prompt')),
    h('label', { for: 'pin' }, t('link.pin.label')), pin,
    h('button', { type: 'submit', id: 'unlock' }, t('link.pin.submit')),
    h('p', { class: 'muted' }, t('link.viewonly')));
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = pin.value.replace(/\s+/g, '');
    if (!/^\d{6,12}$/.test(value)) { message(t('link.pin.format')); return; }
    const button = f.querySelector('#unlock');
    button.disabled = true;
    message('');
    const r = await call('POST', '/unlock', { pin: value });
    button.disabled = false;
    if (r.ok) { studies(); return; }
    pin.value = '';
    if (r.status === 401) message(t('link.pin.wrong', { n: r.data.attemptsLeft ?? '' }));
    else if (r.status === 400) message(t('link.pin.format'));
    else answer(r);
    pin.focus();
  });
  show(f);
  message(note, 'info');
  pin.focus();
}

let listing = null; // the last answer of /studies

async function studies() {
  const r = await call('GET', '/studies');
  if (!r.ok) return answer(r);
  listing = r.data;
  message('');
  studyList();
}

function studyList() {
  redraw = studyList;
  const d = listing;
  const patient = [personName(d.patientName), d.patientBirthDate ? `${t('patient.born')} ${date(d.patientBirthDate)}` : ''].filter(Boolean).join(' ・ ');
  const from = getLang() === 'en' && d.institutionEn ? d.institutionEn : d.institution;
  show(h('h1', {}, t('link.from', { institution: from })),
    patient ? h('p', { id: 'link-patient' }, h('strong', {}, patient)) : '',
    h('p', { class: 'muted' }, t('link.until', { date: date(d.expiresAt, true) }), ' ・ ', t('link.viewonly')),
    d.studies.length === 0 ? h('p', { id: 'no-studies' }, t('link.none')) : h('ul', { class: 'link-studies', id: 'studies' }, d.studies.map((s) => h('li', { 'data-study': s.studyInstanceUID },
      h('h2', {}, date(s.studyDate), ' ', s.modalities.join(', ')),
      s.description ? h('div', {}, s.description) : '',
      h('div', { class: 'series-buttons' }, s.series.map((se, i) => h('button', { type: 'button', class: 'secondary series', onclick: () => viewer(s, i) },
        `${se.modality} ${t('link.series', { n: se.number ?? i + 1 })}`, se.description ? ` ${se.description}` : '',
        ' (', t('link.images', { n: se.instances.reduce((n, x) => n + x.frames, 0) }), ')')))))));
}

// viewer shows a series' images one by one; a frame of a multi-frame image counts as one image.
function viewer(study, index, at = 0) {
  const series = study.series[index];
  const frames = series.instances.flatMap((x) => Array.from({ length: x.frames }, (_, f) => ({ instance: x.sopInstanceUID, frame: f + 1 })));
  let i = Math.min(at, frames.length - 1);
  redraw = () => viewer(study, index, i);
  // Ask for what the screen can show, in steps so that the browser's cache is of use.
  const size = Math.min(2048, Math.ceil(Math.max(window.innerWidth, window.innerHeight) * (window.devicePixelRatio || 1) / 256) * 256);
  const src = (k) => `${base}/image?${new URLSearchParams({ study: study.studyInstanceUID, series: series.seriesInstanceUID,
    instance: frames[k].instance, frame: frames[k].frame, size })}`;
  const img = h('img', { id: 'image', alt: `${series.modality} ${series.description || ''}`.trim() });
  const pos = h('span', { class: 'pos', id: 'pos' });
  const slider = h('input', { type: 'range', id: 'slider', min: 1, max: frames.length, value: i + 1, 'aria-label': t('link.series', { n: series.number ?? index + 1 }) });
  const prev = h('button', { type: 'button', id: 'prev', class: 'secondary', onclick: () => go(i - 1) }, t('link.prev'));
  const next = h('button', { type: 'button', id: 'next', class: 'secondary', onclick: () => go(i + 1) }, t('link.next'));
  const preload = new Image();
  function go(k) {
    if (k < 0 || k >= frames.length) return;
    i = k;
    img.src = src(i);
    pos.textContent = `${i + 1} / ${frames.length}`;
    slider.value = i + 1;
    prev.disabled = i === 0;
    next.disabled = i === frames.length - 1;
    if (i + 1 < frames.length) preload.src = src(i + 1);
  }
  img.addEventListener('error', async () => {
    const r = await call('GET', '');
    if (!r.ok) answer(r);
    else if (r.data.state === 'pin') pinPage(t('link.pin.again'));
    else message(t('link.image.error'));
  });
  img.addEventListener('load', () => message(''));
  slider.addEventListener('input', () => go(+slider.value - 1));
  const stage = h('div', { class: 'link-stage' }, img);
  let startX = null;
  stage.addEventListener('touchstart', (e) => { startX = e.touches.length === 1 ? e.touches[0].clientX : null; }, { passive: true });
  stage.addEventListener('touchend', (e) => {
    if (startX === null) return;
    const dx = e.changedTouches[0].clientX - startX;
    if (Math.abs(dx) > 40) go(dx < 0 ? i + 1 : i - 1);
    startX = null;
  }, { passive: true });
  const where = h('span', { class: 'where' }, `${date(study.studyDate)} ${series.modality} ${series.description || study.description || ''}`);
  const box = h('section', { class: 'link-viewer', id: 'viewer', tabindex: '-1' },
    h('div', { class: 'link-bar' }, h('button', { type: 'button', id: 'back', class: 'secondary', onclick: studyList }, t('link.back')), where),
    stage,
    h('div', { class: 'link-nav' }, prev, h('div', { class: 'middle' }, pos, frames.length > 1 ? slider : ''), next));
  function keys(e) {
    if (e.target === slider) return; // the slider moves itself
    if (e.key === 'ArrowRight' || e.key === 'ArrowDown' || e.key === 'PageDown') { e.preventDefault(); go(i + 1); }
    if (e.key === 'ArrowLeft' || e.key === 'ArrowUp' || e.key === 'PageUp') { e.preventDefault(); go(i - 1); }
    if (e.key === 'Escape') studyList();
  }
  show(box);
  document.addEventListener('keydown', keys);
  leave = () => document.removeEventListener('keydown', keys);
  document.body.classList.add('viewing');
  go(i);
}

function langButton() {
  const b = document.getElementById('lang');
  b.textContent = t('lang.switch');
  document.title = `${t('link.title')} ・ renkei`;
}

async function start() {
  // A recipient has no account and no saved language: the phone's language decides, until they choose.
  if (!localStorage.getItem('renkei.lang')) setLang((navigator.language || 'ja').toLowerCase().startsWith('ja') ? 'ja' : 'en');
  else setLang(getLang());
  langButton();
  document.getElementById('lang').addEventListener('click', () => {
    setLang(getLang() === 'ja' ? 'en' : 'ja');
    langButton();
    redraw();
  });
  if (!/^[A-Za-z0-9_-]{20,}$/.test(token)) return refused('unknown');
  const r = await call('GET', '');
  if (!r.ok) return answer(r);
  if (r.data.state === 'open') return studies();
  return pinPage();
}

start();
