// The renkei web app: one page, hash routes, the JSON API and DICOMweb. Text is set with textContent only (no HTML
// from data), so a patient name cannot inject markup.
import { t, date, personName, getLang, setLang } from './i18n.js';
import { viewer, compare } from './viewer.js';
import { uploadPage } from './upload.js';
import { referralsPage, referralForm, referralPage, recordPanel, correctionForm, referralState } from './referrals.js';
import { directoryPage, institutionPage, patientPicker } from './directory.js';
import { emergencyPage, transferForm } from './emergency.js';
import { consultsPage, consultPage, startConsult } from './consult.js';
import { linkDialog, linksPage } from './links.js';
import { alertsPage } from './alerts.js';
import { securityPage } from './security.js';
import { consentCard } from './consent.js';
import { accountCards } from './accounts.js';
import { trashPage, deleteButton, mayDelete } from './trash.js';
import { auditDetailCell, auditTimeCell } from './audit.js';

let me = null; // GET /api/me
let csrf = '';
let events = null; // the live-update stream

// liveUpdates listens for studies that change for this user; the study list refreshes itself and marks them.
function liveUpdates() {
  if (events || !me || me.next !== 'done' || !window.EventSource) return;
  events = new EventSource('/api/events');
  let timer = null;
  const fresh = new Set();
  events.addEventListener('study', (e) => {
    fresh.add(e.data);
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!location.hash.startsWith('#/studies') || document.activeElement && document.activeElement.tagName === 'INPUT') return;
      await render();
      for (const uid of fresh) {
        const row = document.querySelector(`tr[data-study="${CSS.escape(uid)}"]`);
        if (row) row.classList.add('new');
      }
      fresh.clear();
    }, 400);
  });
  // A share link of the institution locked after wrong PINs: say so wherever the user is.
  events.addEventListener('link', (e) => {
    message(t('links.locked.alert', { id: e.data }));
    if (location.hash.startsWith('#/links')) render();
  });
  // A referral moved on (the other side acted): the board or the referral's page shows it at once.
  let rtimer = null;
  events.addEventListener('referral', (e) => {
    clearTimeout(rtimer);
    rtimer = setTimeout(async () => {
      const hash = location.hash;
      if (document.activeElement && ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName)) return;
      if (hash === `#/referral/${e.data}`) {
        // The page of this referral: redrawn only if the referral changed from what it shows (often the event is
        // this user's own step, already on screen, and a redraw would swallow the click they are making).
        const shown = document.querySelector('[data-referral-state]');
        const now = await api('GET', `/api/referrals/${e.data}`).catch(() => null);
        if (shown && now && shown.dataset.referralState === referralState(now)) return;
        if (location.hash === hash) render();
      } else if (hash.startsWith('#/referrals') || hash.startsWith('#/emergency')) render();
    }, 300);
  });
}

// h makes an element: h('button', {class: 'x', onclick: f}, 'text', child…).
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

const app = () => document.getElementById('app');
// show replaces the page; a part a page leaves out (null, as the closed first tour) is skipped, not written as "null".
function show(...nodes) { app().replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false)); window.scrollTo(0, 0); }

// showForm shows a form with the cursor in its [autofocus] field: the attribute works once per loaded document, so
// a form shown later (the code after the password, the login page after a logout) would otherwise get no cursor.
function showForm(f) {
  show(f);
  const first = f.querySelector('[autofocus]');
  if (first) first.focus();
}

function message(text, kind = 'error') {
  const m = document.getElementById('message');
  m.textContent = text;
  m.className = kind;
  m.hidden = !text;
}

// APIError is a refusal from the server: its message (detail) is in the language the request asked for, and code,
// when the server gives one ("consent-required", "account-locked", "password-short"…), recognises it whatever the wording.
class APIError extends Error { constructor(status, detail, code) { super(detail); this.status = status; this.code = code || ''; } }

async function api(method, path, body, raw) {
  // The server words its refusals in the language asked for: the one on the screen, even before any login.
  const headers = { 'Accept-Language': getLang() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : (raw ? body : JSON.stringify(body)) });
  } catch (e) {
    throw new APIError(0, t('error.network'));
  }
  const text = await r.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch (e) { data = {}; }
  if (!r.ok) {
    // A session that ends while in use (timeout, logout elsewhere) goes back to the login page.
    if (r.status === 401 && me && !path.startsWith('/api/login')) { me = null; route('#/login'); }
    throw new APIError(r.status, data.detail || r.statusText, data.code);
  }
  return data;
}

// busy disables a form's buttons while fn runs and shows its error, if any, in words the user can act on.
async function busy(form, fn) {
  const buttons = form.querySelectorAll('button');
  buttons.forEach((b) => { b.disabled = true; });
  message('');
  try { await fn(); } catch (e) { message(e.message); } finally { buttons.forEach((b) => { b.disabled = false; }); }
}

function field(label, input) { return [h('label', { for: input.id }, label), input]; }
function input(id, attrs = {}) { return h('input', { id, name: id, ...attrs }); }

// ---- header ----

// watchMenu keeps --nav-extra at the height the menu takes beyond one line (it wraps on a narrower screen), which the
// viewer, sized to the window, gives up so that the images stay on the screen.
let menuWatch = null;
function watchMenu(nav) {
  if (menuWatch || !window.ResizeObserver) return;
  menuWatch = new ResizeObserver(() => {
    const first = nav.firstElementChild;
    const extra = first ? Math.max(0, Math.round(nav.getBoundingClientRect().height - first.getBoundingClientRect().height)) : 0;
    document.documentElement.style.setProperty('--nav-extra', extra + 'px');
  });
  menuWatch.observe(nav);
}

function header() {
  document.title = t('app.title');
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  watchMenu(nav);
  nav.replaceChildren();
  who.replaceChildren();
  const langButton = h('button', { id: 'lang', class: 'secondary', onclick: async () => {
    setLang(getLang() === 'ja' ? 'en' : 'ja');
    if (me) { try { await api('POST', '/api/me/lang', { lang: getLang() }); } catch (e) { /* remembered locally anyway */ } }
    render();
  } }, t('lang.switch'));
  if (me && me.next === 'done') {
    const links = me.user.role === 'patient'
      ? [['#/my/studies', 'nav.my.studies'], ['#/my/log', 'nav.my.log']]
      : [['#/studies', 'nav.studies'], ['#/emergency', 'nav.emergency'], ['#/referrals', 'nav.referrals'], ['#/directory', 'nav.directory'], ['#/consults', 'nav.consults'], ['#/upload', 'nav.upload'], ['#/shares', 'nav.shares'], ['#/links', 'nav.links']];
    if (me.user.role === 'physician') links.push(['#/break-glass', 'nav.breakglass', 'danger']);
    if (mayDelete(me)) links.push(['#/trash', 'nav.trash']);
    if (me.user.role === 'institution-admin' || me.user.role === 'region-admin') links.push(['#/admin', 'nav.admin'], ['#/alerts', 'nav.alerts']);
    links.push(['#/help', 'nav.help']);
    for (const [href, key, cls] of links) {
      nav.append(h('a', { href, class: [cls, location.hash.startsWith(href) ? 'active' : ''].join(' ').trim() }, t(key)));
    }
    who.append(h('a', { id: 'user', href: '#/account', title: t('account.title') }, `${me.user.name || me.user.login}・${me.user.institutionName}`));
    who.append(langButton, h('button', { id: 'logout', onclick: async () => {
      try { await api('POST', '/api/logout', {}); } finally {
        me = null; csrf = '';
        if (events) { events.close(); events = null; }
        route('#/login');
      }
    } }, t('logout')));
  } else {
    who.append(langButton);
  }
}

// ---- login ----

// loginError says why a login step failed in the app's own words (recognised by status and code, never by the
// server's wording), and puts the cursor back in the field to type again, its content selected.
function loginError(e, input) {
  input.focus();
  input.select();
  const wrong = { 'login-password': 'login.wrong', 'totp-code': 'login.code.wrong', 'recovery-code': 'login.recovery.wrong' };
  if (e.status === 401) return new Error(t(wrong[input.id]));
  if (e.status === 429) return new Error(t('login.toomany'));
  const locked = e.code === 'account-locked' && /(\d{1,2}:\d{2})/.exec(e.message);
  return locked ? new Error(t('login.locked', { time: locked[1] })) : e;
}

function loginPage() {
  const f = h('form', { class: 'card narrow', id: 'login' },
    h('h1', {}, t('login.title')),
    field(t('login.name'), input('login-name', { autocomplete: 'username', required: true, autofocus: true })),
    field(t('login.password'), input('login-password', { type: 'password', autocomplete: 'current-password', required: true })),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('login.submit'))));
  f.addEventListener('submit', (ev) => { ev.preventDefault(); busy(f, async () => {
    const pw = f.querySelector('#login-password');
    const st = await api('POST', '/api/login', { login: f.querySelector('#login-name').value, password: pw.value }).catch((e) => { throw loginError(e, pw); });
    csrf = st.csrfToken;
    await next(st);
  }); });
  showForm(f);
}

async function next(st) {
  if (st.user && st.user.lang && !localStorage.getItem('renkei.lang')) setLang(st.user.lang);
  switch (st.next) {
    case 'second-factor': return secondFactorPage(st.factors || []);
    case 'enrol-second-factor': return enrolPage();
    case 'change-password': return passwordPage();
    default:
      me = await api('GET', '/api/me');
      csrf = me.csrfToken;
      if (me.user.lang) setLang(me.user.lang);
      // Back to the page that was asked for before the login (a bookmark, an EMR's IHE IID link), if any.
      const after = sessionStorage.getItem('renkei.after');
      sessionStorage.removeItem('renkei.after');
      route(after || (me.user.role === 'patient' ? '#/my/studies' : '#/studies'));
  }
}

function secondFactorPage(factors) {
  const f = h('form', { class: 'card narrow', id: 'second' }, h('h1', {}, t('login.second')));
  if (factors.includes('totp')) {
    f.append(...field(t('login.totp'), input('totp-code', { inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6, autofocus: true })),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('login.totp.submit'))));
    f.addEventListener('submit', (ev) => { ev.preventDefault(); busy(f, async () => {
      const code = f.querySelector('#totp-code');
      const st = await api('POST', '/api/login/second-factor', { factor: 'totp', code: code.value.trim() }).catch((e) => { throw loginError(e, code); });
      csrf = st.csrfToken;
      await next(st);
    }); });
  }
  if (factors.includes('webauthn')) {
    f.append(h('p', { class: 'muted' }, t('login.key.hint')), h('div', { class: 'actions' }, h('button', { type: 'button', id: 'use-key', onclick: () => busy(f, async () => {
      const opts = await api('POST', '/api/login/webauthn/start', {});
      const cred = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey) });
      const st = await api('POST', '/api/login/webauthn/finish', JSON.stringify(cred.toJSON()), true);
      csrf = st.csrfToken;
      await next(st);
    }) }, t('login.key'))));
  }
  const rc = input('recovery-code', { autocomplete: 'off' });
  f.append(h('details', {}, h('summary', {}, t('login.recovery')), ...field(t('login.recovery.code'), rc),
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => busy(f, async () => {
      const st = await api('POST', '/api/login/second-factor', { factor: 'recovery', code: rc.value.trim() }).catch((e) => { throw loginError(e, rc); });
      csrf = st.csrfToken;
      await next(st);
    }) }, t('login.totp.submit')))));
  showForm(f);
}

function recoveryCodes(codes, then) {
  show(h('div', { class: 'card narrow', id: 'codes' }, h('h1', {}, t('enrol.codes')), h('p', {}, t('enrol.codes.hint')),
    h('ul', { class: 'codes' }, codes.map((c) => h('li', {}, c))),
    h('div', { class: 'actions' }, h('button', { id: 'codes-done', onclick: then }, t('enrol.continue')))));
}

function enrolPage() {
  const box = h('div', { class: 'card narrow', id: 'enrol' }, h('h1', {}, t('enrol.title')), h('p', {}, t('enrol.intro')));
  const appButton = h('button', { id: 'enrol-app', onclick: () => busy(box, async () => {
    const e = await api('POST', '/api/login/totp/start', {});
    const f = h('form', { id: 'enrol-totp' }, h('p', {}, t('enrol.app.scan')),
      e.qr ? h('img', { class: 'qr', src: e.qr, alt: 'QR' }) : null,
      h('p', { class: 'muted' }, t('enrol.app.key'), ' ', h('code', { id: 'totp-secret' }, e.secret)),
      ...field(t('login.totp'), input('enrol-code', { inputmode: 'numeric', maxlength: 6, autofocus: true })),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('login.totp.submit'))));
    f.addEventListener('submit', (ev) => { ev.preventDefault(); busy(f, async () => {
      const r = await api('POST', '/api/login/totp/confirm', { secret: e.secret, code: f.querySelector('#enrol-code').value.trim() });
      csrf = r.login.csrfToken;
      recoveryCodes(r.recoveryCodes || [], () => next(r.login));
    }); });
    box.replaceChildren(h('h1', {}, t('enrol.app')), f);
    f.querySelector('#enrol-code').focus();
  }) }, t('enrol.app'));
  const keyName = input('key-name', { value: '' });
  const keyButton = h('button', { id: 'enrol-key', class: 'secondary', onclick: () => busy(box, async () => {
    const opts = await api('POST', '/api/login/webauthn/register/start', {});
    const cred = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(opts.publicKey) });
    const r = await api('POST', '/api/login/webauthn/register/finish?name=' + encodeURIComponent(keyName.value), JSON.stringify(cred.toJSON()), true);
    csrf = r.login.csrfToken;
    recoveryCodes(r.recoveryCodes || [], () => next(r.login));
  }) }, t('enrol.key'));
  box.append(h('div', { class: 'actions' }, appButton), h('h2', {}, t('enrol.key')), ...field(t('enrol.key.name'), keyName), h('div', { class: 'actions' }, keyButton));
  show(box);
}

// accountPage lists the user's security keys, to remove a lost one or add another.
async function accountPage() {
  const keys = await api('GET', '/api/me/keys');
  const rows = keys.map((k) => h('tr', { 'data-key': k.name },
    h('td', {}, k.name), h('td', {}, date(k.createdAt)), h('td', {}, k.lastUsed ? date(k.lastUsed) : '—'),
    h('td', {}, h('button', { class: 'secondary remove-key', onclick: async () => {
      if (!confirm(t('account.remove.confirm', { name: k.name }))) return;
      try {
        await api('DELETE', '/api/me/keys/' + encodeURIComponent(k.id));
        await accountPage();
        message(t('account.removed', { name: k.name }));
      } catch (e) { message(e.message); }
    } }, t('account.remove')))));
  const keyName = input('account-key-name', { value: '' });
  const add = h('button', { id: 'account-add-key', onclick: async () => {
    try {
      const opts = await api('POST', '/api/login/webauthn/register/start', {});
      const cred = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(opts.publicKey) });
      const r = await api('POST', '/api/login/webauthn/register/finish?name=' + encodeURIComponent(keyName.value), JSON.stringify(cred.toJSON()), true);
      if (r.login && r.login.csrfToken) csrf = r.login.csrfToken;
      await accountPage();
      message(t('account.added'));
    } catch (e) { message(e.message); }
  } }, t('account.add'));
  show(h('section', { class: 'card', id: 'account' }, h('h1', {}, t('account.title')), h('p', {}, t('account.intro')),
    keys.length ? h('table', { id: 'keys' }, h('thead', {}, h('tr', {}, h('th', {}, t('account.name')), h('th', {}, t('account.registered')),
      h('th', {}, t('account.lastused')), h('th', {}))), h('tbody', {}, ...rows)) : h('p', { class: 'muted' }, t('account.none')),
    h('h2', {}, t('account.add')), ...field(t('enrol.key.name'), keyName), h('div', { class: 'actions' }, add)));
}

// passwordProblem words the server's refusal of a new password in the app's own words, recognised by its code (from
// identity.CheckPolicy and ChangePassword), and puts the cursor in the field to change.
function passwordProblem(e, f) {
  const field = f.querySelector(e.status === 401 ? '#pw-current' : '#pw-new');
  field.focus();
  field.select();
  if (e.status === 401) return new Error(t('password.current.wrong'));
  const rules = { 'password-short': 'password.short', 'password-long': 'password.long', 'password-common': 'password.common',
    'password-repeats': 'password.repeats', 'password-personal': 'password.personal', 'password-same': 'password.same' };
  if (rules[e.code]) return new Error(t(rules[e.code], { n: (/(\d+)/.exec(e.message) || [])[1] }));
  return e;
}

function passwordPage() {
  const f = h('form', { class: 'card narrow', id: 'password' }, h('h1', {}, t('password.title')), h('p', {}, t('password.hint')),
    field(t('password.current'), input('pw-current', { type: 'password', autocomplete: 'current-password', required: true, autofocus: true })),
    field(t('password.new'), input('pw-new', { type: 'password', autocomplete: 'new-password', required: true, minlength: 10 })),
    field(t('password.again'), input('pw-again', { type: 'password', autocomplete: 'new-password', required: true })),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('password.submit'))));
  f.addEventListener('submit', (ev) => { ev.preventDefault(); busy(f, async () => {
    const nw = f.querySelector('#pw-new').value;
    if (nw !== f.querySelector('#pw-again').value) throw new Error(t('password.mismatch'));
    const st = await api('POST', '/api/password', { current: f.querySelector('#pw-current').value, new: nw })
      .catch((e) => { throw passwordProblem(e, f); });
    await next(st);
  }); });
  showForm(f);
}

// ---- studies ----

let institutions = null;
async function institutionList() {
  if (!institutions) institutions = await api('GET', '/api/institutions');
  return institutions;
}

// instLabel names an institution in the page's language from the list institutionList() loaded (a study row's own
// institutionName is the Japanese one, and some lists carry only the ID).
function instLabel(id, fallback) {
  const i = (institutions || []).find((x) => x.id === id);
  return i ? (getLang() === 'en' && i.nameEn ? i.nameEn : i.name) : (fallback || id || '');
}

const modalities = ['CT', 'MR', 'CR', 'DX', 'US', 'XA', 'NM', 'PT', 'MG', 'OT'];

function studyRow(s) {
  const cls = s.purpose === 'break-glass' ? 'breakglass' : '';
  const sex = s.patientSex ? t('sex.' + s.patientSex) : '';
  let access;
  if (me.user.role === 'patient') access = ''; // a patient's own studies: no "own institution", no grant to show
  else if (s.own) access = h('span', { class: 'badge own' }, t('badge.own'));
  else if (s.purpose === 'break-glass') access = h('span', { class: 'badge breakglass' }, t('badge.breakglass'));
  else access = [h('span', { class: 'badge' }, t('badge.shared')), ' ',
    h('span', { class: 'muted' }, s.sharedBy ? t('shared.by', { by: s.sharedBy, purpose: t('purpose.' + s.purpose) }) : '',
      s.sharedUntil ? ' ' + t('shared.until', { date: date(s.sharedUntil) }) : ''),
    s.reason ? h('div', { class: 'muted share-reason' }, s.reason) : ''];
  const actions = [h('a', { class: 'button view', href: `#/viewer/${encodeURIComponent(s.studyInstanceUID)}` }, t('study.view'))];
  // The staff's page of the patient (a patient reads their record in "my studies": that page would refuse them).
  if (me.user.role !== 'patient') {
    actions.push(' ', h('a', { href: `#/patient/${encodeURIComponent(s.institution)}/${encodeURIComponent(s.issuer)}/${encodeURIComponent(s.patientId)}` }, t('study.patient')));
  }
  if (s.own && me.user.role !== 'patient') {
    actions.push(' ', h('button', { class: 'secondary', onclick: () => shareDialog(s) }, t('study.share')),
      ' ', h('button', { class: 'secondary', 'data-link': s.studyInstanceUID, onclick: () => linkDialog(ui, s) }, t('link.share')));
    if (mayDelete(me)) actions.push(' ', deleteButton(ui, s));
  }
  // The cells' classes place them on a phone's card (app.css); a wider screen shows them as the table's columns.
  return h('tr', { class: cls, 'data-study': s.studyInstanceUID },
    h('td', { class: 'study-date' }, h('a', { href: `#/viewer/${encodeURIComponent(s.studyInstanceUID)}`, 'aria-label': t('study.view') },
      h('img', { class: 'thumb', loading: 'lazy', alt: '', src: `/dicomweb/studies/${encodeURIComponent(s.studyInstanceUID)}/thumbnail?viewport=96,96` })),
      h('div', {}, date(s.studyDate))),
    h('td', { class: 'study-patient' }, h('strong', {}, personName(s.patientName)), h('div', { class: 'muted' }, `ID ${s.patientId}`, s.patientBirthDate ? ` ・ ${date(s.patientBirthDate)}` : '', sex ? ` ・ ${sex}` : '')),
    h('td', { class: 'study-desc' }, s.studyDescription || ''),
    h('td', { class: 'study-modality' }, (s.modalities || []).join(', ')),
    h('td', { class: 'optional study-count' }, String(s.numberOfInstances)),
    h('td', { class: 'optional study-inst' }, instLabel(s.institution, s.institutionName)),
    h('td', { class: 'study-access' }, access, h('div', { class: 'study-actions' }, actions)));
}

// studyTable lists studies; with sortBy, the date and patient headings sort the list (sortBy(key) is called).
function studyTable(list, sortBy, current = '') {
  if (!list.length) return h('p', { id: 'no-studies' }, t('studies.none'));
  const sortable = { 'col.date': current === 'date-asc' ? 'date' : 'date-asc', 'col.patient': current === 'name' ? 'patient-id' : 'name' };
  return h('table', { id: 'studies' },
    h('thead', {}, h('tr', {}, ['col.date', 'col.patient', 'col.study', 'col.modality', 'col.images', 'col.institution', 'col.access']
      .map((k, i) => h('th', { class: [i === 4 || i === 5 ? 'optional' : '', sortBy && sortable[k] ? 'sortable' : ''].join(' ').trim() },
        sortBy && sortable[k] ? h('button', { class: 'sort', id: 'sort-' + k.slice(4), onclick: () => sortBy(sortable[k]) }, t(k), ' ↕') : t(k))))),
    h('tbody', {}, list.map(studyRow)));
}

async function studiesPage(params, guard = pageUI(renderSeq)) {
  const show = guard.show; // a newer page opened meanwhile is not overwritten when this one finishes loading
  const q = new URLSearchParams(params);
  const insts = await institutionList();
  const val = (k) => q.get(k) || '';
  const f = h('form', { class: 'card search', id: 'search' },
    h('div', {}, field(t('search.name'), input('q-name', { value: val('name'), autofocus: true }))),
    h('div', {}, field(t('search.id'), input('q-id', { value: val('patientId') }))),
    h('div', {}, field(t('search.birth'), input('q-birth', { type: 'date', value: val('birthDate') }))),
    h('div', {}, field(t('search.from'), input('q-from', { type: 'date', value: val('from') }))),
    h('div', {}, field(t('search.to'), input('q-to', { type: 'date', value: val('to') }))),
    h('div', {}, field(t('search.modality'), h('select', { id: 'q-modality' }, h('option', { value: '' }, t('search.any')),
      modalities.map((m) => h('option', { value: m, selected: val('modality') === m }, m))))),
    h('div', {}, field(t('search.institution'), h('select', { id: 'q-institution' }, h('option', { value: '' }, t('search.any')),
      insts.map((i) => h('option', { value: i.id, selected: val('institution') === i.id }, getLang() === 'en' && i.nameEn ? i.nameEn : i.name))))),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'search-submit' }, t('search.submit')),
      h('button', { type: 'button', class: 'secondary', onclick: () => route('#/studies') }, t('search.clear'))));
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, id] of [['name', 'q-name'], ['patientId', 'q-id'], ['birthDate', 'q-birth'], ['from', 'q-from'], ['to', 'q-to'], ['modality', 'q-modality'], ['institution', 'q-institution']]) {
      const v = f.querySelector('#' + id).value.trim();
      if (v) p.set(k, v);
    }
    route('#/studies?' + p.toString());
  });
  const limit = 50;
  const offset = +(q.get('offset') || 0);
  q.set('limit', limit);
  const list = await api('GET', '/api/studies?' + q.toString());
  const page = (o) => { const p = new URLSearchParams(params); if (o) p.set('offset', o); else p.delete('offset'); route('#/studies?' + p.toString()); };
  const pager = h('div', { class: 'pager' },
    h('button', { class: 'secondary', disabled: offset === 0, onclick: () => page(Math.max(0, offset - limit)) }, t('page.prev')),
    h('span', { class: 'muted' }, list.length ? t('page.n', { from: offset + 1, to: offset + list.length }) : ''),
    h('button', { class: 'secondary', disabled: list.length < limit, onclick: () => page(offset + limit) }, t('page.next')));
  const sortBy = (key) => { const p = new URLSearchParams(params); p.set('sort', key); p.delete('offset'); route('#/studies?' + p.toString()); };
  show(h('h1', {}, t('studies.title')), tour(), f, studyTable(list, sortBy, q.get('sort') || ''), pager);
}

async function patientPage(institution, issuer, patientId, guard = pageUI(renderSeq)) {
  const show = guard.show; // a newer page opened meanwhile is not overwritten when this one finishes loading
  let list;
  const own = institution === me.user.institution;
  if (own) list = await api('GET', `/api/patients/studies?issuer=${encodeURIComponent(issuer)}&patientId=${encodeURIComponent(patientId)}`);
  else list = await api('GET', `/api/studies?patientId=${encodeURIComponent(patientId)}&institution=${encodeURIComponent(institution)}&limit=200`);
  const full = own ? await api('GET', `/api/studies?patientId=${encodeURIComponent(patientId)}&limit=200`) : list;
  const byUID = new Map(full.map((s) => [s.studyInstanceUID, s]));
  list = list.map((s) => byUID.get(s.studyInstanceUID) || s);
  const first = list[0] || {};
  await institutionList();
  show(h('h1', {}, t('patient.title', { name: personName(first.patientName) || patientId })),
    h('p', { class: 'muted' }, `ID ${patientId}`, first.patientBirthDate ? ` ・ ${t('patient.born')} ${date(first.patientBirthDate)}` : ''),
    // Each study opens in the viewer from here; a linked institution's study (another patient ID of the same person)
    // comes without its institution's name, which the list gives.
    h('ol', { class: 'timeline', id: 'timeline' }, list.map((s) => h('li', {},
      h('a', { href: `#/viewer/${encodeURIComponent(s.studyInstanceUID)}` }, h('strong', {}, date(s.studyDate)), ' ', (s.modalities || []).join(', '), ' ', s.studyDescription || ''),
      h('div', { class: 'muted' }, instLabel(s.institution, s.institutionName), s.own === false ? ` ・ ${t('badge.shared')}` : '')))),
    own ? await consentCard(ui, issuer, patientId, first.patientName) : '',
    await fetchCard(institution, issuer, patientId),
    await recordPanel(ui, institution, issuer, patientId, own));
}

// fetchCard asks the patient's institution's gateway for earlier studies kept only in that hospital's PACS, and shows
// what such requests brought.
async function fetchCard(institution, issuer, patientId) {
  if (me.user.role === 'patient' || me.user.role === 'region-admin') return '';
  const all = await api('GET', '/api/gateways/requests').catch(() => []);
  const mine = all.filter((r) => r.patientId === patientId && r.institution === institution);
  const since = input('fetch-since', { type: 'date' });
  const reason = input('fetch-reason', {});
  const f = h('form', { id: 'fetch-form' }, h('div', { class: 'grid2' }, h('div', {}, ...field(t('fetch.since'), since)), h('div', {}, ...field(t('fetch.reason'), reason))),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'secondary', id: 'fetch-submit' }, t('fetch.submit'))));
  f.addEventListener('submit', (ev) => { ev.preventDefault(); busy(f, async () => {
    await api('POST', '/api/gateways/requests', { institution, issuer, patientId, since: since.value, reason: reason.value });
    message(t('fetch.sent'), 'info');
    render();
  }); });
  return h('div', { class: 'card', id: 'fetch' }, h('h2', {}, t('fetch.title')), h('p', { class: 'muted' }, t('fetch.hint')), f,
    mine.length ? h('ul', { id: 'fetch-requests' }, mine.map((r) => h('li', { 'data-status': r.status }, date(r.createdAt, true), ' ',
      h('strong', {}, t('fetch.status.' + r.status)), r.status === 'done' ? ' ' + t('fetch.result', { s: r.studies, n: r.instances }) : '',
      r.detail ? h('div', { class: 'muted' }, r.detail) : '', h('div', { class: 'muted' }, r.requestedBy)))) : '');
}

// ui is what the feature modules (referrals.js) use of the app.
const ui = { h, api, busy, field, input, show, message, route, render: () => render(), me: () => me, institutionList, sendFile, keyImageStore };

// sendFile sends a file as the request body (documents, printed letters) and answers the JSON reply.
async function sendFile(method, path, file) {
  const r = await fetch(path, { method, body: file, headers: { 'Content-Type': file.type || 'application/octet-stream', 'X-CSRF-Token': csrf, 'Accept-Language': getLang() } });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new APIError(r.status, data.detail || r.statusText, data.code);
  return data;
}

function shareDialog(s) {
  institutionList().then((insts) => {
    const f = h('form', { class: 'card', id: 'share' }, h('h1', {}, t('share.title')),
      h('p', {}, h('strong', {}, personName(s.patientName)), ` (ID ${s.patientId}) ・ ${date(s.studyDate)} ${s.studyDescription || ''}`),
      field(t('share.to'), h('select', { id: 'share-to', required: true }, insts.filter((i) => i.id !== me.user.institution && i.kind !== 'region')
        .map((i) => h('option', { value: i.id }, getLang() === 'en' && i.nameEn ? i.nameEn : i.name)))),
      field(t('share.purpose'), h('select', { id: 'share-purpose' }, ['referral', 'emergency', 'consult', 'second-opinion'].map((p) => h('option', { value: p }, t('purpose.' + p))))),
      field(t('share.scope'), h('select', { id: 'share-scope' }, h('option', { value: 'all' }, t('share.scope.all')), h('option', { value: 'one' }, t('share.scope.one')))),
      field(t('share.days'), input('share-days', { type: 'number', min: 1, max: 3650, value: 30 })),
      field(t('share.reason'), h('textarea', { id: 'share-reason' })),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('share.submit')), h('button', { type: 'button', class: 'secondary', onclick: () => render() }, t('share.cancel'))));
    f.addEventListener('submit', (ev) => { ev.preventDefault(); busy(f, async () => {
      try {
        await api('POST', '/api/shares', { issuer: s.issuer, patientId: s.patientId, toInstitution: f.querySelector('#share-to').value,
          purpose: f.querySelector('#share-purpose').value, days: +f.querySelector('#share-days').value, reason: f.querySelector('#share-reason').value,
          studies: f.querySelector('#share-scope').value === 'one' ? [s.studyInstanceUID] : [] });
      } catch (e) {
        if (e.code === 'consent-required') throw new Error(t('share.consent'));
        throw e;
      }
      route('#/shares', t('share.done'));
    }); });
    show(f);
  }).catch((e) => message(e.message));
}

async function sharesPage(guard = pageUI(renderSeq)) {
  const show = guard.show; // a newer page opened meanwhile is not overwritten when this one finishes loading
  const [incoming, outgoing, insts] = await Promise.all([api('GET', '/api/shares?direction=in'), api('GET', '/api/shares?direction=out'), institutionList()]);
  const name = (id) => { const i = insts.find((x) => x.id === id); return i ? (getLang() === 'en' && i.nameEn ? i.nameEn : i.name) : (id || ''); };
  const state = (s) => (s.revokedAt ? t('shares.revoked') : (s.active ? date(s.expiresAt) : t('shares.expired')));
  const table = (list, out) => (list.length === 0 ? h('p', {}, t('shares.none')) : h('table', { class: out ? 'shares-out' : 'shares-in' },
    h('thead', {}, h('tr', {}, [out ? 'shares.to' : 'shares.from', 'shares.patient', 'shares.purpose', 'shares.by', 'shares.until', ''].map((k) => h('th', {}, k ? t(k) : '')))),
    h('tbody', {}, list.map((s) => h('tr', { class: s.purpose === 'break-glass' ? 'breakglass' : '' },
      h('td', {}, out ? name(s.toInstitution) || s.toUserName || t('shares.user') : name(s.fromInstitution)),
      h('td', { class: 'share-patient' }, h('strong', {}, personName(s.patientName)), h('div', { class: 'muted' }, `ID ${s.patientId}`),
        h('div', { class: 'muted' }, s.studies.length ? t('shares.studies', { n: s.studies.length }) : t('shares.all'))),
      h('td', {}, t('purpose.' + s.purpose), s.reason ? h('div', { class: 'muted' }, s.reason) : ''),
      h('td', {}, s.sharedBy), h('td', {}, state(s)),
      h('td', {}, out && s.active ? h('button', { class: 'secondary', onclick: async () => {
        if (!window.confirm(t('shares.revoke.confirm', { to: name(s.toInstitution) || s.toUserName || t('shares.user'),
          patient: [personName(s.patientName), `ID ${s.patientId}`].filter(Boolean).join(' ') }))) return;
        try { await api('POST', `/api/shares/${s.id}/revoke`, {}); render(); } catch (e) { message(e.message); }
      } }, t('shares.revoke')) : ''))))));
  show(h('h1', {}, t('shares.title')), h('h2', {}, t('shares.in')), table(incoming, false), h('h2', {}, t('shares.out')), table(outgoing, true));
}

function breakGlassPage() {
  const f = h('form', { class: 'card', id: 'break-glass' }, h('h1', {}, t('bg.title')), h('p', { class: 'warning' }, t('bg.warning')),
    field(t('bg.birth'), input('bg-birth', { type: 'date', required: true })),
    field(t('bg.name'), input('bg-name', { 'aria-describedby': 'bg-name-hint', placeholder: 'Suzuki Ichiro / 鈴木 一郎' })),
    h('p', { class: 'muted', id: 'bg-name-hint' }, t('bg.name.hint')), field(t('bg.id'), input('bg-id')),
    field(t('bg.reason'), h('textarea', { id: 'bg-reason', required: true })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'danger' }, t('bg.submit'))));
  f.addEventListener('submit', (ev) => { ev.preventDefault(); busy(f, async () => {
    let grants;
    try {
      grants = await api('POST', '/api/break-glass', { birthDate: f.querySelector('#bg-birth').value.replaceAll('-', ''),
        name: f.querySelector('#bg-name').value, patientId: f.querySelector('#bg-id').value, reason: f.querySelector('#bg-reason').value });
    } catch (e) {
      if (e.status === 404) throw new Error(t('bg.none'));
      throw e;
    }
    // The period is the server's (--break-glass-period), read from the grants it made.
    const hours = grants.length ? Math.round((new Date(grants[0].expiresAt) - new Date(grants[0].createdAt)) / 3600000) : 0;
    route('#/studies?birthDate=' + f.querySelector('#bg-birth').value, t('bg.done', { n: grants.length, hours }));
  }); });
  show(f);
}

async function adminPage(guard = pageUI(renderSeq)) {
  const show = guard.show; // a newer page opened meanwhile is not overwritten when this one finishes loading
  const reviews = me.user.role === 'institution-admin' ? await api('GET', '/api/break-glass/reviews') : [];
  const events = await api('GET', '/api/audit?limit=200');
  const reviewList = reviews.length === 0 ? h('p', {}, t('shares.none')) : h('table', { id: 'reviews' },
    h('thead', {}, h('tr', {}, ['audit.time', 'audit.actor', 'audit.patient', 'admin.review.reason', 'admin.review.note'].map((k) => h('th', {}, t(k))))),
    h('tbody', {}, reviews.map((s) => {
    const note = h('input', { 'aria-label': t('admin.review.note') });
    return h('tr', { class: 'breakglass' }, h('td', {}, date(s.createdAt, true)), h('td', {}, s.sharedBy), h('td', {}, s.patientId),
      h('td', {}, s.reason), h('td', {}, note, h('button', { onclick: async () => {
        try { await api('POST', `/api/break-glass/${s.id}/review`, { note: note.value }); render(); } catch (e) { message(e.message); }
      } }, t('admin.review.submit'))));
  })));
  const security = me.user.role === 'region-admin'
    ? h('p', {}, h('a', { class: 'button', id: 'security-link', href: '#/security' }, t('security.open'))) : '';
  show(h('h1', {}, t('admin.title')), security, await accountCards(ui), await gatewayCard(), h('h2', {}, t('admin.reviews')), reviewList, h('h2', {}, t('admin.audit')),
    h('table', { id: 'audit' }, h('thead', {}, h('tr', {}, ['audit.time', 'audit.actor', 'audit.action', 'audit.patient', 'audit.outcome', 'audit.detail'].map((k) => h('th', {}, t(k))))),
      h('tbody', {}, events.map((e) => h('tr', { class: e.action === 'break-glass' || e.purpose === 'break-glass' ? 'breakglass' : '', 'data-seq': e.seq },
        auditTimeCell(h, e), h('td', { class: 'audit-who' }, e.actor, h('div', { class: 'muted' }, e.role ? t('role.' + e.role) : e.actorKind ? t('actor.' + e.actorKind) : '')),
        h('td', { class: 'audit-action' }, t('action.' + e.action)), h('td', {}, e.patientId || ''), h('td', {}, t('outcome.' + e.outcome)), auditDetailCell(h, e))))));
}

// gatewayCard lists the hospital gateways the admin looks after: last heartbeat, backlog, and a red row for one that
// is silent or stuck.
async function gatewayCard() {
  if (!['institution-admin', 'region-admin'].includes(me.user.role)) return '';
  const list = await api('GET', '/api/gateways').catch(() => []);
  const insts = me.user.role === 'region-admin' ? await institutionList().catch(() => []) : [];
  const instName = (id) => (insts.find((i) => i.id === id) || {}).name || id;
  return h('div', { class: 'card', id: 'gateways' }, h('h2', {}, t('gw.title')), list.length === 0 ? h('p', { class: 'muted' }, t('gw.none'))
    : h('table', {}, h('thead', {}, h('tr', {}, ['gw.name', 'gw.state', 'gw.seen', 'gw.waiting', 'gw.oldest', 'gw.sent'].map((k) => h('th', {}, t(k))))),
      h('tbody', {}, list.map((g) => h('tr', { class: g.health === 'ok' ? '' : 'breakglass', 'data-health': g.health },
        h('td', {}, g.name, h('div', { class: 'muted' }, `${g.ae}・${g.tokenName}${insts.length ? '・' + instName(g.institution) : ''}`)),
        h('td', {}, t('gw.health.' + g.health), g.lastError ? h('div', { class: 'muted' }, g.lastError) : ''),
        h('td', {}, date(g.seenAt, true), h('div', { class: 'muted' }, g.address)),
        h('td', {}, t('gw.count', { n: g.instances, s: g.studies })),
        h('td', {}, g.oldest ? date(g.oldest, true) : '—'), h('td', {}, g.lastSent ? date(g.lastSent, true) : '—'))))));
}

async function myStudiesPage(guard = pageUI(renderSeq)) {
  const show = guard.show; // a newer page opened meanwhile is not overwritten when this one finishes loading
  const list = await api('GET', '/api/my/studies');
  await institutionList();
  show(h('h1', {}, t('my.studies')), studyTable(list.map((s) => ({ ...s, own: true }))));
}

async function myLogPage(guard = pageUI(renderSeq)) {
  const show = guard.show; // a newer page opened meanwhile is not overwritten when this one finishes loading
  const log = await api('GET', '/api/my/access-log');
  show(h('h1', {}, t('my.log')), h('p', {}, t('my.log.hint')), h('table', { id: 'access-log' },
    h('thead', {}, h('tr', {}, ['audit.time', 'log.institution', 'log.role', 'log.action', 'log.purpose'].map((k) => h('th', {}, t(k))))),
    h('tbody', {}, log.map((e) => h('tr', { class: e.purpose === 'break-glass' ? 'breakglass' : '' }, h('td', {}, date(e.time, true)),
      h('td', {}, e.institution || (e.actorKind === 'system' ? t('log.system') : '')), h('td', {}, e.role ? t('role.' + e.role) : '', e.self ? ' ' + t('log.self') : ''),
      h('td', {}, t('action.' + e.action)), h('td', {}, e.purpose ? t('purpose.' + e.purpose) : ''))))));
}

// viewerPage is the viewer with, above it, the patient's other studies to compare with (priors first).
async function viewerPage(study, query) {
  const bar = h('div', { class: 'compare-bar', id: 'priors' });
  const pane = h('div');
  show(bar, pane);
  // Opened from a reading request (?referral=N): the radiologist marks key images for the report. Opened from any
  // other referral's page (?from=N): the way back to that referral.
  const q = new URLSearchParams(query);
  const referral = q.get('referral');
  const from = referral || q.get('from');
  const opts = {};
  if (me.user.role !== 'patient') {
    bar.append(h('button', { class: 'secondary', id: 'start-consult', onclick: () => startConsult(ui, study, '').catch((e) => message(e.message)) }, t('con.start')), ' ');
  }
  if (referral) opts.keyImages = keyImageStore(referral);
  if (from) {
    bar.append(h('a', { class: 'button', id: 'back-to-referral', href: `#/referral/${encodeURIComponent(from)}` },
      referral ? t('viewer.back.report') : t('viewer.back.referral')), ' ');
  }
  const v = viewer(pane, study, h, message, opts);
  try {
    const meta = await api('GET', `/api/studies?limit=1&studyUID=${encodeURIComponent(study)}`);
    const me0 = meta[0];
    if (me0) {
      const others = (await api('GET', `/api/studies?patientId=${encodeURIComponent(me0.patientId)}&limit=50`))
        .filter((s) => s.studyInstanceUID !== study && s.issuer === me0.issuer);
      if (others.length) {
        bar.append(h('span', {}, t('compare.with') + ' '), ...others.map((s) => h('a', { class: 'button secondary compare-link',
          href: `#/compare/${encodeURIComponent(study)}/${encodeURIComponent(s.studyInstanceUID)}` },
        `${date(s.studyDate)} ${(s.modalities || []).join(',')} ${s.studyDescription || ''}`)));
      }
    }
  } catch (e) { /* the viewer works without the comparison bar */ }
  await v;
}

// keyImageStore keeps the key images marked for a reading report in this browser until the report is signed.
export function keyImageStore(referral) {
  const k = `renkei.key.${referral}`;
  const load = () => { try { return JSON.parse(localStorage.getItem(k) || '[]'); } catch (e) { return []; } };
  const same = (a, b) => a.instance === b.instance && a.frame === b.frame;
  return {
    list: load,
    count: () => load().length,
    has: (img) => load().some((x) => same(x, img)),
    toggle: (img) => {
      const l = load();
      const i = l.findIndex((x) => same(x, img));
      if (i >= 0) l.splice(i, 1); else l.push(img);
      localStorage.setItem(k, JSON.stringify(l));
    },
    clear: () => localStorage.removeItem(k),
  };
}

// ---- help ----

// helpSections are the help page's topics, each a title, what to do, and a screenshot of it (made by the browser
// tests: go test ./web -run TestHelpScreenshots -update).
const helpSections = ['login', 'search', 'view', 'import', 'share', 'consent', 'referral', 'emergency'];

function helpPage() {
  show(h('h1', {}, t('help.title')), h('p', {}, t('help.intro')),
    ...helpSections.map((k) => h('section', { class: 'card help', id: 'help-' + k }, h('h2', {}, t(`help.${k}.title`)),
      h('p', {}, t(`help.${k}.text`)), h('img', { class: 'shot', src: `/ui/help/${k}.png`, alt: t(`help.${k}.title`), loading: 'lazy' }))));
}

// tour is the short guided tour shown once, at a user's first visit to the study list.
function tour() {
  if (!me || me.user.role === 'patient' || localStorage.getItem('renkei.tour.' + me.user.login)) return null;
  let step = 0;
  const steps = ['search', 'view', 'import', 'share'];
  const text = h('p', { id: 'tour-text' }, t(`tour.${steps[0]}`));
  const box = h('div', { class: 'tour card', id: 'tour', role: 'dialog' }, h('strong', {}, t('tour.title')), text,
    h('div', { class: 'actions' },
      h('button', { id: 'tour-next', onclick: () => {
        step++;
        if (step >= steps.length) { localStorage.setItem('renkei.tour.' + me.user.login, '1'); box.remove(); return; }
        text.textContent = t(`tour.${steps[step]}`);
      } }, t('tour.next')),
      h('button', { class: 'secondary', id: 'tour-skip', onclick: () => { localStorage.setItem('renkei.tour.' + me.user.login, '1'); box.remove(); } }, t('tour.skip')),
      h('a', { href: '#/help' }, t('nav.help'))));
  return box;
}

// ---- routing ----

// referralRoute: #/referral/new/{issuer}/{patientId}, #/referral/{id}, #/referral/{id}/edit, …/reverse, …/correct.
async function referralRoute(ui, parts, query) {
  const to = new URLSearchParams(query).get('to') || '';
  if (parts[1] === 'new' && !parts[2]) return patientPicker(ui, to);
  if (parts[1] === 'new') return referralForm(ui, { issuer: parts[2], patientId: parts[3], to });
  if (parts[2] === 'edit') return referralForm(ui, { existing: await api('GET', `/api/referrals/${parts[1]}`) });
  if (parts[2] === 'reverse') return referralForm(ui, { parent: await api('GET', `/api/referrals/${parts[1]}`) });
  if (parts[2] === 'correct') return correctionForm(ui, await api('GET', `/api/referrals/${parts[1]}`));
  return referralPage(ui, parts[1]);
}

// route opens a page; note, if any, is what the user is told there of what just happened ("sent", "shared"): the
// page change clears the old page's messages, so a note set before it would vanish unread.
let notice = '';
function route(hash, note = '') {
  notice = note;
  if (location.hash !== hash) { location.hash = hash; return; }
  showNotice();
  render();
}
function showNotice() { message(notice, 'info'); notice = ''; }

// Each render has a number; a page that finishes after the user went elsewhere (or after a newer render of the same
// page, started by a live update) does not overwrite what is on screen.
let renderSeq = 0;
function pageUI(seq) { return { ...ui, show: (...nodes) => { if (seq === renderSeq) show(...nodes); } }; }

async function render() {
  const ui = pageUI(++renderSeq);
  header();
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  try {
    if (!me) {
      try {
        me = await api('GET', '/api/me');
        csrf = me.csrfToken;
        if (me.user && me.user.lang) setLang(me.user.lang);
        header();
      } catch (e) { me = null; }
    }
    if (!me || me.next !== 'done') {
      if (location.hash && !location.hash.startsWith('#/login')) sessionStorage.setItem('renkei.after', location.hash);
      if (me && me.next === 'second-factor') return secondFactorPage(me.factors || []);
      if (me && me.next === 'enrol-second-factor') return enrolPage();
      if (me && me.next === 'change-password') return passwordPage();
      return loginPage();
    }
    liveUpdates();
    switch (parts[0] || '') {
      case 'patient': return await patientPage(parts[1], parts[2], parts[3]);
      case 'viewer': return await viewerPage(parts[1], query);
      case 'compare': return await compare(app(), parts[1], parts[2], h, message);
      case 'upload': return uploadPage(app(), h, () => csrf);
      case 'shares': return await sharesPage();
      case 'referrals': return await referralsPage(ui, query);
      case 'referral': return await referralRoute(ui, parts, query);
      case 'directory': return parts[1] ? await institutionPage(ui, parts[1]) : await directoryPage(ui, query);
      case 'consults': return await consultsPage(ui);
      case 'links': return await linksPage(ui);
      case 'consult': return await consultPage(ui, parts[1]);
      case 'emergency': {
        const to = new URLSearchParams(query).get('to') || '';
        if (parts[1] !== 'new') return await emergencyPage(ui);
        return parts[2] ? await transferForm(ui, { issuer: parts[2], patientId: parts[3], to }) : patientPicker(ui, to, 'emergency');
      }
      case 'break-glass': return breakGlassPage();
      case 'admin': return await adminPage();
      case 'alerts': return await alertsPage(ui, query);
      case 'security': return await securityPage(ui);
      case 'my': return parts[1] === 'log' ? await myLogPage() : await myStudiesPage();
      case 'studies': return await studiesPage(query);
      case 'help': return helpPage();
      case 'trash': return await trashPage(ui);
      case 'account': return await accountPage();
      default: return route(me.user.role === 'patient' ? '#/my/studies' : '#/studies');
    }
  } catch (e) {
    message(e.message);
  }
}

window.addEventListener('hashchange', () => { showNotice(); render(); });
setLang(getLang());
render();
