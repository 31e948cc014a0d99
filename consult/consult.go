// Package consult runs live consults (相談): a room on one study where doctors of several institutions see the same
// series, slice, window and zoom, point and draw for each other, pass control, chat and talk. One participant drives
// at a time; what they show is the room's state, and a late joiner starts from it. Messages travel through a Hub,
// in-process here; with several nodes, Connect relays each room's messages to the same room on the other nodes
// (PostgreSQL LISTEN/NOTIFY), so that participants connected to different nodes share one room.
package consult

import (
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Message is one thing said in a room. The server sets From, FromName and At; clients set the rest.
type Message struct {
	Type string `json:"type"` // see the Type constants
	// Seq orders a room's messages (set by the room).
	Seq      int64     `json:"seq,omitempty"`
	From     string    `json:"from,omitempty"` // the sender's login
	FromName string    `json:"fromName,omitempty"`
	To       string    `json:"to,omitempty"` // grant, signal: the addressee's login
	At       time.Time `json:"at"`

	State      json.RawMessage `json:"state,omitempty"`      // state: the driver's view (series, slice, window, zoom, pan, …)
	Annotation json.RawMessage `json:"annotation,omitempty"` // annotate, pointer
	Text       string          `json:"text,omitempty"`       // chat; an error's English
	Signal     json.RawMessage `json:"signal,omitempty"`     // signal: a WebRTC offer, answer or candidate, relayed as is
	// Japanese is an error's Text in Japanese: the transport sends it as Text to a participant who reads Japanese.
	Japanese string `json:"-"`

	// In a snapshot: the room as it stands.
	Driver       string            `json:"driver,omitempty"`
	Participants []Participant     `json:"participants,omitempty"`
	Annotations  []json.RawMessage `json:"annotations,omitempty"`
	Chat         []Message         `json:"chat,omitempty"`
	ICEServers   json.RawMessage   `json:"iceServers,omitempty"`
}

// Message types.
const (
	TypeSnapshot = "snapshot" // server → a joiner: the room's state
	TypeState    = "state"    // the driver's view
	TypePointer  = "pointer"  // a laser pointer's position (not kept)
	TypeAnnotate = "annotate" // an arrow or circle (kept)
	TypeClear    = "clear"    // the annotations are cleared
	TypeChat     = "chat"
	TypeRequest  = "request-control" // a participant asks the driver for control
	TypeGrant    = "grant"           // the driver hands control to To
	TypeControl  = "control"         // server → all: Driver now drives
	TypeJoin     = "join"
	TypeLeave    = "leave"
	TypeSignal   = "signal" // WebRTC signalling, relayed to To
	TypeError    = "error"
)

// Participant is one person in a room.
type Participant struct {
	Login       string `json:"login"`
	Name        string `json:"name"`
	Institution string `json:"institution"`
}

// Hub carries a room's messages to every connection in it.
type Hub interface {
	Publish(room int64, m Message)
	Subscribe(room int64) (<-chan Message, func())
}

// LocalHub is the in-process Hub.
type LocalHub struct {
	mu   sync.Mutex
	subs map[int64]map[chan Message]bool
}

// NewLocalHub returns an empty hub.
func NewLocalHub() *LocalHub { return &LocalHub{subs: map[int64]map[chan Message]bool{}} }

// Publish sends m to every subscriber of room; a subscriber too slow to keep up loses messages rather than holding
// up the room (its client asks for a new snapshot when it notices a gap in Seq).
func (h *LocalHub) Publish(room int64, m Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[room] {
		select {
		case ch <- m:
		default:
		}
	}
}

// Subscribe returns the room's messages until the returned function is called.
func (h *LocalHub) Subscribe(room int64) (<-chan Message, func()) {
	ch := make(chan Message, 256)
	h.mu.Lock()
	if h.subs[room] == nil {
		h.subs[room] = map[chan Message]bool{}
	}
	h.subs[room][ch] = true
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[room], ch)
		if len(h.subs[room]) == 0 {
			delete(h.subs, room)
		}
		h.mu.Unlock()
	}
}

// Recorder keeps a consult's key events (joins, annotations, chat, control) with the study; nil keeps nothing.
type Recorder func(room int64, m Message)

// Rooms holds the live state of every open room.
type Rooms struct {
	Hub    Hub
	Record Recorder
	Now    func() time.Time

	mu     sync.Mutex
	rooms  map[int64]*room
	relay  Relay // set by Connect: the other nodes' rooms
	logger *slog.Logger
}

type room struct {
	seq          int64
	state        json.RawMessage
	annotations  []json.RawMessage
	chat         []Message
	driver       string
	participants []Participant // in order of joining; one entry per connection
	local        []Participant // those connected to this node
	syncing      bool          // asked the other nodes for the room, no answer yet
	since        time.Time     // when the room began here (its first participant here), or on the node it was taken from
}

// NewRooms returns rooms that talk through hub.
func NewRooms(hub Hub) *Rooms { return &Rooms{Hub: hub, Now: time.Now, rooms: map[int64]*room{}} }

// Join adds p to room id and returns the snapshot to send them first and their subscription. The first to join
// drives. leave must be called when the connection ends.
func (rs *Rooms) Join(id int64, p Participant) (snapshot Message, msgs <-chan Message, leave func()) {
	msgs, unsubscribe := rs.Hub.Subscribe(id)
	rs.mu.Lock()
	r := rs.roomLocked(id)
	ask := rs.relay != nil && len(r.local) == 0
	r.syncing = r.syncing || ask
	r.participants = append(r.participants, p)
	r.local = append(r.local, p)
	if r.since.IsZero() {
		r.since = rs.Now()
	}
	if r.driver == "" {
		r.driver = p.Login
	}
	snapshot = Message{Type: TypeSnapshot, At: rs.Now(), Seq: r.seq, State: r.state, Driver: r.driver, Participants: slices.Clone(r.participants),
		Annotations: slices.Clone(r.annotations), Chat: slices.Clone(r.chat)}
	rs.mu.Unlock()
	if ask { // the other nodes' participants, and the room as it stands if it began elsewhere
		rs.send(id, "sync", Message{})
	}
	rs.broadcast(id, Message{Type: TypeJoin, From: p.Login, FromName: p.Name, Participants: []Participant{p}}, true)
	return snapshot, msgs, func() {
		unsubscribe()
		rs.mu.Lock()
		if i := slices.IndexFunc(r.participants, func(x Participant) bool { return x.Login == p.Login }); i >= 0 {
			r.participants = slices.Delete(r.participants, i, i+1)
		}
		if i := slices.IndexFunc(r.local, func(x Participant) bool { return x.Login == p.Login }); i >= 0 {
			r.local = slices.Delete(r.local, i, i+1)
		}
		handOver := ""
		if r.driver == p.Login && !slices.ContainsFunc(r.participants, func(x Participant) bool { return x.Login == p.Login }) {
			r.driver = ""
			if len(r.participants) > 0 {
				r.driver = r.participants[0].Login
				handOver = r.driver
			}
		}
		rs.mu.Unlock()
		rs.broadcast(id, Message{Type: TypeLeave, From: p.Login, FromName: p.Name}, true)
		if handOver != "" {
			rs.broadcast(id, Message{Type: TypeControl, Driver: handOver}, true)
		}
	}
}

// broadcast stamps m with the room's next sequence number and the time, publishes it, and records it if asked.
func (rs *Rooms) broadcast(id int64, m Message, record bool) {
	rs.mu.Lock()
	r := rs.rooms[id]
	if r != nil {
		r.seq++
		m.Seq = r.seq
	}
	rs.mu.Unlock()
	m.At = rs.Now()
	rs.Hub.Publish(id, m)
	rs.send(id, "msg", m)
	if record && rs.Record != nil {
		rs.Record(id, m)
	}
}

// Handle applies what p said in room id: the driver's view becomes the room's state; only the driver grants
// control; annotations and chat are kept for late joiners; signals go to their addressee only. It returns a
// message for p alone when the request is refused.
func (rs *Rooms) Handle(id int64, p Participant, m Message) *Message {
	m.From, m.FromName = p.Login, p.Name
	rs.mu.Lock()
	r := rs.rooms[id]
	if r == nil {
		rs.mu.Unlock()
		return &Message{Type: TypeError, Text: "not in this room", Japanese: "この相談に参加していません。"}
	}
	driver := r.driver
	switch m.Type {
	case TypeState:
		if driver != p.Login {
			rs.mu.Unlock()
			return &Message{Type: TypeError, Text: "only the participant in control moves the images", Japanese: "画像を操作できるのは、操作権を持つ参加者だけです。"}
		}
		r.state = m.State
		rs.mu.Unlock()
		rs.broadcast(id, Message{Type: TypeState, From: m.From, State: m.State}, false)
	case TypePointer:
		rs.mu.Unlock()
		rs.broadcast(id, Message{Type: TypePointer, From: m.From, FromName: m.FromName, Annotation: m.Annotation}, false)
	case TypeAnnotate:
		if len(m.Annotation) > 4096 || len(r.annotations) >= 500 {
			rs.mu.Unlock()
			return &Message{Type: TypeError, Text: "too many or too large annotations", Japanese: "書き込みが多すぎるか、大きすぎます。"}
		}
		r.annotations = append(r.annotations, m.Annotation)
		rs.mu.Unlock()
		rs.broadcast(id, Message{Type: TypeAnnotate, From: m.From, FromName: m.FromName, Annotation: m.Annotation}, true)
	case TypeClear:
		r.annotations = nil
		rs.mu.Unlock()
		rs.broadcast(id, Message{Type: TypeClear, From: m.From, FromName: m.FromName}, true)
	case TypeChat:
		if m.Text == "" || len(m.Text) > 4000 {
			rs.mu.Unlock()
			return &Message{Type: TypeError, Text: "a chat message is 1 to 4,000 bytes", Japanese: "チャットのメッセージは1～4,000バイトにしてください。"}
		}
		c := Message{Type: TypeChat, From: m.From, FromName: m.FromName, Text: m.Text, At: rs.Now()}
		r.chat = append(r.chat, c)
		if len(r.chat) > 1000 {
			r.chat = r.chat[len(r.chat)-1000:]
		}
		rs.mu.Unlock()
		rs.broadcast(id, c, true)
	case TypeRequest:
		rs.mu.Unlock()
		rs.broadcast(id, Message{Type: TypeRequest, From: m.From, FromName: m.FromName, To: driver}, true)
	case TypeGrant:
		if driver != p.Login {
			rs.mu.Unlock()
			return &Message{Type: TypeError, Text: "only the participant in control hands it on", Japanese: "操作権を渡せるのは、操作権を持つ参加者だけです。"}
		}
		if !slices.ContainsFunc(r.participants, func(x Participant) bool { return x.Login == m.To }) {
			rs.mu.Unlock()
			return &Message{Type: TypeError, Text: "that person is not in the room", Japanese: "その方はこの相談に参加していません。"}
		}
		r.driver = m.To
		rs.mu.Unlock()
		rs.broadcast(id, Message{Type: TypeControl, From: m.From, FromName: m.FromName, Driver: m.To}, true)
	case TypeSignal:
		rs.mu.Unlock()
		if len(m.Signal) > 64<<10 {
			return &Message{Type: TypeError, Text: "signal too large", Japanese: "通話の接続情報が大きすぎます。"}
		}
		rs.broadcast(id, Message{Type: TypeSignal, From: m.From, To: m.To, Signal: m.Signal}, false)
	default:
		rs.mu.Unlock()
		return &Message{Type: TypeError, Text: "unknown message type", Japanese: "不明なメッセージです。"}
	}
	return nil
}
