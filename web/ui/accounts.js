// The institution's accounts and API tokens, on the admin page: add a staff member (a one-time password to hand
// over; they choose their own and set up a second factor at first login), reset someone who lost their password or
// phone, disable a leaver; make a token for a gateway or a script (its secret is shown once), revoke one.
import { t, date } from './i18n.js';

const roles = ['physician', 'radiologist', 'nurse', 'clerk', 'institution-admin'];

export async function accountCards(ui) {
  const { h, api, busy } = ui;
  const me = ui.me();
  if (!['institution-admin', 'region-admin'].includes(me.user.role)) return '';
  const [users, tokens] = await Promise.all([api('GET', '/api/admin/users'), api('GET', '/api/admin/tokens')]);
  // A one-time password or a token's secret, shown once, to copy or print now.
  const secretBox = (id, label, value) => h('div', { class: 'card secret', id }, h('p', {}, h('strong', {}, label)),
    h('p', {}, h('code', { class: 'secret-value' }, value)), h('p', { class: 'muted' }, t('acct.secret.once')));

  const userRows = users.map((u) => h('tr', { 'data-login': u.login, class: u.disabled ? 'disabled' : '' },
    h('td', {}, u.name, h('div', { class: 'muted' }, u.login)), h('td', {}, t('role.' + u.role)),
    h('td', {}, u.disabled ? t('acct.state.disabled') : u.enrolled ? t('acct.state.active') : t('acct.state.new')),
    h('td', {}, u.login === me.user.login ? h('span', { class: 'muted' }, t('acct.you')) : [
      h('button', { type: 'button', class: 'secondary reset', onclick: () => act(async () => {
        if (!window.confirm(t('acct.reset.confirm', { name: u.name }))) return;
        const r = await api('POST', `/api/admin/users/${u.id}/reset`, {});
        ui.render().then(() => document.getElementById('accounts').prepend(secretBox('reset-secret', t('acct.reset.done', { login: u.login }), r.oneTimePassword)));
      }) }, t('acct.reset')), ' ',
      h('button', { type: 'button', class: u.disabled ? 'secondary enable' : 'danger disable', onclick: () => act(async () => {
        if (!u.disabled && !window.confirm(t('acct.disable.confirm', { name: u.name }))) return;
        await api('POST', `/api/admin/users/${u.id}/disable`, { disabled: !u.disabled });
        ui.render();
      }) }, u.disabled ? t('acct.enable') : t('acct.disable'))])));
  const act = async (fn) => { try { await fn(); } catch (e) { ui.message(e.message); } };

  const login = ui.input('acct-login', { required: true, autocomplete: 'off' });
  const name = ui.input('acct-name', { required: true, autocomplete: 'off' });
  const role = h('select', { id: 'acct-role' }, roles.map((r) => h('option', { value: r }, t('role.' + r))));
  const addUser = h('form', { id: 'acct-form' }, h('div', { class: 'grid2' }, h('div', {}, ...ui.field(t('acct.name'), name)),
    h('div', {}, ...ui.field(t('acct.login'), login))), ...ui.field(t('acct.role'), role),
  h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'acct-add' }, t('acct.add'))));
  addUser.addEventListener('submit', (ev) => { ev.preventDefault(); busy(addUser, async () => {
    const r = await api('POST', '/api/admin/users', { login: login.value.trim(), name: name.value.trim(), role: role.value });
    await ui.render();
    document.getElementById('accounts').prepend(secretBox('new-secret', t('acct.added', { login: r.user.login }), r.oneTimePassword));
  }); });

  const tokenRows = tokens.map((k) => h('tr', { 'data-token': k.name, class: k.revokedAt ? 'disabled' : '' },
    h('td', {}, k.name, h('div', { class: 'muted' }, k.createdBy)), h('td', {}, k.write ? t('tok.write') : t('tok.read')),
    h('td', {}, k.revokedAt ? t('tok.revoked', { d: date(k.revokedAt, true) }) : k.lastUsed ? t('tok.used', { d: date(k.lastUsed, true) }) : t('tok.unused')),
    h('td', {}, k.revokedAt ? '' : h('button', { type: 'button', class: 'danger revoke', onclick: () => act(async () => {
      if (!window.confirm(t('tok.revoke.confirm', { name: k.name }))) return;
      await api('POST', `/api/admin/tokens/${k.id}/revoke`, {});
      ui.render();
    }) }, t('tok.revoke')))));
  const tokName = ui.input('tok-name', { required: true, placeholder: t('tok.name.hint') });
  const tokWrite = h('input', { type: 'checkbox', id: 'tok-write' });
  const addToken = h('form', { id: 'tok-form', class: 'inline' }, tokName, h('label', { class: 'inline' }, tokWrite, ' ', t('tok.write.label')),
    h('button', { type: 'submit', id: 'tok-add' }, t('tok.add')));
  addToken.addEventListener('submit', (ev) => { ev.preventDefault(); busy(addToken, async () => {
    const r = await api('POST', '/api/admin/tokens', { name: tokName.value.trim(), write: tokWrite.checked });
    await ui.render();
    document.getElementById('tokens').prepend(secretBox('token-secret', t('tok.added', { name: r.name }), r.secret));
  }); });

  const table = (id, heads, rows) => h('table', { id }, h('thead', {}, h('tr', {}, heads.map((k) => h('th', {}, t(k))))), h('tbody', {}, rows));
  return h('div', { id: 'admin-accounts' },
    h('section', { class: 'card', id: 'accounts' }, h('h2', {}, t('acct.title')), h('p', { class: 'muted' }, t('acct.hint')),
      table('account-list', ['acct.name', 'acct.role', 'acct.state', 'acct.actions'], userRows),
      h('details', {}, h('summary', {}, t('acct.new')), addUser)),
    h('section', { class: 'card', id: 'tokens' }, h('h2', {}, t('tok.title')), h('p', { class: 'muted' }, t('tok.hint')),
      tokens.length ? table('token-list', ['tok.name', 'tok.kind', 'tok.state', 'acct.actions'], tokenRows) : h('p', { class: 'muted' }, t('tok.none')),
      addToken));
}
