// Deleting and the trash (ゴミ箱): an institution admin or a radiologist deletes a study sent by mistake (a CD of
// the wrong patient, a wrong patient ID); it stays in the trash, restorable, for the trash period, and can be
// removed at once when it is to be sent again corrected (its UID would be refused while its wrong copy waits).
import { t, date, personName } from './i18n.js';

// mayDelete says whether the user manages images (the access layer's rule for deleting and restoring).
export function mayDelete(me) {
  return ['institution-admin', 'radiologist'].includes(me.user.role);
}

// deleteButton moves one of the institution's own studies to the trash.
export function deleteButton(ui, s) {
  return ui.h('button', { type: 'button', class: 'danger delete', 'data-delete': s.studyInstanceUID, onclick: async () => {
    if (!window.confirm(t('trash.delete.confirm', { name: personName(s.patientName) || s.patientId, date: date(s.studyDate) }))) return;
    try {
      await ui.api('DELETE', `/dicomweb/studies/${encodeURIComponent(s.studyInstanceUID)}`);
      ui.message(t('trash.deleted'), 'info');
      ui.render();
    } catch (e) { ui.message(e.message); }
  } }, t('trash.delete'));
}

export async function trashPage(ui) {
  const { h, api } = ui;
  const list = await api('GET', '/api/trash');
  const path = (e) => `/api/trash/studies/${encodeURIComponent(e.studyInstanceUID)}` +
    (e.seriesInstanceUID ? `/series/${encodeURIComponent(e.seriesInstanceUID)}` : '') +
    (e.sopInstanceUID ? `/instances/${encodeURIComponent(e.sopInstanceUID)}` : '');
  const act = (fn) => async () => { try { await fn(); } catch (err) { ui.message(err.message); } };
  const rows = list.map((e) => h('tr', { 'data-study': e.studyInstanceUID },
    h('td', {}, date(e.deletedAt, true)),
    h('td', {}, h('strong', {}, personName(e.patientName) || ''), h('div', { class: 'muted' }, `ID ${e.patientID}`)),
    h('td', {}, e.sopInstanceUID ? t('trash.what.instance') : e.seriesInstanceUID ? t('trash.what.series') : t('trash.what.study'),
      e.description ? h('div', { class: 'muted' }, e.description) : ''),
    h('td', {}, date(e.purgeAfter)),
    h('td', {}, h('button', { type: 'button', class: 'secondary restore', onclick: act(async () => {
      await api('POST', path(e) + '/restore', {});
      ui.message(t('trash.restored'), 'info');
      ui.render();
    }) }, t('trash.restore')), ' ',
    e.seriesInstanceUID ? '' : h('button', { type: 'button', class: 'danger purge', onclick: act(async () => {
      if (!window.confirm(t('trash.purge.confirm'))) return;
      await api('DELETE', path(e));
      ui.message(t('trash.purged'), 'info');
      ui.render();
    }) }, t('trash.purge')))));
  ui.show(h('h1', {}, t('trash.title')), h('p', { class: 'muted' }, t('trash.hint')),
    list.length ? h('table', { id: 'trash' }, h('thead', {}, h('tr', {}, ['trash.when', 'trash.patient', 'trash.what', 'trash.until', 'acct.actions'].map((k) => h('th', {}, t(k))))),
      h('tbody', {}, rows)) : h('p', { id: 'trash-empty' }, t('trash.empty')));
}
