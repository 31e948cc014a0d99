// Referrals (紹介・逆紹介・読影依頼) and the clinical record: the board, the letter form, a referral's page with the
// steps it waits for, and the record panel of the patient page. Pages get the app's helpers in ui (api, h, busy, …).
import { t, date, personName, getLang } from './i18n.js';
import { ownPatient, typedPatient } from './directory.js';

// The letter's sections in the order of the national 診療情報提供書 (HS038).
const sections = ['purpose', 'diagnosis', 'chiefComplaint', 'presentIllness', 'history', 'course', 'testResults', 'medications', 'allergies', 'remarks'];
const replySections = ['diagnosis', 'course', 'testResults', 'followUp', 'remarks'];
const openStatuses = ['draft', 'sent', 'received', 'accepted'];

function instName(insts, id, fallback) {
  const i = insts.find((x) => x.id === id);
  return i ? (getLang() === 'en' && i.nameEn ? i.nameEn : i.name) : (fallback || id || '');
}

function statusBadge(h, r) {
  return h('span', { class: `badge status-${r.status}`, 'data-status': r.status }, t('ref.status.' + r.status));
}

// whose turn says in words who has to act next, from the reader's side.
function whoseTurn(r) {
  const mine = (r.direction === 'out') === ['draft'].includes(r.status) || (r.direction === 'in' && ['sent', 'received', 'accepted'].includes(r.status));
  if (['completed', 'declined', 'cancelled'].includes(r.status)) return '';
  return mine ? t('ref.turn.you') : t('ref.turn.them');
}

// ---- board ----

export async function referralsPage(ui, query) {
  const { h, api } = ui;
  const q = new URLSearchParams(query);
  const all = q.get('all') === '1';
  const status = all ? '' : openStatuses.join(',');
  const [incoming, outgoing, insts] = await Promise.all([
    api('GET', `/api/referrals?direction=in&status=${status}`), api('GET', `/api/referrals?direction=out&status=${status}`), ui.institutionList()]);
  const row = (r, dir) => h('tr', { class: [r.overdue ? 'overdue' : '', r.priority !== 'routine' ? 'urgent' : ''].join(' ').trim(), 'data-referral': r.id },
    h('td', {}, statusBadge(h, r), r.overdue ? h('div', { class: 'badge breakglass' }, t('ref.overdue')) : '', h('div', { class: 'muted' }, whoseTurn(r))),
    h('td', {}, h('a', { href: `#/referral/${r.id}` }, h('strong', {}, personName(r.patientName) || r.patientId)),
      h('div', { class: 'muted' }, `ID ${r.patientId}`, r.patientBirthDate ? ` ・ ${date(r.patientBirthDate)}` : '')),
    h('td', {}, dir === 'in' ? instName(insts, r.fromInstitution, r.fromName) : instName(insts, r.toInstitution, r.toName),
      h('div', { class: 'muted' }, dir === 'in' ? r.fromUser : [r.toDepartment, r.toDoctor].filter(Boolean).join(' '))),
    h('td', {}, h('span', { class: 'badge' }, t('ref.kind.' + r.kind)), ' ', r.letter.purpose || '', h('div', { class: 'muted' }, r.letter.diagnosis || '')),
    h('td', {}, date(r.updatedAt, true), r.appointment ? h('div', {}, t('ref.appointment'), ' ', date(r.appointment)) : ''));
  const heads = (dir) => ['ref.col.status', 'ref.col.patient', dir === 'in' ? 'ref.col.from' : 'ref.col.to', 'ref.col.purpose', 'ref.col.updated'];
  const table = (list, dir) => (list.length === 0 ? h('p', { class: 'muted', id: `referrals-${dir}-none` }, t('ref.none'))
    : h('table', { class: 'referrals', id: `referrals-${dir}` }, h('thead', {}, h('tr', {}, heads(dir).map((k) => h('th', {}, t(k))))),
      h('tbody', {}, list.map((r) => row(r, dir)))));
  // A radiologist's reading worklist: reading requests waiting for a report, most urgent and longest waiting first.
  let worklist = '';
  if (ui.me().user.role === 'radiologist') {
    const reading = incoming.filter((r) => r.kind === 'reading' && ['sent', 'received', 'accepted'].includes(r.status));
    const waited = (r) => { const m = Math.round((Date.now() - new Date(r.sentAt || r.createdAt)) / 60000); return m < 120 ? t('ref.wait.min', { n: m }) : t('ref.wait.h', { n: Math.round(m / 60) }); };
    worklist = h('section', { class: 'card', id: 'worklist' }, h('h2', {}, t('ref.worklist')), reading.length === 0 ? h('p', { class: 'muted' }, t('ref.none'))
      : h('table', {}, h('tbody', {}, reading.map((r) => h('tr', { class: r.priority !== 'routine' ? 'urgent' : '' },
        h('td', {}, h('span', { class: 'badge' + (r.priority !== 'routine' ? ' breakglass' : '') }, t('ref.priority.' + r.priority))),
        h('td', {}, h('a', { href: `#/referral/${r.id}` }, personName(r.patientName) || r.patientId), h('div', { class: 'muted' }, r.letter.purpose || '')),
        h('td', {}, instName(insts, r.fromInstitution, r.fromName)), h('td', {}, waited(r)))))));
  }
  ui.show(h('h1', {}, t('ref.title')), worklist,
    h('div', { class: 'actions' }, h('a', { class: 'button secondary', id: 'referrals-all', href: all ? '#/referrals' : '#/referrals?all=1' }, all ? t('ref.show.open') : t('ref.show.all'))),
    h('div', { class: 'actions' }, h('a', { class: 'button', id: 'referral-new', href: '#/referral/new' }, t('ref.write'))),
    h('p', { class: 'muted' }, t('ref.new.hint')),
    h('h2', {}, t('ref.in')), table(incoming, 'in'), h('h2', {}, t('ref.out')), table(outgoing, 'out'));
}

// ---- the letter form (a new referral, a draft, a reverse referral) ----

function letterFields(h, keys, letter, prefix) {
  return keys.map((k) => h('div', { class: 'letter-field' }, h('label', { for: `${prefix}-${k}` }, t('letter.' + k)),
    h('textarea', { id: `${prefix}-${k}`, rows: k === 'course' || k === 'presentIllness' ? 5 : 2 }, letter[k] || '')));
}

function readLetter(form, keys, prefix) {
  const l = {};
  for (const k of keys) { const v = form.querySelector(`#${prefix}-${k}`).value.trim(); if (v) l[k] = v; }
  return l;
}

// allergyText and medicationText write the record's facts as the letter's sections, with their sources.
export function allergyText(list) {
  return list.map((a) => [a.substance, a.reaction ? `(${a.reaction})` : '', a.severity ? ` ${t('severity.' + a.severity)}` : ''].join('')).join('、');
}
export function medicationText(list) {
  return list.map((m) => [m.drug, m.dose, m.route, m.frequency].filter(Boolean).join(' ')).join('\n');
}

// referralForm writes a new referral about one of the caller's patients, edits a draft (existing), or writes a
// reverse referral (parent).
export async function referralForm(ui, { issuer, patientId, existing, parent, to: toID }) {
  const { h, api, busy } = ui;
  const insts = await ui.institutionList();
  const src = existing || parent || {};
  issuer = issuer ?? src.issuer; patientId = patientId ?? src.patientId;
  // Issuer '-': a patient renkei does not hold, typed in the picker; the draft registers them. Without what was typed
  // (the page was reloaded) the picker asks again.
  const newPatient = !existing && !parent && issuer === '-' ? typedPatient(patientId) : null;
  if (issuer === '-' && !newPatient) return ui.route(`#/referral/new${toID ? `?to=${encodeURIComponent(toID)}` : ''}`);
  if (newPatient) issuer = '';
  const patientInst = src.patientInstitution || ui.me().user.institution;
  const q = `institution=${encodeURIComponent(patientInst)}&issuer=${encodeURIComponent(issuer)}&patientId=${encodeURIComponent(patientId)}`;
  const studies = parent || newPatient ? [] : await api('GET', `/api/studies?patientId=${encodeURIComponent(patientId)}&institution=${encodeURIComponent(patientInst)}&limit=100`);
  // A patient without images (a letter alone) is named by the patient index, not by a study.
  const known = newPatient ? { name: `=${newPatient.name.replace(/\s+/, '^')}=${newPatient.kana.replace(/\s+/, '^')}` }
    : !parent && !existing && !studies.length ? await ownPatient(ui, patientId) : null;
  const letter = existing ? existing.letter : {};
  const to = h('select', { id: 'ref-to', required: true }, h('option', { value: '' }, t('ref.choose')),
    insts.filter((i) => i.id !== ui.me().user.institution && i.kind !== 'region').map((i) => h('option', {
      value: i.id, selected: (existing && existing.toInstitution === i.id) || (parent && !existing && parent.fromInstitution === i.id) || (!!toID && toID === i.id) },
    instName(insts, i.id))));
  const kind = h('select', { id: 'ref-kind', disabled: !!parent }, ['referral', 'reading'].concat(parent ? ['reverse'] : []).map((k) => h('option', {
    value: k, selected: (parent && k === 'reverse') || (existing && existing.kind === k) }, t('ref.kind.' + k))));
  const studyBoxes = h('fieldset', { id: 'ref-studies' }, h('legend', {}, t('ref.studies')),
    studies.length ? studies.map((s) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: s.studyInstanceUID,
      checked: existing ? existing.studies.includes(s.studyInstanceUID) : false }), ` ${date(s.studyDate)} ${(s.modalities || []).join(',')} ${s.studyDescription || ''}`))
      : h('p', { class: 'muted' }, t('studies.none')));
  const docs = parent || newPatient ? [] : (await api('GET', `/api/patients/record?${q}`).catch(() => ({ documents: [] }))).documents;
  const docBoxes = docs.length ? h('fieldset', { id: 'ref-documents' }, h('legend', {}, t('ref.documents')),
    docs.map((d) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: d.id, checked: existing ? existing.documents.includes(d.id) : false }),
      ` ${d.title} (${t('doc.' + d.kind)}) ${d.institutionName}`))) : null;
  const form = h('form', { class: 'card', id: 'referral-form' },
    h('h1', {}, parent ? t('ref.reverse.title') : existing ? t('ref.edit.title') : t('ref.new.title')),
    h('p', {}, h('strong', { id: 'ref-patient' }, personName(src.patientName || (studies[0] && studies[0].patientName) || (known && known.name)) || ''), ` ID ${patientId}`),
    h('div', { class: 'grid2' },
      h('div', {}, ...ui.field(t('ref.kind'), kind)), h('div', {}, ...ui.field(t('ref.to'), to)),
      h('div', {}, ...ui.field(t('ref.department'), ui.input('ref-department', { value: existing ? existing.toDepartment || '' : '' }))),
      h('div', {}, ...ui.field(t('ref.doctor'), ui.input('ref-doctor', { value: existing ? existing.toDoctor || '' : '' }))),
      h('div', {}, ...ui.field(t('ref.due'), ui.input('ref-due', { type: 'date', value: existing && existing.dueAt ? existing.dueAt.slice(0, 10) : '' }))),
      h('div', {}, ...ui.field(t('ref.priority'), h('select', { id: 'ref-priority' }, ['routine', 'urgent', 'stat'].map((p) => h('option', {
        value: p, selected: existing && existing.priority === p }, t('ref.priority.' + p))))))),
    parent ? null : studyBoxes, docBoxes,
    h('div', {}, ...ui.field(t('ref.printed'), h('input', { type: 'file', id: 'ref-file', accept: 'application/pdf,image/jpeg,image/png' })),
      existing && existing.letter.attachmentKey ? h('p', { class: 'muted' }, t('ref.printed.has')) : ''),
    newPatient ? h('p', { class: 'muted', id: 'ref-new-patient' }, t('pick.new.saving')) : null,
    newPatient ? null : h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', id: 'ref-pull', onclick: () => busy(form, async () => {
      const rec = await api('GET', `/api/patients/record?${q}`);
      // An empty record is not "no allergies": nothing is written then, and the doctor is told so.
      if (rec.allergies.length) form.querySelector('#ref-allergies').value = allergyText(rec.allergies);
      if (rec.medications.length) form.querySelector('#ref-medications').value = medicationText(rec.medications);
      const missing = [!rec.allergies.length && t('record.allergies'), !rec.medications.length && t('record.medications')].filter(Boolean);
      ui.message(missing.length ? t('ref.pull.none', { what: missing.join('・') }) : t('ref.pull.done'), 'info');
    }) }, t('ref.pull'))),
    ...letterFields(h, parent ? ['purpose', 'diagnosis', 'course', 'testResults', 'medications', 'allergies', 'followUp', 'remarks'] : sections, letter, 'ref'),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', id: 'ref-save', class: 'secondary' }, t('ref.save')),
      h('button', { type: 'button', id: 'ref-send', onclick: () => submit(true) }, t('ref.send'))));
  const keys = parent ? ['purpose', 'diagnosis', 'course', 'testResults', 'medications', 'allergies', 'followUp', 'remarks'] : sections;
  const submit = (send) => busy(form, async () => {
    const body = { kind: parent ? 'reverse' : kind.value, issuer, patientId, toInstitution: to.value, toDepartment: form.querySelector('#ref-department').value.trim(),
      toDoctor: form.querySelector('#ref-doctor').value.trim(), dueDate: form.querySelector('#ref-due').value, priority: form.querySelector('#ref-priority').value,
      studies: [...form.querySelectorAll('#ref-studies input:checked')].map((c) => c.value),
      documents: [...form.querySelectorAll('#ref-documents input:checked')].map((c) => +c.value), letter: readLetter(form, keys, 'ref') };
    if (newPatient && !existing) body.newPatient = { name: newPatient.name, kana: newPatient.kana, birthDate: newPatient.birthDate, sex: newPatient.sex };
    if (!body.toInstitution) throw new Error(t('ref.choose.error'));
    let r;
    if (existing) r = await api('PUT', `/api/referrals/${existing.id}`, body);
    else if (parent) r = await api('POST', `/api/referrals/${parent.id}/reverse`, body);
    else r = await api('POST', '/api/referrals', body);
    existing = r;
    const file = form.querySelector('#ref-file').files[0];
    if (file) r = await ui.sendFile('PUT', `/api/referrals/${r.id}/attachment`, file);
    if (send) {
      try { r = await api('POST', `/api/referrals/${r.id}/send`); } catch (e) {
        if (e.code === 'consent-required') throw new Error(t('share.consent'));
        throw e;
      }
    }
    ui.route(`#/referral/${r.id}`, send ? t('ref.sent') : t('ref.saved'));
  });
  form.addEventListener('submit', (ev) => { ev.preventDefault(); submit(false); });
  ui.show(form);
}

// correctionForm writes a corrected version of a sent letter; the earlier versions stay as they were.
export async function correctionForm(ui, r) {
  const { h, api, busy } = ui;
  const form = h('form', { class: 'card', id: 'correction-form' }, h('h1', {}, t('ref.correct.title')),
    h('p', { class: 'muted' }, t('ref.correct.hint', { n: r.version + 1 })),
    ...letterFields(h, sections, r.letter, 'cor'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'cor-send' }, t('ref.correct.send'))));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); busy(form, async () => {
    try {
      await api('POST', `/api/referrals/${r.id}/versions`, readLetter(form, sections, 'cor'));
    } catch (e) {
      // The referral ended while the correction was being written (a colleague cancelled it, the receiver declined
      // it): the server refuses (409); say why in the doctor's language.
      if (e.status !== 409) throw e;
      const now = await api('GET', `/api/referrals/${r.id}`);
      if (!['cancelled', 'declined'].includes(now.status)) throw e;
      throw new Error(t('ref.correct.ended.' + now.status));
    }
    ui.route(`#/referral/${r.id}`, t('ref.correct.done'));
  }); });
  ui.show(form);
}

// viewerHref opens a study in the viewer from referral id, which then offers the way back to it; keys (a reading
// request being reported) also lets the radiologist mark key images for the report.
const viewerHref = (uid, id, keys) => `#/viewer/${encodeURIComponent(uid)}?${keys ? 'referral' : 'from'}=${encodeURIComponent(id)}`;

// keyThumb shows one key image small, opening the viewer on its study.
const keyThumb = (h, id) => (k) => h('a', { class: 'key-image', href: viewerHref(k.study, id, false) },
  h('img', { class: 'thumb', alt: '', loading: 'lazy',
    src: `/dicomweb/studies/${encodeURIComponent(k.study)}/series/${encodeURIComponent(k.series)}/instances/${encodeURIComponent(k.instance)}/frames/${k.frame || 1}/rendered?viewport=128,128` }));

// ---- one referral ----

function letterView(h, l, keys, id) {
  const rows = keys.filter((k) => l[k]).map((k) => h('div', { class: 'letter-section' }, h('h3', {}, t('letter.' + k)), h('p', { class: 'pre', 'data-section': k }, l[k])));
  return h('div', { class: 'letter', id }, rows.length ? rows : h('p', { class: 'muted' }, t('letter.empty')));
}

export async function referralPage(ui, id) {
  const { h, api, busy } = ui;
  let r = await api('GET', `/api/referrals/${id}`);
  // Opening a referral one received is the step "received": the sender sees that it was read.
  if (r.direction === 'in' && r.status === 'sent') {
    try { r = await api('POST', `/api/referrals/${id}/receive`); } catch (e) { r = await api('GET', `/api/referrals/${id}`); }
  }
  const insts = await ui.institutionList();
  const role = ui.me().user.role;
  const doctor = role === 'physician' || role === 'radiologist';
  const act = (action, body) => async () => {
    try {
      await api('POST', `/api/referrals/${id}/${action}`, body ? body() : {});
      ui.message(t('ref.done.' + action), 'info');
    } catch (e) { ui.message(e.message); }
    ui.render();
  };
  const actions = h('div', { class: 'card', id: 'referral-actions' });
  if (r.direction === 'in' && r.status === 'received') {
    const day = ui.input('ref-appointment', { type: 'date' });
    const reason = h('textarea', { id: 'ref-reason', rows: 2 });
    actions.append(h('h2', {}, t('ref.answer')),
      h('div', { class: 'grid2' },
        h('div', {}, ...ui.field(t('ref.appointment'), day), h('button', { id: 'ref-accept', onclick: () => {
          if (!day.value) { ui.message(t('ref.appointment.error')); return; }
          act('accept', () => ({ appointment: day.value }))();
        } }, t('ref.accept'))),
        h('div', {}, ...ui.field(t('ref.reason'), reason), h('button', { id: 'ref-decline', class: 'danger', onclick: () => {
          if (!reason.value.trim()) { ui.message(t('ref.reason.error')); return; }
          // Declining is final for the sender: ask first, naming whom and from where, as stopping a share does.
          if (!window.confirm(t('ref.decline.confirm', { from: instName(insts, r.fromInstitution, r.fromName), kind: t('ref.kind.' + r.kind),
            patient: [personName(r.patientName), `ID ${r.patientId}`].filter(Boolean).join(' ') }))) return;
          act('decline', () => ({ reason: reason.value.trim() }))();
        } }, t('ref.decline')))));
  }
  if (r.direction === 'in' && (r.status === 'accepted' || (r.status === 'received' && r.kind === 'reading')) && doctor) {
    const keys = r.kind === 'reading' ? ['findings', 'impression'] : replySections;
    const store = ui.keyImageStore(id);
    const marked = r.kind === 'reading' ? store.list() : [];
    const f = h('form', { id: 'reply-form' }, h('h2', {}, r.kind === 'reading' ? t('ref.report') : t('ref.reply')), ...letterFields(h, keys, {}, 'reply'),
      r.kind === 'reading' ? h('div', { id: 'key-images' }, h('h3', {}, t('ref.keyimages')), marked.length ? marked.map(keyThumb(h, id))
        : h('p', { class: 'muted' }, t('ref.keyimages.none'))) : '',
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'reply-send' }, t('ref.reply.send'))));
    f.addEventListener('submit', (ev) => { ev.preventDefault(); busy(f, async () => {
      const reply = readLetter(f, keys, 'reply');
      if (marked.length) reply.keyImages = marked;
      await api('POST', `/api/referrals/${id}/complete`, { reply });
      store.clear();
      ui.message(t('ref.done.complete'), 'info');
      ui.render();
    }); });
    actions.append(f);
  }
  if (r.direction === 'in' && ['accepted', 'completed'].includes(r.status) && r.kind === 'referral') {
    actions.append(h('div', { class: 'actions' }, h('a', { class: 'button secondary', id: 'ref-reverse', href: `#/referral/${id}/reverse` }, t('ref.reverse'))));
  }
  if (r.direction === 'out' && r.status === 'draft') {
    actions.append(h('div', { class: 'actions' }, h('a', { class: 'button', id: 'ref-edit', href: `#/referral/${id}/edit` }, t('ref.edit'))));
  }
  // A referral that ended without the receiver taking the patient takes no correction (the server refuses it).
  if (r.direction === 'out' && !['draft', 'cancelled', 'declined'].includes(r.status)) {
    actions.append(h('div', { class: 'actions' }, h('a', { class: 'button secondary', id: 'ref-correct', href: `#/referral/${id}/correct` }, t('ref.correct'))));
  }
  if (r.direction === 'out' && ['draft', 'sent', 'received'].includes(r.status)) {
    actions.append(h('div', { class: 'actions' }, h('button', { class: 'secondary', id: 'ref-cancel', onclick: () => {
      if (window.confirm(t('ref.cancel.confirm'))) act('cancel', () => ({ reason: '' }))();
    } }, t('ref.cancel'))));
  }
  const who = (x) => instName(insts, x);
  const timeline = h('ol', { class: 'timeline', id: 'referral-timeline' }, (r.events || []).map((e) => h('li', { 'data-status': e.status },
    h('strong', {}, t('ref.status.' + e.status)), ' ', date(e.at, true), h('div', { class: 'muted' }, `${e.by}・${who(e.institution)}`, e.note ? ` ・ ${/^\d{4}-\d{2}-\d{2}$/.test(e.note) ? date(e.note) : e.note}` : ''))));
  // Each attached study by date, modality and description (its UID only if the caller may no longer see it).
  const about = await Promise.all(r.studies.map((uid) => api('GET', `/api/studies?limit=1&studyUID=${encodeURIComponent(uid)}&institution=${encodeURIComponent(r.fromInstitution)}`)
    .then((l) => l[0]).catch(() => null)));
  const studies = r.studies.length ? h('ul', { id: 'referral-studies', 'data-uids': r.studies.join(' ') }, r.studies.map((uid, i) => h('li', {},
    h('a', { class: 'button view', href: viewerHref(uid, id, r.kind === 'reading' && r.direction === 'in') }, t('study.view')), ' ',
    about[i] ? `${date(about[i].studyDate)} ${(about[i].modalities || []).join(',')} ${about[i].studyDescription || ''}` : h('span', { class: 'muted' }, uid))))
    : h('p', { class: 'muted' }, t('ref.nostudies'));
  // The patient's other studies the reader may see, with a warning for a recent exam like an attached one.
  const related = (await api('GET', `/api/referrals/${id}/related`).catch(() => [])).filter((s) => !s.attached);
  const similar = related.filter((s) => s.similar);
  const relatedCard = related.length ? h('div', { class: 'card', id: 'related' }, h('h2', {}, t('ref.related')),
    similar.length ? h('p', { class: 'warning', id: 'similar-warning' }, t('ref.similar', { days: 90 })) : '',
    h('ul', {}, related.map((s) => h('li', { class: s.similar ? 'similar' : '' },
      h('a', { class: 'button view', href: viewerHref(s.studyInstanceUID, id, false) }, t('study.view')), ' ',
      `${date(s.studyDate)} ${s.modalities.join(',')} ${s.bodyParts.join(',')} ${s.studyDescription || ''}`,
      h('span', { class: 'muted' }, ` ・ ${s.institutionName}`), s.similar ? h('strong', { class: 'danger-text' }, ` ${t('ref.similar.mark')}`) : '')))) : '';
  ui.show(
    h('h1', { 'data-referral-state': referralState(r) }, t('ref.kind.' + r.kind), ' ', statusBadge(h, r)),
    h('p', { class: 'lead' }, h('strong', { id: 'referral-patient' }, personName(r.patientName) || r.patientId), ` ID ${r.patientId}`,
      r.patientBirthDate ? ` ・ ${date(r.patientBirthDate)}` : ''),
    h('p', {}, `${who(r.fromInstitution)}(${r.fromUser})→ ${who(r.toInstitution)} ${r.toDepartment || ''} ${r.toDoctor || ''}`,
      r.appointment ? h('strong', { id: 'referral-appointment' }, ` ・ ${t('ref.appointment')} ${date(r.appointment)}`) : '',
      r.declineReason ? h('div', { class: 'warning' }, t('ref.declined.because'), ' ', r.declineReason) : ''),
    actions.childNodes.length ? actions : '',
    h('div', { class: 'card' }, h('h2', {}, t('ref.letter'), r.version > 1 ? ` (${t('ref.version', { n: r.version })})` : ''),
      r.status !== 'draft' ? h('div', { class: 'actions' }, h('a', { class: 'button secondary', id: 'print-letter', href: `/api/referrals/${id}/letter.pdf`, target: '_blank', rel: 'noopener' }, t('ref.print')),
        h('a', { class: 'button secondary', id: 'letter-fhir', href: `/api/referrals/${id}/letter.fhir.json`, download: `referral-${id}.fhir.json` }, t('ref.fhir'))) : '',
      r.version > 1 ? h('p', { id: 'letter-versions' }, t('ref.versions'), ' ', [...Array(r.version - 1).keys()].map((k) => [h('a', {
        href: `/api/referrals/${id}/letter.pdf?version=${k + 1}`, target: '_blank', rel: 'noopener' }, t('ref.version', { n: k + 1 })), ' '])) : '',
      r.letter.attachmentKey ? h('p', {}, h('a', { class: 'button', id: 'printed-letter', href: `/api/referrals/${id}/attachment`, target: '_blank', rel: 'noopener' }, t('ref.printed.open'))) : '',
      letterView(h, r.letter, sections.concat(['followUp']), 'referral-letter')),
    r.reply && r.reply.keyImages && r.reply.keyImages.length ? h('div', { class: 'card', id: 'report-key-images' }, h('h2', {}, t('ref.keyimages')),
      r.reply.keyImages.map(keyThumb(h, id))) : '',
    r.reply ? h('div', { class: 'card' }, h('h2', {}, r.kind === 'reading' ? t('ref.report') : t('ref.reply')),
      h('div', { class: 'actions' }, h('a', { class: 'button secondary', id: 'print-reply', href: `/api/referrals/${id}/letter.pdf?reply=1`, target: '_blank', rel: 'noopener' }, t('ref.print'))),
      letterView(h, r.reply, ['diagnosis', 'findings', 'impression', 'course', 'testResults', 'followUp', 'remarks'], 'referral-reply')) : '',
    h('div', { class: 'card' }, h('h2', {}, t('ref.attached')), studies,
      r.documents.length ? h('ul', { id: 'referral-documents' }, r.documents.map((d) => h('li', {}, h('a', { href: `/api/documents/${d}`, target: '_blank', rel: 'noopener' }, t('ref.document', { n: d }))))) : '',
      h('a', { href: `#/patient/${encodeURIComponent(r.patientInstitution)}/${encodeURIComponent(r.issuer)}/${encodeURIComponent(r.patientId)}` }, t('ref.record'))),
    relatedCard,
    h('div', { class: 'card' }, h('h2', {}, t('ref.history')), timeline));
}

// referralState is what a referral's page shows of it: when a live update brings the same state, the page (and
// what the user is about to click on it) is left alone.
export function referralState(r) {
  return [r.status, r.version, (r.events || []).length, r.reply ? 1 : 0, r.appointment || ''].join(':');
}

// ---- the record panel of the patient page ----

export async function recordPanel(ui, institution, issuer, patientId, own) {
  const { h, api, busy } = ui;
  const q = `institution=${encodeURIComponent(institution)}&issuer=${encodeURIComponent(issuer)}&patientId=${encodeURIComponent(patientId)}`;
  let rec;
  try { rec = await api('GET', `/api/patients/record?${q}`); } catch (e) { return h('p', { class: 'muted' }, e.message); }
  const source = (f) => h('div', { class: 'muted source' }, `${f.institutionName}・${f.author}・${date(f.recordedAt)}`);
  const list = (items, id, fmt) => (items.length ? h('ul', { class: 'facts', id }, items.map((f) => h('li', {}, fmt(f), source(f)))) : h('p', { class: 'muted', id }, t('record.none')));
  const role = ui.me().user.role;
  const mayWrite = ['physician', 'radiologist', 'nurse', 'clerk'].includes(role);
  const addAllergy = h('form', { class: 'inline', id: 'allergy-form' },
    h('select', { id: 'allergy-category', 'aria-label': t('record.category') }, ['drug', 'food', 'other'].map((c) => h('option', { value: c }, t('allergy.' + c)))),
    ui.input('allergy-substance', { placeholder: t('record.substance'), 'aria-label': t('record.substance'), required: true }),
    ui.input('allergy-reaction', { placeholder: t('record.reaction'), 'aria-label': t('record.reaction') }),
    h('select', { id: 'allergy-severity', 'aria-label': t('record.severity') }, ['', 'mild', 'moderate', 'severe'].map((s) => h('option', { value: s }, s ? t('severity.' + s) : t('record.severity')))),
    h('button', { type: 'submit' }, t('record.add')));
  addAllergy.addEventListener('submit', (ev) => { ev.preventDefault(); busy(addAllergy, async () => {
    await api('POST', `/api/patients/record?${q}`, { allergies: [{ category: addAllergy.querySelector('#allergy-category').value,
      substance: addAllergy.querySelector('#allergy-substance').value.trim(), reaction: addAllergy.querySelector('#allergy-reaction').value.trim(),
      severity: addAllergy.querySelector('#allergy-severity').value }] });
    ui.render();
  }); });
  const addMed = h('form', { class: 'inline', id: 'medication-form' },
    ui.input('med-drug', { placeholder: t('record.drug'), 'aria-label': t('record.drug'), required: true }),
    ui.input('med-dose', { placeholder: t('record.dose'), 'aria-label': t('record.dose') }),
    ui.input('med-route', { placeholder: t('record.route'), 'aria-label': t('record.route') }),
    ui.input('med-frequency', { placeholder: t('record.frequency'), 'aria-label': t('record.frequency') }),
    ui.input('med-start', { type: 'date', 'aria-label': t('record.start'), title: t('record.start') }),
    h('button', { type: 'submit' }, t('record.add')));
  addMed.addEventListener('submit', (ev) => { ev.preventDefault(); busy(addMed, async () => {
    await api('POST', `/api/patients/record?${q}`, { medications: [{ drug: addMed.querySelector('#med-drug').value.trim(),
      dose: addMed.querySelector('#med-dose').value.trim(), route: addMed.querySelector('#med-route').value.trim(),
      frequency: addMed.querySelector('#med-frequency').value.trim(), start: addMed.querySelector('#med-start').value }] });
    ui.render();
  }); });
  const addCond = h('form', { class: 'inline', id: 'condition-form' },
    ui.input('cond-name', { placeholder: t('record.condition'), 'aria-label': t('record.condition'), required: true }),
    h('label', { class: 'inline' }, h('input', { type: 'checkbox', id: 'cond-suspected' }), ' ', t('record.suspected')),
    h('button', { type: 'submit' }, t('record.add')));
  addCond.addEventListener('submit', (ev) => { ev.preventDefault(); busy(addCond, async () => {
    await api('POST', `/api/patients/record?${q}`, { conditions: [{ name: addCond.querySelector('#cond-name').value.trim(),
      suspected: addCond.querySelector('#cond-suspected').checked }] });
    ui.render();
  }); });
  const addDoc = h('form', { class: 'inline', id: 'document-form' },
    h('select', { id: 'doc-kind', 'aria-label': t('record.doc.kind') }, ['discharge-summary', 'referral-letter', 'other'].map((k) => h('option', { value: k }, t('doc.' + k)))),
    ui.input('doc-title', { placeholder: t('record.doc.title'), 'aria-label': t('record.doc.title') }),
    h('input', { type: 'file', id: 'doc-file', accept: 'application/pdf,image/jpeg,image/png,text/plain', required: true, 'aria-label': t('record.doc.file') }),
    h('button', { type: 'submit' }, t('record.add')));
  addDoc.addEventListener('submit', (ev) => { ev.preventDefault(); busy(addDoc, async () => {
    const file = addDoc.querySelector('#doc-file').files[0];
    const kind = addDoc.querySelector('#doc-kind').value;
    const title = addDoc.querySelector('#doc-title').value.trim() || t('doc.' + kind);
    await ui.sendFile('POST', `/api/patients/documents?${q}&kind=${encodeURIComponent(kind)}&title=${encodeURIComponent(title)}`, file);
    ui.render();
  }); });
  // FHIR: export what the reader sees; import an EMR's file (all or nothing, with the problems in words).
  const fhirFile = h('input', { type: 'file', id: 'fhir-file', accept: '.json,application/json,application/fhir+json', 'aria-label': t('record.fhir.import') });
  const importFHIR = (path, then) => busy(fhirBox, async () => {
    const file = fhirFile.files[0];
    if (!file) throw new Error(t('record.fhir.choose'));
    return then(await ui.sendFile('POST', path, new File([file], file.name, { type: 'application/fhir+json' })));
  });
  const fhirBox = h('div', { class: 'actions', id: 'fhir' },
    h('a', { class: 'button secondary', id: 'fhir-export', href: `/api/patients/record/fhir?${q}`, download: 'record.fhir.json' }, t('record.fhir.export')),
    mayWrite ? [fhirFile,
      h('button', { type: 'button', class: 'secondary', id: 'fhir-import', onclick: () => importFHIR(`/api/patients/record/fhir?${q}`, () => { ui.message(t('record.fhir.done'), 'info'); ui.render(); }) }, t('record.fhir.import')),
      own ? h('button', { type: 'button', class: 'secondary', id: 'fhir-letter', onclick: () => importFHIR(`/api/referrals/import?${q}`, (r) => ui.route(`#/referral/${r.id}/edit`)) }, t('record.fhir.letter')) : ''] : '');
  return h('section', { class: 'card record', id: 'record' },
    h('h2', {}, t('record.title')), fhirBox,
    own ? h('div', { class: 'actions' }, h('a', { class: 'button', id: 'write-referral',
      href: `#/referral/new/${encodeURIComponent(issuer)}/${encodeURIComponent(patientId)}` }, t('ref.write')),
    h('a', { class: 'button danger', id: 'announce-transfer', href: `#/emergency/new/${encodeURIComponent(issuer)}/${encodeURIComponent(patientId)}` }, t('em.announce'))) : '',
    h('h3', {}, t('record.allergies')), list(rec.allergies, 'allergies', (a) => [h('strong', { class: a.severity === 'severe' ? 'danger-text' : '' }, a.substance),
      ` ${t('allergy.' + a.category)}`, a.reaction ? ` ・ ${a.reaction}` : '', a.severity ? ` ・ ${t('severity.' + a.severity)}` : '']),
    mayWrite ? addAllergy : '',
    h('h3', {}, t('record.medications')), list(rec.medications, 'medications', (m) => [h('strong', {}, m.drug), ' ', [m.dose, m.route, m.frequency].filter(Boolean).join(' '),
      m.start ? ` ・ ${t('record.start')} ${date(m.start)}` : '', m.prescribedBy ? ` ・ ${t('record.prescriber')} ${m.prescribedBy}` : '']),
    mayWrite ? addMed : '',
    h('h3', {}, t('record.conditions')), list(rec.conditions, 'conditions', (c) => [h('strong', {}, c.name), c.suspected ? ` (${t('record.suspected')})` : '']),
    mayWrite ? addCond : '',
    h('h3', {}, t('record.documents')), list(rec.documents, 'documents', (d) => [h('a', { href: `/api/documents/${d.id}`, target: '_blank', rel: 'noopener' }, d.title),
      ` ${t('doc.' + d.kind)}`, d.date ? ` ・ ${date(d.date)}` : '']),
    mayWrite ? addDoc : '');
}
