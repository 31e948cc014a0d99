// Security alerts for administrators (institution admins: their institution's; region admins: all): what the
// monitoring rules found in the audit trail, in plain words, with the events behind it, the user and the patient, and
// one-click actions: acknowledge, resolve with a note, lock the user, revoke the token.
import { t, date, getLang } from './i18n.js';
import { auditDetailCell } from './audit.js';

const severityOrder = { high: 0, medium: 1, low: 2 };

// alertsPage lists the alerts of a status filter (open and acknowledged by default), most urgent first.
export async function alertsPage(ui, query) {
  const { h, api, show } = ui;
  const params = new URLSearchParams(query);
  const filter = params.get('status') || '';
  const list = await api('GET', '/api/alerts' + (filter ? `?status=${encodeURIComponent(filter)}` : ''));
  list.sort((a, b) => (a.status === 'resolved') - (b.status === 'resolved') || severityOrder[a.severity] - severityOrder[b.severity] ||
    new Date(b.lastAt) - new Date(a.lastAt));
  const tab = (value, key) => h('a', { class: 'button' + (filter === value ? '' : ' secondary'), href: '#/alerts' + (value ? `?status=${value}` : ''),
    id: 'alerts-filter-' + (value || 'unresolved') }, t(key));
  show(h('h1', {}, t('alert.title')), h('p', { class: 'lead' }, t('alert.intro')),
    h('div', { class: 'actions' }, tab('', 'alert.filter.open'), tab('resolved', 'alert.filter.resolved'), tab('all', 'alert.filter.all')),
    list.length === 0 ? h('p', { id: 'no-alerts', class: 'lead' }, t(filter ? 'alert.none.filtered' : 'alert.none'))
      : h('div', { id: 'alerts' }, list.map((a) => alertCard(ui, a, query))));
}

function alertCard(ui, a, query) {
  const { h, api, message } = ui;
  const again = () => alertsPage(ui, query);
  const act = async (path, body, done) => {
    try {
      const res = await api('POST', `/api/alerts/${a.id}/${path}`, body);
      if (done) message(done(res), 'info'); else message('');
      await again();
    } catch (e) { message(e.message); }
  };
  const text = getLang() === 'en' && a.explanationEn ? a.explanationEn : a.explanation;
  const facts = [];
  facts.push(h('div', {}, h('strong', {}, t('alert.when')), ' ', date(a.firstAt, true), a.lastAt !== a.firstAt ? ` 〜 ${date(a.lastAt, true)}` : '',
    ` ・ ${t('alert.count', { n: a.count })}`));
  if (a.actor) facts.push(h('div', {}, h('strong', {}, t(a.actorKind === 'token' ? 'alert.token' : a.actorKind === 'ae' ? 'alert.ae' : 'alert.who')), ' ', a.actor));
  if (a.institutionName) facts.push(h('div', {}, h('strong', {}, t('alert.institution')), ' ', a.institutionName));
  if (a.source) facts.push(h('div', {}, h('strong', {}, t('alert.source')), ' ', a.source));
  if (a.patient) {
    facts.push(h('div', {}, h('strong', {}, t('alert.patient')), ' ',
      h('a', { class: 'alert-patient', href: `#/patient/${encodeURIComponent(a.patient.institution)}/${encodeURIComponent(a.patient.issuer)}/${encodeURIComponent(a.patient.id)}` },
        `ID ${a.patient.id}`), a.patient.institutionName ? ` (${a.patient.institutionName})` : ''));
  }
  const events = h('div', { class: 'alert-events' });
  const toggle = h('button', { type: 'button', class: 'secondary events-toggle', onclick: async () => {
    if (events.firstChild) { events.replaceChildren(); toggle.textContent = t('alert.events.show'); return; }
    try {
      const d = await api('GET', `/api/alerts/${a.id}`);
      events.replaceChildren(h('table', {}, h('thead', {}, h('tr', {}, ['audit.time', 'audit.actor', 'audit.action', 'audit.patient', 'alert.source', 'audit.detail']
        .map((k) => h('th', {}, t(k))))),
      h('tbody', {}, d.events.map((e) => h('tr', { 'data-seq': e.seq }, h('td', {}, date(e.time, true)), h('td', {}, e.actor),
        h('td', {}, t('action.' + e.action), e.outcome === 'failure' ? h('div', { class: 'danger-text' }, t('alert.failed')) : ''),
        h('td', {}, e.patientId || ''), h('td', {}, e.source || ''), auditDetailCell(h, e))))));
      toggle.textContent = t('alert.events.hide');
    } catch (e) { message(e.message); }
  } }, t('alert.events.show'));

  const buttons = [toggle];
  if (a.status === 'open') buttons.push(h('button', { type: 'button', class: 'ack', onclick: () => act('acknowledge', {}) }, t('alert.ack')));
  if (a.canLockUser && a.userLocked) {
    buttons.push(h('button', { type: 'button', class: 'secondary unlock', onclick: () => {
      if (window.confirm(t('alert.unlock.confirm', { who: a.actor }))) act('unlock-user', {}, (r) => t('alert.unlocked', { who: r.unlocked }));
    } }, t('alert.unlock')));
  } else if (a.status !== 'resolved' && a.canLockUser) {
    buttons.push(h('button', { type: 'button', class: 'danger lock', onclick: () => {
      if (window.confirm(t('alert.lock.confirm', { who: a.actor }))) act('lock-user', {}, (r) => t('alert.locked', { who: r.locked }));
    } }, t('alert.lock')));
  }
  if (a.status !== 'resolved' && a.canRevokeToken) {
    buttons.push(h('button', { type: 'button', class: 'danger revoke', onclick: () => {
      if (window.confirm(t('alert.revoke.confirm', { who: a.actor }))) act('revoke-token', {}, (r) => t('alert.revoked', { who: r.revoked }));
    } }, t('alert.revoke')));
  }
  let resolve = '';
  if (a.status !== 'resolved') {
    const note = h('textarea', { class: 'note', rows: 2, 'aria-label': t('alert.note'), placeholder: t('alert.note.hint') });
    resolve = h('form', { class: 'alert-resolve' }, h('label', {}, t('alert.note')), note,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'resolve' }, t('alert.resolve'))));
    resolve.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (!note.value.trim()) { message(t('alert.note.needed')); note.focus(); return; }
      act('resolve', { note: note.value }, () => t('alert.resolved'));
    });
  }
  const state = a.status === 'resolved'
    ? h('p', { class: 'alert-outcome' }, t('alert.resolved.by', { who: a.resolvedBy, date: date(a.resolvedAt, true) }), h('strong', {}, a.note))
    : a.status === 'acknowledged' ? h('p', { class: 'muted alert-outcome' }, t('alert.acked.by', { who: a.acknowledgedBy, date: date(a.acknowledgedAt, true) })) : '';
  return h('section', { class: `card alert severity-${a.severity} status-${a.status}`, 'data-alert': a.id, 'data-rule': a.rule, 'data-status': a.status },
    h('h2', {}, h('span', { class: `badge severity-${a.severity}` }, t('alert.severity.' + a.severity)), ' ', t('alert.rule.' + a.rule), ' ',
      h('span', { class: `badge alert-status status-${a.status}` }, t('alert.status.' + a.status))),
    h('p', { class: 'lead alert-text' }, text), h('div', { class: 'alert-facts' }, facts), state,
    h('div', { class: 'actions' }, buttons), resolve, events);
}
