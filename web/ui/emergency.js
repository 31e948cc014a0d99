// Emergency transfers (救急搬送): the sending side announces a patient in an ambulance with the images, allergies and
// medications; the receiving hospital's board shows it at once with a sound and a browser notification, counting
// down to the arrival; its doctors open the images before the patient arrives. A transfer is a referral of kind
// "emergency": the same steps, audit and live updates, with its own board.
import { t, date, personName, getLang } from './i18n.js';
import { ownPatient, typedPatient } from './directory.js';

const open = ['sent', 'received', 'accepted', 'arrived'];

// beep plays a short two-tone alert (no sound file needed) and counts it, for the tests.
function beep() {
  window.renkeiAlerts = (window.renkeiAlerts || 0) + 1;
  try {
    const ctx = new AudioContext();
    [880, 660].forEach((f, i) => {
      const o = ctx.createOscillator(); const g = ctx.createGain();
      o.frequency.value = f; g.gain.value = 0.2;
      o.connect(g); g.connect(ctx.destination);
      o.start(ctx.currentTime + i * 0.25); o.stop(ctx.currentTime + i * 0.25 + 0.2);
    });
  } catch (e) { /* no audio: the board still shows it */ }
}

// countdown says how long until the expected arrival (or how long since), in words.
function countdown(eta) {
  if (!eta) return '';
  const m = Math.round((new Date(eta) - Date.now()) / 60000);
  return m >= 0 ? t('em.eta.in', { n: m }) : t('em.eta.late', { n: -m });
}

export async function emergencyPage(ui) {
  const { h, api } = ui;
  const [incoming, outgoing, insts] = await Promise.all([
    api('GET', `/api/referrals?direction=in&kind=emergency&status=${open.join(',')}`),
    api('GET', `/api/referrals?direction=out&kind=emergency&status=${open.join(',')}`), ui.institutionList()]);
  // New transfers since this browser last looked: a sound and a notification, so that nobody has to watch the screen.
  const seen = new Set(JSON.parse(sessionStorage.getItem('renkei.em.seen') || '[]'));
  const fresh = incoming.filter((r) => !seen.has(r.id) && r.status === 'sent');
  if (fresh.length && sessionStorage.getItem('renkei.em.seen')) {
    beep();
    if (window.Notification && Notification.permission === 'granted') {
      for (const r of fresh) new Notification(t('em.notify.title'), { body: t('em.notify.body', { from: r.fromName, eta: countdown(r.dueAt) }), tag: `renkei-em-${r.id}` });
    }
  }
  sessionStorage.setItem('renkei.em.seen', JSON.stringify(incoming.map((r) => r.id)));
  const instName = (id) => { const i = insts.find((x) => x.id === id); return i ? (getLang() === 'en' && i.nameEn ? i.nameEn : i.name) : id; };
  const act = (r, action, body) => async () => {
    try { await api('POST', `/api/referrals/${r.id}/${action}`, body || {}); } catch (e) { ui.message(e.message); }
    ui.render();
  };
  const card = (r) => {
    const eta = h('strong', { class: 'eta', 'data-eta': r.dueAt || '' }, countdown(r.dueAt));
    const redirectTo = h('select', { 'aria-label': t('em.redirect.to') }, h('option', { value: '' }, t('em.redirect.to')),
      insts.filter((i) => i.kind === 'hospital' && i.id !== ui.me().user.institution && i.id !== r.fromInstitution).map((i) => h('option', { value: i.id }, instName(i.id))));
    const actions = h('div', { class: 'actions' });
    if (['sent', 'received'].includes(r.status)) {
      actions.append(h('button', { class: 'em-accept', onclick: act(r, 'accept') }, t('em.accept')),
        redirectTo, h('button', { class: 'secondary em-redirect', onclick: () => {
          if (!redirectTo.value) { ui.message(t('em.redirect.choose')); return; }
          act(r, 'redirect', { toInstitution: redirectTo.value, reason: t('em.redirect.reason') })();
        } }, t('em.redirect')),
        h('a', { class: 'button secondary', href: '#/directory?emergency=1' }, t('em.find')));
    }
    if (r.status === 'accepted') actions.append(h('button', { class: 'em-arrive', onclick: act(r, 'arrive') }, t('em.arrive')));
    if (r.status === 'arrived') actions.append(h('button', { class: 'secondary em-close', onclick: act(r, 'close') }, t('em.close')));
    return h('li', { class: `card emergency status-${r.status}${fresh.includes(r) ? ' new' : ''}`, 'data-referral': r.id },
      h('div', { class: 'em-head' }, h('span', { class: `badge status-${r.status}` }, t('ref.status.' + r.status)), ' ', eta,
        h('span', { class: 'muted' }, ` ・ ${r.fromName}(${r.fromUser})`)),
      h('h2', {}, personName(r.patientName) || r.patientId, h('span', { class: 'muted' }, ` ID ${r.patientId}`,
        r.patientBirthDate ? ` ・ ${date(r.patientBirthDate)}` : '', r.patientSex ? ` ・ ${t('sex.' + r.patientSex)}` : '')),
      h('p', { class: 'lead' }, r.letter.purpose || ''),
      r.letter.allergies ? h('p', { class: 'warning' }, t('letter.allergies'), ': ', r.letter.allergies) : h('p', {}, t('letter.allergies'), ': ', t('em.unknown')),
      r.letter.medications ? h('p', {}, t('letter.medications'), ': ', r.letter.medications) : '',
      r.studies.length ? h('div', { class: 'actions' }, r.studies.map((uid) => h('a', { class: 'button view', href: `#/viewer/${encodeURIComponent(uid)}` }, t('em.images')))) : '',
      h('p', {}, h('a', { href: `#/referral/${r.id}` }, t('em.details'))), actions);
  };
  const board = h('ol', { class: 'emergency-board', id: 'em-board' }, incoming.map(card));
  const tick = setInterval(() => {
    if (!board.isConnected) { clearInterval(tick); return; }
    board.querySelectorAll('.eta').forEach((el) => { el.textContent = countdown(el.dataset.eta); });
  }, 15000);
  const notifyButton = window.Notification && Notification.permission === 'default'
    ? h('button', { class: 'secondary', id: 'em-notify', onclick: async () => { await Notification.requestPermission(); ui.render(); } }, t('em.notify.enable')) : '';
  ui.show(h('h1', {}, t('em.title')), h('p', { class: 'muted' }, t('em.intro')),
    h('div', { class: 'actions' }, h('a', { class: 'button danger', id: 'em-new', href: '#/emergency/new' }, t('em.announce')), notifyButton),
    h('h2', {}, t('em.incoming')), incoming.length ? board : h('p', { id: 'em-none' }, t('em.none')),
    h('h2', {}, t('em.outgoing')), outgoing.length ? h('ul', { id: 'em-out' }, outgoing.map((r) => h('li', {},
      h('a', { href: `#/referral/${r.id}` }, personName(r.patientName) || r.patientId), ` → ${instName(r.toInstitution)} `,
      h('span', { class: `badge status-${r.status}` }, t('ref.status.' + r.status)), ' ', countdown(r.dueAt)))) : h('p', { class: 'muted' }, t('em.none')));
}

// transferForm announces one of the caller's patients to a hospital: reason, arrival in minutes, the images, and the
// allergies and medications from the record (filled in at once; an empty record is said to be unknown, not "none").
export async function transferForm(ui, { issuer, patientId, to }) {
  const { h, api, busy } = ui;
  const me = ui.me().user.institution;
  // Issuer '-': a patient renkei does not hold, typed in the picker (see referralForm).
  const newPatient = issuer === '-' ? typedPatient(patientId) : null;
  if (issuer === '-' && !newPatient) return ui.route(`#/emergency/new${to ? `?to=${encodeURIComponent(to)}` : ''}`);
  if (newPatient) issuer = '';
  const q = `institution=${encodeURIComponent(me)}&issuer=${encodeURIComponent(issuer)}&patientId=${encodeURIComponent(patientId)}`;
  const [insts, studies, rec] = await Promise.all([ui.institutionList(),
    newPatient ? [] : api('GET', `/api/studies?patientId=${encodeURIComponent(patientId)}&institution=${encodeURIComponent(me)}&limit=50`),
    newPatient ? { allergies: [], medications: [] } : api('GET', `/api/patients/record?${q}`).catch(() => ({ allergies: [], medications: [] }))]);
  const known = newPatient ? { name: `=${newPatient.name.replace(/\s+/, '^')}=${newPatient.kana.replace(/\s+/, '^')}` }
    : studies.length ? null : await ownPatient(ui, patientId); // no images: named by the patient index
  const allergies = rec.allergies.map((a) => [a.substance, a.reaction ? `(${a.reaction})` : ''].join('')).join('、');
  const meds = rec.medications.map((m) => [m.drug, m.dose, m.frequency].filter(Boolean).join(' ')).join('\n');
  const form = h('form', { class: 'card', id: 'transfer-form' }, h('h1', {}, t('em.new.title')),
    h('p', {}, h('strong', {}, personName((studies[0] && studies[0].patientName) || (known && known.name)) || ''), ` ID ${patientId}`),
    h('div', { class: 'grid2' },
      h('div', {}, ...ui.field(t('em.to'), h('select', { id: 'em-to', required: true }, h('option', { value: '' }, t('ref.choose')),
        insts.filter((i) => i.kind === 'hospital' && i.id !== me).map((i) => h('option', { value: i.id, selected: i.id === to }, getLang() === 'en' && i.nameEn ? i.nameEn : i.name))))),
      h('div', {}, ...ui.field(t('em.eta'), ui.input('em-eta', { type: 'number', min: 0, max: 600, value: 15, required: true })))),
    ...ui.field(t('em.reason'), h('textarea', { id: 'em-reason', rows: 3, required: true })),
    ...ui.field(t('letter.allergies'), h('textarea', { id: 'em-allergies', rows: 2, placeholder: t('em.unknown') }, allergies)),
    ...ui.field(t('letter.medications'), h('textarea', { id: 'em-meds', rows: 3 }, meds)),
    studies.length ? h('fieldset', { id: 'em-studies' }, h('legend', {}, t('em.images.attach')), studies.map((s, i) => h('label', { class: 'check' },
      h('input', { type: 'checkbox', value: s.studyInstanceUID, checked: i === 0 }), ` ${date(s.studyDate)} ${(s.modalities || []).join(',')} ${s.studyDescription || ''}`))) : '',
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'danger', id: 'em-send' }, t('em.send'))));
  // The draft of a try whose sending was refused (no consent yet): the next try saves and sends it, as the letter form
  // does, rather than writing a second draft (whose typed patient would find their ID taken by the first).
  let draft = null;
  form.addEventListener('submit', (ev) => { ev.preventDefault(); busy(form, async () => {
    const body = { kind: 'emergency', issuer, patientId, toInstitution: form.querySelector('#em-to').value, etaMinutes: +form.querySelector('#em-eta').value || 0,
      studies: [...form.querySelectorAll('#em-studies input:checked')].map((c) => c.value),
      letter: { purpose: form.querySelector('#em-reason').value.trim(), allergies: form.querySelector('#em-allergies').value.trim(),
        medications: form.querySelector('#em-meds').value.trim() } };
    if (newPatient && !draft) body.newPatient = { name: newPatient.name, kana: newPatient.kana, birthDate: newPatient.birthDate, sex: newPatient.sex };
    if (!body.toInstitution) throw new Error(t('ref.choose.error'));
    const r = draft ? await api('PUT', `/api/referrals/${draft.id}`, body) : await api('POST', '/api/referrals', body);
    draft = r;
    try { await api('POST', `/api/referrals/${r.id}/send`); } catch (e) {
      if (e.code === 'consent-required') throw new Error(t('share.consent'));
      throw e;
    }
    ui.route('#/emergency', t('em.sent'));
  }); });
  ui.show(form);
}
