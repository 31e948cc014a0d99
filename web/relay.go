package web

import (
	"encoding/json"
	"log/slog"
)

// Relay carries messages between the nodes that serve one region (pgbus.Bus, over PostgreSQL LISTEN/NOTIFY). Send
// queues body for the other nodes' handlers of topic; a node does not hear its own messages.
type Relay interface {
	Send(topic string, body []byte) error
	Listen(topic string, fn func(body []byte))
}

// eventsTopic is the relay topic of live events.
const eventsTopic = "event"

// relayedEvent is what a node tells the others of a live event: the institution, the user (0: all of the
// institution's), the event and its data. It is as small as the event, far under NOTIFY's 8000 bytes.
type relayedEvent struct {
	Institution int64  `json:"institution"`
	User        int64  `json:"user,omitempty"`
	Event       string `json:"event"`
	Data        string `json:"data"`
}

// RelayedEvents are live events for several nodes: each event goes to this node's streams through the Hub and to the
// other nodes' through the relay, whose events this node's Hub delivers in turn.
type RelayedEvents struct {
	*Hub
	Relay  Relay
	Logger *slog.Logger
}

var _ Events = (*RelayedEvents)(nil)

// NewRelayedEvents returns events delivered on this node by a new Hub and relayed to and from the other nodes.
func NewRelayedEvents(relay Relay, logger *slog.Logger) *RelayedEvents {
	e := &RelayedEvents{Hub: NewHub(), Relay: relay, Logger: logger}
	relay.Listen(eventsTopic, func(body []byte) {
		var ev relayedEvent
		if json.Unmarshal(body, &ev) == nil && ev.Event != "" {
			e.Hub.PublishEvent(ev.Institution, ev.User, ev.Event, ev.Data)
		}
	})
	return e
}

// PublishEvent delivers the event here and sends it to the other nodes. A relay that fails loses the event for the
// other nodes only (logged): their pages catch up at the next event.
func (e *RelayedEvents) PublishEvent(institution, user int64, event, data string) {
	e.Hub.PublishEvent(institution, user, event, data)
	b, _ := json.Marshal(relayedEvent{Institution: institution, User: user, Event: event, Data: data})
	if err := e.Relay.Send(eventsTopic, b); err != nil && e.Logger != nil {
		e.Logger.Warn("a live event was not relayed to the other nodes", "event", event, "err", err)
	}
}
