// Live consults (相談): the same images in two places. Everyone in the room sees what the participant in control
// shows (series, slice, window, zoom, pan); arrows, circles and a laser pointer drawn by one are seen by all;
// control passes on request; a chat; voice between the browsers (WebRTC, signalled through renkei).
import { t, date } from './i18n.js';
import { viewer } from './viewer.js';

const palette = ['#ff4d4d', '#1e9bd7', '#e0a800', '#2fb344', '#c03fd0', '#ff7a1c'];
function colorOf(login) {
  let x = 0;
  for (const c of login) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  return palette[x % palette.length];
}

export async function consultsPage(ui) {
  const { h, api } = ui;
  const list = await api('GET', '/api/consults');
  ui.show(h('h1', {}, t('con.title')), h('p', { class: 'muted' }, t('con.intro')),
    list.length ? h('ul', { id: 'consults' }, list.map((c) => h('li', {}, h('a', { href: `#/consult/${c.id}` }, c.title || t('con.untitled')),
      ` ・ ${c.createdBy} ・ ${date(c.createdAt, true)} ・ ${c.members.join('、')}`))) : h('p', { id: 'consults-none' }, t('con.none')));
}

// startConsult opens a room on a study and goes there.
export async function startConsult(ui, study, title) {
  const c = await ui.api('POST', '/api/consults', { study, title });
  ui.route(`#/consult/${c.id}`);
}

export async function consultPage(ui, id) {
  const { h, api } = ui;
  // Colleagues of one's own institution are offered to choose from (a datalist: typed filter, arrow keys, click);
  // another institution's login is still typed whole.
  const [info, colleagues] = await Promise.all([api('GET', `/api/consults/${id}`), api('GET', '/api/colleagues').catch(() => [])]);
  const me = ui.me().user.login;
  const room = { driver: '', participants: [], annotations: [], pointers: new Map(), state: null, requests: [] };
  const pane = h('div', { class: 'consult-view' });
  const people = h('ul', { id: 'con-people' });
  const control = h('div', { id: 'con-control' });
  const chatList = h('ol', { id: 'con-chat', class: 'chat' });
  const chatInput = ui.input('con-say', { placeholder: t('con.say'), autocomplete: 'off' });
  const chatForm = h('form', { class: 'inline', id: 'con-chat-form' }, chatInput, h('button', { type: 'submit' }, t('con.send')));
  const invite = ui.input('con-invite', { placeholder: t('con.invite.login'), list: 'con-colleagues', autocomplete: 'off' });
  const colleagueList = h('datalist', { id: 'con-colleagues' }, colleagues.filter((c) => c.login !== me)
    .map((c) => h('option', { value: c.login, label: `${c.name || c.login}(${t('role.' + c.role)})` })));
  const inviteForm = h('form', { class: 'inline', id: 'con-invite-form' }, invite, h('button', { type: 'submit', class: 'secondary' }, t('con.invite')));
  const voice = h('button', { class: 'secondary', id: 'con-voice' }, t('con.voice'));
  const side = h('aside', { class: 'consult-side card' }, h('h2', {}, info.title || t('con.untitled')), control, people,
    h('h3', {}, t('con.chat')), chatList, chatForm, h('h3', {}, t('con.invite')), inviteForm, colleagueList, voice, h('div', { id: 'con-audio' }));
  ui.show(h('div', { class: 'consult', id: 'consult' }, pane, side));

  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/consults/${id}/ws`);
  const say = (m) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m)); };
  let v = null; // the viewer, once open
  let lastSent = '';
  let applying = false;
  let sendTimer = null;

  const render = () => {
    pane.dataset.driver = room.driver;
    people.replaceChildren(...[...new Map(room.participants.map((p) => [p.login, p])).values()].map((p) => h('li', {},
      h('span', { class: 'dot' }, '●'), ` ${p.name}・${p.institution}`, p.login === room.driver ? h('strong', {}, ` ${t('con.driving')}`) : '')));
    people.querySelectorAll('.dot').forEach((d, i) => { d.style.color = colorOf([...new Map(room.participants.map((p) => [p.login, p])).keys()][i]); });
    control.replaceChildren();
    if (room.driver === me) {
      control.append(h('p', { id: 'con-you-drive' }, t('con.you.drive')));
      for (const r of room.requests) {
        control.append(h('button', { class: 'con-grant', 'data-to': r, onclick: () => { say({ type: 'grant', to: r }); room.requests = room.requests.filter((x) => x !== r); render(); } },
          t('con.grant', { name: r })));
      }
    } else {
      control.append(h('button', { id: 'con-request', class: 'secondary', onclick: () => say({ type: 'request-control' }) }, t('con.request')));
    }
  };
  const overlay = () => {
    const now = Date.now();
    const pts = [...room.pointers.entries()].filter(([, p]) => p.until > now).map(([login, p]) => ({ ...p.at, kind: 'pointer', color: colorOf(login) }));
    return room.annotations.concat(pts);
  };
  const onDraw = (view) => {
    if (applying) return;
    const s = JSON.stringify(view);
    if (room.driver === me) {
      if (s === lastSent) return;
      clearTimeout(sendTimer);
      sendTimer = setTimeout(() => { lastSent = s; room.state = view; say({ type: 'state', state: view }); }, 30);
    } else if (room.state && s !== JSON.stringify(room.state)) {
      // Not in control: the view goes back to the room's (ask for control to drive).
      applyState(room.state);
    }
  };
  const applyState = async (st) => {
    if (!v || !st) return;
    applying = true;
    try { await v.setView(st); } finally { applying = false; }
    pane.dataset.slice = String(st.index);
  };
  let lastPointer = 0;
  const opts = {
    onDraw, overlay,
    onAnnotate: (a) => say({ type: 'annotate', annotation: { ...a, color: colorOf(me), by: me } }),
    onPointer: (p) => { const now = Date.now(); if (now - lastPointer > 40) { lastPointer = now; say({ type: 'pointer', annotation: p }); } },
  };

  ws.addEventListener('message', async (ev) => {
    const m = JSON.parse(ev.data);
    switch (m.type) {
      case 'snapshot':
        Object.assign(room, { driver: m.driver, participants: m.participants || [], annotations: (m.annotations || []), state: m.state || null });
        room.ice = m.iceServers || [];
        for (const c of m.chat || []) addChat(c);
        render();
        if (!v) { v = await viewer(pane, info.study, h, ui.message, opts); }
        if (room.state) await applyState(room.state);
        pane.dataset.annotations = String(room.annotations.length);
        pane.dataset.ready = 'true';
        break;
      case 'state':
        room.state = m.state;
        if (m.from !== me) await applyState(m.state);
        break;
      case 'annotate': room.annotations.push(m.annotation); pane.dataset.annotations = String(room.annotations.length); if (v) v.redraw(); break;
      case 'clear': room.annotations = []; pane.dataset.annotations = '0'; if (v) v.redraw(); break;
      case 'pointer': room.pointers.set(m.from, { at: m.annotation, until: Date.now() + 1500 }); if (v) v.redraw(); break;
      case 'chat': addChat(m); break;
      case 'request-control': if (!room.requests.includes(m.from)) room.requests.push(m.from); render(); break;
      case 'control': room.driver = m.driver; room.requests = []; render(); break;
      case 'join': room.participants.push((m.participants || [])[0] || { login: m.from, name: m.fromName, institution: '' }); render(); break;
      case 'leave': { const i = room.participants.findIndex((p) => p.login === m.from); if (i >= 0) room.participants.splice(i, 1); render(); break; }
      case 'signal': onSignal(m); break;
      case 'error': ui.message(m.text); break;
      default:
    }
  });
  ws.addEventListener('close', () => { if (pane.isConnected) ui.message(t('con.closed')); });
  const stop = setInterval(() => { if (!pane.isConnected) { clearInterval(stop); ws.close(); hangUp(); } }, 1000);

  function addChat(c) {
    chatList.append(h('li', {}, h('span', { class: 'muted' }, date(c.at, true).split(' ').pop() || ''), ' ', h('strong', {}, c.fromName || c.from), ' ', c.text));
    chatList.scrollTop = chatList.scrollHeight;
  }
  chatForm.addEventListener('submit', (ev) => { ev.preventDefault(); const text = chatInput.value.trim(); if (text) { say({ type: 'chat', text }); chatInput.value = ''; } });
  inviteForm.addEventListener('submit', (ev) => { ev.preventDefault(); ui.busy(inviteForm, async () => {
    await api('POST', `/api/consults/${id}/invite`, { login: invite.value.trim() }).catch((e) => {
      if (e.status === 404) throw new Error(t('con.invite.none', { login: invite.value.trim() }));
      throw e;
    });
    ui.message(t('con.invited', { login: invite.value.trim() }), 'info');
    invite.value = '';
  }); });

  // Voice: one peer connection per other participant, offered by whoever turns voice on.
  const peers = new Map();
  let mic = null;
  const audioBox = side.querySelector('#con-audio');
  function peer(login) {
    if (peers.has(login)) return peers.get(login);
    const pc = new RTCPeerConnection({ iceServers: room.ice || [] });
    pc.onicecandidate = (e) => { if (e.candidate) say({ type: 'signal', to: login, signal: { candidate: e.candidate.toJSON() } }); };
    pc.ontrack = (e) => { const a = h('audio', { autoplay: true, 'data-from': login }); a.srcObject = e.streams[0]; audioBox.append(a); };
    pc.onconnectionstatechange = () => { voice.dataset.state = pc.connectionState; };
    if (mic) mic.getTracks().forEach((tr) => pc.addTrack(tr, mic));
    peers.set(login, pc);
    return pc;
  }
  async function onSignal(m) {
    const pc = peer(m.from);
    const sg = m.signal || {};
    if (sg.sdp) {
      await pc.setRemoteDescription(sg.sdp);
      if (sg.sdp.type === 'offer') {
        if (!mic) pc.addTransceiver('audio', { direction: 'recvonly' });
        await pc.setLocalDescription(await pc.createAnswer());
        say({ type: 'signal', to: m.from, signal: { sdp: pc.localDescription.toJSON() } });
      }
    } else if (sg.candidate) {
      try { await pc.addIceCandidate(sg.candidate); } catch (e) { /* a late candidate */ }
    }
  }
  function hangUp() { for (const pc of peers.values()) pc.close(); peers.clear(); if (mic) mic.getTracks().forEach((tr) => tr.stop()); mic = null; }
  voice.addEventListener('click', async () => {
    if (mic) { hangUp(); voice.textContent = t('con.voice'); return; }
    try { mic = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (e) { ui.message(t('con.nomic')); return; }
    voice.textContent = t('con.voice.off');
    for (const p of new Set(room.participants.map((x) => x.login))) {
      if (p === me) continue;
      const pc = peer(p);
      mic.getTracks().forEach((tr) => { if (!pc.getSenders().some((s) => s.track === tr)) pc.addTrack(tr, mic); });
      await pc.setLocalDescription(await pc.createOffer());
      say({ type: 'signal', to: p, signal: { sdp: pc.localDescription.toJSON() } });
    }
  });
}
