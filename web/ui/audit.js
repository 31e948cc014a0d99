// What an audit event says, in the reader's language. The free-text detail is written in English into the
// tamper-evident chain (it is hashed, so it stays as it was written); the description shown is built from the event's
// structured fields (action, outcome, purpose, patient, study) with the app's own labels, and the recorded text
// follows it in small type, because it is the record.
import { t, date } from './i18n.js';

// auditDescription describes e (an event of /api/audit or /api/alerts/{id}) in a sentence, e.g. "画像を閲覧（失敗）・
// 患者 ID P1・検査 …1234.5・目的 紹介".
export function auditDescription(e) {
  const what = label('action.', e.action);
  const parts = [e.outcome === 'failure' ? t('audit.desc.failed', { what }) : what];
  if (e.patientId) parts.push(t('audit.desc.patient', { id: e.patientId }));
  if (e.study) parts.push(t('audit.desc.study', { uid: e.study.length > 12 ? '…' + e.study.slice(-10) : e.study }));
  if (e.purpose) parts.push(t('audit.desc.purpose', { purpose: label('purpose.', e.purpose) }));
  return parts.join(t('audit.desc.sep'));
}

// label is the app's word for a stored code (an action, a purpose), or the code itself when the app has none: a newer
// server's code reads as itself, not as an i18n key.
function label(prefix, code) {
  const s = t(prefix + code);
  return s === prefix + code ? code : s;
}

// auditDetailCell is the table cell of an event's detail: the description, and under it the recorded text (its full
// text also as the tooltip, and the study's full UID on the description).
export function auditDetailCell(h, e) {
  return h('td', { class: 'audit-detail' },
    h('div', { class: 'audit-desc', title: e.study || '' }, auditDescription(e)),
    e.detail ? h('div', { class: 'muted audit-original', title: e.detail }, t('audit.desc.original'), ' ', e.detail) : '');
}

// auditTimeCell is the table cell of an event's time in the compact form the gateways' status page uses, 2026-11-28
// 09:32 (local time), the same in both languages, on one line (app.css), with the long form as its tooltip. The long
// form ("2026年11月28日 09:32") wrapped over two or three lines in the narrow column beside the description.
export function auditTimeCell(h, e) {
  const d = new Date(e.time);
  if (isNaN(d)) return h('td', { class: 'audit-time' }, e.time || '');
  const p = (n) => String(n).padStart(2, '0');
  return h('td', { class: 'audit-time', title: date(e.time, true) },
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`);
}
