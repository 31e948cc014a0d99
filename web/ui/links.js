// Share links for people outside renkei, the staff's side: make a link to a patient's studies (linkDialog, from a
// study of the list), see it once with its QR code and PIN, and follow or revoke the institution's links
// (linksPage). The recipient's page is link.js.
import { t, date, personName } from './i18n.js';

// linkDialog asks for what a link to study s's patient shows (this study or all the patient's), for how long and
// for whom, makes it, and shows its URL, QR code and PIN, once.
export function linkDialog(ui, s) {
  const { h, api, busy, field, input, show } = ui;
  const f = h('form', { class: 'card', id: 'link-form' }, h('h1', {}, t('link.dialog.title')),
    h('p', {}, h('strong', {}, personName(s.patientName)), ` (ID ${s.patientId}) ・ ${date(s.studyDate)} ${s.studyDescription || ''}`),
    h('p', { class: 'muted' }, t('link.dialog.hint')),
    field(t('share.scope'), h('select', { id: 'link-scope' }, h('option', { value: 'one' }, t('share.scope.one')), h('option', { value: 'all' }, t('share.scope.all')))),
    field(t('link.days'), input('link-days', { type: 'number', min: 1, max: 30, value: 7, required: true })),
    field(t('link.note'), input('link-note', { maxlength: 500 })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'link-create' }, t('link.create')),
      h('button', { type: 'button', class: 'secondary', onclick: () => ui.render() }, t('share.cancel'))));
  f.addEventListener('submit', (ev) => { ev.preventDefault(); busy(f, async () => {
    let k;
    try {
      k = await api('POST', '/api/links', { issuer: s.issuer, patientId: s.patientId, days: +f.querySelector('#link-days').value,
        note: f.querySelector('#link-note').value, studies: f.querySelector('#link-scope').value === 'one' ? [s.studyInstanceUID] : [] });
    } catch (e) {
      if (e.code === 'consent-required') throw new Error(t('link.consent'));
      throw e;
    }
    show(created(ui, s, k));
  }); });
  show(f);
}

// created shows a new link: its QR code, URL and PIN, which renkei keeps no copy of.
function created(ui, s, k) {
  const { h } = ui;
  return h('div', { class: 'card', id: 'link-created', 'data-link': k.id }, h('h1', {}, t('link.created')),
    h('p', {}, h('strong', {}, personName(s.patientName)), ` (ID ${s.patientId}) ・ `, k.allStudies ? t('links.all') : t('links.count', { n: k.studies.length })),
    k.qr ? h('img', { class: 'qr', id: 'link-qr', src: k.qr, alt: 'QR' }) : null,
    h('p', {}, h('strong', {}, t('link.url')), h('br'), h('code', { id: 'link-url' }, k.url)),
    h('p', {}, h('strong', {}, t('link.pin.once')), h('br'), h('code', { id: 'link-pin', class: 'lead' }, k.pin)),
    h('p', {}, t('link.until', { date: date(k.expiresAt, true) })),
    h('p', { class: 'muted' }, t('link.dialog.hint')),
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => window.print() }, t('link.print')),
      h('button', { type: 'button', class: 'secondary', onclick: () => ui.route('#/links') }, t('link.list')),
      h('button', { type: 'button', class: 'secondary', onclick: () => ui.render() }, t('link.close'))));
}

// linksPage lists the institution's links, newest first, with their state, and revokes one.
export async function linksPage(ui) {
  const { h, api, show, message } = ui;
  const list = await api('GET', '/api/links');
  const state = (k) => [h('span', { class: `badge link-${k.state}` }, t('links.state.' + k.state)),
    k.failedPins > 0 && k.state !== 'revoked' ? h('div', { class: 'muted' }, t('links.failed', { n: k.failedPins })) : ''];
  const table = list.length === 0 ? h('p', { id: 'no-links' }, t('links.none')) : h('table', { id: 'links' },
    h('thead', {}, h('tr', {}, ['links.patient', 'links.studies', 'links.note', 'links.by', 'links.until', 'links.lastview', 'links.state', '']
      .map((key) => h('th', {}, key ? t(key) : '')))),
    h('tbody', {}, list.map((k) => h('tr', { 'data-link': k.id, class: k.state === 'locked' ? 'breakglass' : '' },
      h('td', {}, `No. ${k.id}`, h('div', {}, `ID ${k.patientId}`)),
      h('td', {}, k.allStudies ? t('links.all') : t('links.count', { n: k.studies.length })),
      h('td', {}, k.note || ''),
      h('td', {}, k.createdBy, h('div', { class: 'muted' }, date(k.createdAt, true))),
      h('td', {}, date(k.expiresAt, true)),
      h('td', {}, k.lastViewAt ? date(k.lastViewAt, true) : h('span', { class: 'muted' }, t('links.never'))),
      h('td', {}, state(k)),
      h('td', {}, k.state === 'active' ? h('button', { class: 'secondary revoke', onclick: async () => {
        if (!window.confirm(t('links.revoke.confirm'))) return;
        try {
          await api('POST', `/api/links/${k.id}/revoke`, {});
          message(t('links.revoked'), 'info');
          await linksPage(ui);
        } catch (e) { message(e.message); }
      } }, t('links.revoke')) : '')))));
  show(h('h1', {}, t('links.title')), h('p', { class: 'muted' }, t('link.dialog.hint')), table);
}
