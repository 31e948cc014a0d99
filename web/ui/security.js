// The region's security status for its administrators: each item OK, needing attention or unknown, in the server's
// own words (Japanese and English), with what to do and the users, tokens or devices concerned; the audit trail can
// be verified from here.
import { t, date, getLang } from './i18n.js';

const stateOrder = { attention: 0, unknown: 1, ok: 2 };

// securityPage shows GET /api/security/status, the items needing attention first.
export async function securityPage(ui) {
  const { h, api, show, message } = ui;
  const rep = await api('GET', '/api/security/status');
  const words = (x) => (x ? (getLang() === 'en' ? x.en : x.ja) : '');
  const items = [...rep.items].sort((a, b) => stateOrder[a.state] - stateOrder[b.state]);
  const counts = { ok: 0, attention: 0, unknown: 0 };
  for (const it of items) counts[it.state]++;
  const verify = h('button', { type: 'button', id: 'security-verify', onclick: async () => {
    verify.disabled = true;
    try {
      const v = await api('POST', '/api/security/verify', {});
      message(t(v.problems ? 'security.verify.problems' : 'security.verify.ok', { n: v.events, p: v.problems }), v.problems ? 'error' : 'info');
      await securityPage(ui);
    } catch (e) { message(e.message); verify.disabled = false; }
  } }, t('security.verify'));
  const card = (it) => h('div', { class: `card security-item security-${it.state}`, id: `security-${it.id}`, 'data-state': it.state },
    h('h2', {}, h('span', { class: `badge security-badge security-badge-${it.state}` }, t('security.state.' + it.state)), ' ', words(it.title)),
    h('p', { class: 'security-message' }, words(it.message)),
    it.todo ? h('p', { class: 'security-todo' }, h('strong', {}, t('security.todo')), ' ', words(it.todo)) : '',
    it.entries && it.entries.length ? h('table', { class: 'security-entries' },
      h('thead', {}, h('tr', {}, ['security.name', 'security.institution', 'security.detail'].map((k) => h('th', {}, t(k))))),
      h('tbody', {}, it.entries.map((e) => h('tr', {}, h('td', {}, e.name), h('td', {}, e.institution || ''),
        h('td', { class: 'muted' }, words(e.detail)))))) : '',
    it.id === 'audit-verify' ? h('div', { class: 'actions' }, verify) : '');
  show(h('h1', {}, t('security.title')), h('p', { class: 'lead' }, t('security.intro')),
    h('p', { id: 'security-summary' }, t('security.summary', { a: counts.attention, u: counts.unknown, o: counts.ok, at: date(rep.at, true) })),
    h('div', { id: 'security-items' }, items.map(card)));
}
