package web

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"renkei"
)

// Live updates: the web app keeps one server-sent event stream open (GET /api/events) and is told "study X changed"
// when a study it may see gets new images or is shared with it; it then asks again through the normal, audited API.
// An event names only a study UID, and only to callers whose institution owns the study or who received a share of
// its patient; nobody learns of another institution's data. Events reach the connections of this process; on several
// nodes RelayedEvents relays them to the others' through PostgreSQL (issue 9).

// Events carries live updates to the open /api/events streams. Hub is the in-process one; when several nodes serve
// one region, RelayedEvents (a Hub and a Relay over PostgreSQL LISTEN/NOTIFY) takes its place.
type Events interface {
	// Publish tells the subscribers of an institution, or (user not 0) one user, that an event happened: its type
	// ("study", "referral", "link") and its data (a UID or a key, nothing more).
	PublishEvent(institution, user int64, event, data string)
	// Subscribe returns the events for one institution's user until cancel is called, or Done is closed.
	Subscribe(institution, user int64) (events <-chan Live, cancel func())
	Done() <-chan struct{}
	Close()
}

// Live is one server-sent event.
type Live struct{ Event, Data string }

var _ Events = (*Hub)(nil)

// Hub fans events out to the open streams of this process.
type Hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]bool
	closed chan struct{}
	once   sync.Once
}

type subscriber struct {
	institution, user int64
	ch                chan Live
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[*subscriber]bool{}, closed: make(chan struct{})} }

// Close ends every open stream (the server is shutting down: streams would otherwise hold it up).
func (h *Hub) Close() { h.once.Do(func() { close(h.closed) }) }

// Done is closed when the hub closes.
func (h *Hub) Done() <-chan struct{} { return h.closed }

// Subscribe registers a stream.
func (h *Hub) Subscribe(institution, user int64) (<-chan Live, func()) {
	sub := &subscriber{institution: institution, user: user, ch: make(chan Live, 64)}
	h.add(sub)
	return sub.ch, func() { h.remove(sub) }
}

// PublishEvent sends an event to its subscribers. A slow subscriber misses events rather than slowing ingest; its
// app refreshes on the next one.
func (h *Hub) PublishEvent(institution, user int64, event, data string) {
	ev := Live{event, data}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if (user != 0 && s.user != user) || (user == 0 && s.institution != institution) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
		}
	}
}

// publishStudy tells an institution, or one of its users, that a study it may see changed.
func publishStudy(e Events, institution, user int64, study string) {
	if e != nil {
		e.PublishEvent(institution, user, "study", study)
	}
}

// publishReferral tells an institution that one of its referrals moved on: its pages ask for it again through the
// audited API.
func publishReferral(e Events, institution, id int64) {
	if e != nil {
		e.PublishEvent(institution, 0, "referral", fmt.Sprint(id))
	}
}

func (h *Hub) add(s *subscriber) {
	h.mu.Lock()
	h.subs[s] = true
	h.mu.Unlock()
}

func (h *Hub) remove(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// events streams the caller's events until the client goes away, with a comment every 25 s so that proxies keep
// the connection open.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	// The response controller finds the flusher through wrappers (the request log's), which a type assertion misses.
	fl := http.NewResponseController(w)
	if s.Hub == nil {
		s.problem(w, r, renkei.Errorj("web.events", renkei.Unavailable, "ここでは画面の自動更新を使えません。", "live updates are not available here"))
		return
	}
	var user int64
	if p.Kind == renkei.UserPrincipal {
		user = p.ID
	}
	stream, cancel := s.Hub.Subscribe(p.Institution, user)
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": renkei live updates\n\n")
	if fl.Flush() != nil {
		return // this connection cannot stream
	}
	tick := time.NewTicker(25 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.Hub.Done():
			return
		case ev := <-stream:
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Event, ev.Data)
			fl.Flush()
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			fl.Flush()
		}
	}
}
