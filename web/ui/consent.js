// The patient's consent to disclosure (同意): what the institution has recorded, recording a new one (a scanned 同意書,
// or the patient reading the statement and signing on the screen at the counter), and a withdrawal. Shares,
// referrals and links need one in force.
import { t, date, personName } from './i18n.js';

// consentCard is the consent section of one of the caller's institution's patients.
export async function consentCard(ui, issuer, patientId, patientName) {
  const { h, api, busy } = ui;
  const me = ui.me();
  if (!['physician', 'radiologist', 'nurse', 'clerk', 'institution-admin'].includes(me.user.role)) return '';
  const q = `issuer=${encodeURIComponent(issuer)}&patientId=${encodeURIComponent(patientId)}`;
  let list;
  try { list = await api('GET', `/api/consents?${q}`); } catch (e) { return h('p', { class: 'muted' }, e.message); }
  const insts = await ui.institutionList().catch(() => []);
  const instName = (id) => { const i = insts.find((x) => x.id === id); return i ? i.name : id; };
  const scopeText = (scope) => (scope === 'region' ? t('consent.scope.region') : scope.split(',').map(instName).join('、'));
  const active = list.filter((c) => !c.withdrawnAt);

  const rows = list.map((c) => h('li', { class: c.withdrawnAt ? 'withdrawn' : '', 'data-consent': c.id },
    h('strong', {}, c.withdrawnAt ? t('consent.withdrawn', { d: date(c.withdrawnAt) }) : t('consent.active')), ' ',
    t('consent.given', { d: date(c.givenAt) }), ' ・ ', scopeText(c.scope), ' ・ ', t('consent.method.' + c.method),
    h('div', { class: 'muted' }, t('consent.recorded', { by: c.recordedBy, d: date(c.recordedAt, true) }), c.note ? ` ・ ${c.note}` : ''),
    h('div', { class: 'actions' },
      c.hasDocument ? h('button', { type: 'button', class: 'secondary', onclick: () => showDocument(ui, c) }, t('consent.document')) : '',
      c.withdrawnAt ? '' : h('button', { type: 'button', class: 'danger withdraw', onclick: () => withdraw(ui, c) }, t('consent.withdraw')))));

  // The form: scope, date, and how the patient consented.
  const region = h('input', { type: 'radio', name: 'consent-scope', id: 'consent-scope-region', value: 'region', checked: true });
  const chosen = h('input', { type: 'radio', name: 'consent-scope', id: 'consent-scope-chosen', value: 'chosen' });
  const others = insts.filter((i) => i.id !== me.user.institution);
  const picks = h('fieldset', { id: 'consent-institutions', hidden: true }, h('legend', {}, t('consent.scope.pick')),
    others.map((i) => h('label', { class: 'inline' }, h('input', { type: 'checkbox', value: i.id }), ' ', i.name)));
  const d = new Date(); // today here, not in UTC (toISOString would say yesterday before 9:00 in Japan)
  const today = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  const given = ui.input('consent-date', { type: 'date', value: today, max: today, required: true });
  const paper = h('input', { type: 'radio', name: 'consent-method', id: 'consent-method-paper', value: 'paper' });
  const electronic = h('input', { type: 'radio', name: 'consent-method', id: 'consent-method-electronic', value: 'electronic', checked: true });
  const file = h('input', { type: 'file', id: 'consent-file', accept: 'application/pdf,image/jpeg,image/png', 'aria-label': t('consent.file') });
  const paperBox = h('div', { id: 'consent-paper', hidden: true }, ...ui.field(t('consent.file'), file));
  const signer = ui.input('consent-signer', { value: personName(patientName) || '', 'aria-label': t('consent.signer') });
  const statement = h('p', { class: 'statement', id: 'consent-statement' });
  const pad = signaturePad(h);
  const writeStatement = () => {
    const scope = region.checked ? t('consent.scope.region') : [...picks.querySelectorAll('input:checked')].map((c) => instName(c.value)).join('、') || '…';
    statement.textContent = t('consent.statement', { name: signer.value.trim() || '…', institution: me.user.institutionName, scope });
  };
  // The scope chosen shows its institutions' boxes and goes into the statement, as does the name typed.
  for (const el of [region, chosen]) el.addEventListener('change', () => { picks.hidden = !chosen.checked; writeStatement(); });
  picks.addEventListener('change', writeStatement);
  signer.addEventListener('input', writeStatement);
  writeStatement();
  const eBox = h('div', { id: 'consent-electronic' }, h('p', { class: 'muted' }, t('consent.electronic.hint')), statement,
    ...ui.field(t('consent.signer'), signer), h('label', { for: 'consent-pad' }, t('consent.sign')), pad.el,
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', id: 'consent-clear', onclick: () => pad.clear() }, t('consent.clear'))));
  const showMethod = () => { paperBox.hidden = !paper.checked; eBox.hidden = paper.checked; };
  paper.addEventListener('change', showMethod);
  electronic.addEventListener('change', showMethod);
  const note = ui.input('consent-note', { placeholder: t('consent.note'), 'aria-label': t('consent.note') });
  const form = h('form', { id: 'consent-form' },
    h('fieldset', {}, h('legend', {}, t('consent.scope')),
      h('label', { class: 'inline' }, region, ' ', t('consent.scope.region')), ' ', h('label', { class: 'inline' }, chosen, ' ', t('consent.scope.chosen')), picks),
    ...ui.field(t('consent.date'), given),
    h('fieldset', {}, h('legend', {}, t('consent.method')),
      h('label', { class: 'inline' }, electronic, ' ', t('consent.method.electronic')), ' ', h('label', { class: 'inline' }, paper, ' ', t('consent.method.paper'))),
    eBox, paperBox, note,
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'consent-submit' }, t('consent.record'))));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); busy(form, async () => {
    const scope = region.checked ? ['region'] : [...picks.querySelectorAll('input:checked')].map((c) => c.value);
    if (!scope.length) throw new Error(t('consent.scope.none'));
    const body = { issuer, patientId, scope, givenAt: given.value, method: paper.checked ? 'paper' : 'electronic', note: note.value.trim() };
    if (paper.checked) {
      const f = file.files[0];
      if (!f) throw new Error(t('consent.file.none'));
      body.document = await base64(f);
      body.documentType = f.type;
    } else {
      if (!signer.value.trim()) throw new Error(t('consent.signer.none'));
      if (pad.empty()) throw new Error(t('consent.sign.none'));
      writeStatement();
      body.signature = statement.textContent;
      body.signatureImage = pad.png();
    }
    await api('POST', '/api/consents', body);
    ui.message(t('consent.done'), 'info');
    ui.render();
  }); });

  return h('section', { class: 'card', id: 'consent' }, h('h2', {}, t('consent.title')),
    h('p', { class: active.length ? '' : 'warning', id: 'consent-state' }, active.length ? t('consent.in.force', { n: active.length }) : t('consent.none')),
    list.length ? h('ul', { id: 'consents' }, rows) : '',
    h('details', { id: 'consent-new', open: !active.length }, h('summary', {}, t('consent.new')), form));
}

async function withdraw(ui, c) {
  if (!window.confirm(t('consent.withdraw.confirm'))) return;
  try {
    await ui.api('POST', `/api/consents/${c.id}/withdraw`, {});
    ui.message(t('consent.withdraw.done'), 'info');
    ui.render();
  } catch (e) { ui.message(e.message); }
}

// showDocument opens the consent's document: a scanned form in a new tab, a signed statement with its signature.
async function showDocument(ui, c) {
  const { h } = ui;
  try {
    const r = await fetch(`/api/consents/${c.id}/document`);
    if (!r.ok) throw new Error(r.statusText);
    const type = r.headers.get('Content-Type') || '';
    const box = document.getElementById('consent-document') || h('div', { class: 'card', id: 'consent-document' });
    if (type.startsWith('application/vnd.renkei.signed-statement+json')) {
      const doc = await r.json();
      box.replaceChildren(h('h3', {}, t('consent.document')), h('p', { class: 'statement' }, doc.statement),
        h('img', { src: doc.signature, alt: t('consent.signature.alt'), class: 'signature', id: 'consent-signature' }));
    } else if (type.startsWith('text/plain')) {
      box.replaceChildren(h('h3', {}, t('consent.document')), h('p', { class: 'statement' }, await r.text()));
    } else {
      window.open(URL.createObjectURL(await r.blob()), '_blank', 'noopener');
      return;
    }
    document.getElementById('consent').append(box);
    box.scrollIntoView({ block: 'nearest' });
  } catch (e) { ui.message(e.message); }
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const fr = new FileReader();
    fr.onload = () => resolve(String(fr.result).replace(/^data:[^,]*,/, ''));
    fr.onerror = () => reject(fr.error);
    fr.readAsDataURL(file);
  });
}

// signaturePad is a canvas the patient signs on with a finger, a pen or the mouse (pointer events: touch screens and
// tablets at the counter alike).
function signaturePad(h) {
  const el = h('canvas', { id: 'consent-pad', class: 'signature-pad', width: 600, height: 200, 'aria-label': t('consent.sign') });
  const g = el.getContext('2d');
  let drawn = 0;
  let last = null;
  const at = (ev) => { const r = el.getBoundingClientRect(); return [(ev.clientX - r.left) * el.width / r.width, (ev.clientY - r.top) * el.height / r.height]; };
  const blank = () => { g.fillStyle = '#fff'; g.fillRect(0, 0, el.width, el.height); g.strokeStyle = '#bbb'; g.beginPath(); g.moveTo(20, el.height - 40); g.lineTo(el.width - 20, el.height - 40); g.stroke(); };
  blank();
  el.addEventListener('pointerdown', (ev) => { ev.preventDefault(); el.setPointerCapture(ev.pointerId); last = at(ev); });
  el.addEventListener('pointermove', (ev) => {
    if (!last) return;
    const p = at(ev);
    g.strokeStyle = '#000'; g.lineWidth = 3; g.lineCap = 'round';
    g.beginPath(); g.moveTo(...last); g.lineTo(...p); g.stroke();
    drawn += Math.hypot(p[0] - last[0], p[1] - last[1]);
    last = p;
  });
  const up = () => { last = null; };
  el.addEventListener('pointerup', up);
  el.addEventListener('pointercancel', up);
  return {
    el,
    clear: () => { drawn = 0; blank(); },
    empty: () => drawn < 30,
    png: () => el.toDataURL('image/png').replace(/^data:image\/png;base64,/, ''),
  };
}
