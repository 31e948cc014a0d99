package consult

import (
	"encoding/json"
	"log/slog"
	"slices"
)

// Relay carries messages between the nodes that serve one region (pgbus.Bus, over PostgreSQL LISTEN/NOTIFY). Send
// queues body for the other nodes' handlers of topic; a node does not hear its own messages.
type Relay interface {
	Send(topic string, body []byte) error
	Listen(topic string, fn func(body []byte))
}

// relayTopic is the relay topic of consult rooms.
const relayTopic = "consult"

// maxRelayed bounds a room's state sent to another node; older chat is left out of what exceeds it (the kept
// consult events still hold it).
const maxRelayed = 3 << 20

// relayed is what one node tells the others about a room: a message said on it (Kind "msg"); a request for the
// room as it stands, from a node whose first participant just joined (Kind "sync"); the answer of a node with
// participants of its own, which it lists (Kind "room", Msg a snapshot).
type relayed struct {
	Room int64   `json:"room"`
	Kind string  `json:"kind"`
	Msg  Message `json:"msg"`
}

// Connect shares rs's rooms with the Rooms of the other nodes through relay: every message broadcast in a room here
// is applied to the room on the other nodes (and shown to their participants), and a node whose first participant
// joins a room asks the others for its state, which they answer with their own participants, the driver, the view,
// the annotations and the chat. Call it once, before the first Join. Logger may be nil.
func (rs *Rooms) Connect(relay Relay, logger *slog.Logger) {
	if logger == nil {
		logger = slog.Default()
	}
	rs.relay, rs.logger = relay, logger
	relay.Listen(relayTopic, rs.receive)
}

// send tells the other nodes about a room.
func (rs *Rooms) send(id int64, kind string, m Message) {
	if rs.relay == nil {
		return
	}
	b, err := json.Marshal(relayed{Room: id, Kind: kind, Msg: m})
	if err == nil {
		err = rs.relay.Send(relayTopic, b)
	}
	if err != nil {
		rs.logger.Warn("a consult message was not relayed to the other nodes", "consult", id, "type", m.Type, "err", err)
	}
}

// receive applies what another node said about a room.
func (rs *Rooms) receive(body []byte) {
	var x relayed
	if json.Unmarshal(body, &x) != nil {
		return
	}
	switch x.Kind {
	case "msg":
		rs.applyRemote(x.Room, x.Msg)
	case "sync":
		rs.mu.Lock()
		r := rs.rooms[x.Room]
		if r == nil || len(r.local) == 0 {
			rs.mu.Unlock()
			return
		}
		snap := Message{Type: TypeSnapshot, At: r.since, State: r.state, Driver: r.driver, Participants: slices.Clone(r.local),
			Annotations: slices.Clone(r.annotations), Chat: slices.Clone(r.chat)}
		rs.mu.Unlock()
		for len(snap.Chat) > 0 {
			if b, _ := json.Marshal(snap); len(b) <= maxRelayed {
				break
			}
			snap.Chat = snap.Chat[len(snap.Chat)/2+1:]
		}
		rs.send(x.Room, "room", snap)
	case "room":
		rs.merge(x.Room, x.Msg)
	}
}

// roomLocked returns room id, creating it; rs.mu is held.
func (rs *Rooms) roomLocked(id int64) *room {
	r := rs.rooms[id]
	if r == nil {
		r = &room{}
		rs.rooms[id] = r
	}
	return r
}

// applyRemote applies a message broadcast on another node to the room here, as that node applied it, and shows it to
// the participants here (numbered in this node's sequence). It is not recorded again: its node recorded it.
func (rs *Rooms) applyRemote(id int64, m Message) {
	rs.mu.Lock()
	r := rs.roomLocked(id)
	switch m.Type {
	case TypeState:
		r.state = m.State
	case TypeAnnotate:
		if len(r.annotations) < 500 {
			r.annotations = append(r.annotations, m.Annotation)
		}
	case TypeClear:
		r.annotations = nil
	case TypeChat:
		r.chat = append(r.chat, m)
		if len(r.chat) > 1000 {
			r.chat = r.chat[len(r.chat)-1000:]
		}
	case TypeControl:
		r.driver = m.Driver
	case TypeJoin:
		r.participants = append(r.participants, m.Participants...)
		if r.driver == "" { // as on the joiner's node: the first in the room drives
			r.driver = m.From
		}
	case TypeLeave:
		if i := slices.IndexFunc(r.participants, func(x Participant) bool { return x.Login == m.From }); i >= 0 {
			r.participants = slices.Delete(r.participants, i, i+1)
		}
		if r.driver == m.From && !slices.ContainsFunc(r.participants, func(x Participant) bool { return x.Login == m.From }) {
			r.driver = "" // the leaver's node names the next driver, if anyone is left
		}
	}
	r.seq++
	m.Seq = r.seq
	rs.mu.Unlock()
	rs.Hub.Publish(id, m)
}

// merge takes another node's answer to a sync: its participants join the room here, and the first answer's driver,
// view, annotations and chat replace what this node knew if the answering node's room is the older (At: when its
// first participant joined; the driver's login breaks a tie). So when the first participants of two nodes join at
// once, and each node answers the other, both keep the same, older, room. The participants here get a new snapshot.
func (rs *Rooms) merge(id int64, snap Message) {
	rs.mu.Lock()
	r := rs.rooms[id]
	if r == nil || !r.syncing && len(snap.Participants) == 0 {
		rs.mu.Unlock()
		return
	}
	for _, p := range snap.Participants {
		if !slices.ContainsFunc(r.participants, func(x Participant) bool { return x.Login == p.Login }) {
			r.participants = append(r.participants, p)
		}
	}
	hadChat := len(r.chat) > 0
	if r.syncing && snap.Driver != "" {
		r.syncing = false
		if older := snap.At.Before(r.since) || snap.At.Equal(r.since) && snap.Driver < r.driver; older || r.driver == "" {
			r.driver, r.state, r.annotations, r.chat, r.since = snap.Driver, snap.State, snap.Annotations, snap.Chat, snap.At
		}
	}
	r.seq++
	out := Message{Type: TypeSnapshot, At: rs.Now(), Seq: r.seq, State: r.state, Driver: r.driver, Participants: slices.Clone(r.participants),
		Annotations: slices.Clone(r.annotations)}
	if !hadChat { // a client adds a snapshot's chat to what it shows
		out.Chat = slices.Clone(r.chat)
	}
	rs.mu.Unlock()
	rs.Hub.Publish(id, out)
}
