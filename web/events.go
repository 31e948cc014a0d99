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
// its patient; nobody learns of another institution's data. Events reach the connections of this process; several
// nodes will relay them through PostgreSQL (issue 9).

// Hub fans events out to the open streams.
type Hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]bool
	closed chan struct{}
	once   sync.Once
}

type subscriber struct {
	institution, user int64
	ch                chan live
}

// live is one server-sent event: its type ("study", "referral") and its data (a UID or a key, nothing more).
type live struct{ event, data string }

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[*subscriber]bool{}, closed: make(chan struct{})} }

// Close ends every open stream (the server is shutting down: streams would otherwise hold it up).
func (h *Hub) Close() { h.once.Do(func() { close(h.closed) }) }

// Publish tells the subscribers of an institution, or (user not 0) one user, that study changed. A slow subscriber
// misses events rather than slowing ingest; its app refreshes on the next one.
func (h *Hub) Publish(institution, user int64, study string) {
	h.publish(institution, user, live{"study", study})
}

// PublishReferral tells an institution's subscribers that one of its referrals moved on: they ask for it again
// through the audited API.
func (h *Hub) PublishReferral(institution, id int64) {
	h.publish(institution, 0, live{"referral", fmt.Sprint(id)})
}

func (h *Hub) publish(institution, user int64, ev live) {
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

// StoredHook is archive.Service.Stored for the hub: the owning institution learns of its new images.
func (h *Hub) StoredHook(inst *renkei.Instance) {
	h.Publish(inst.Institution, 0, inst.StudyInstanceUID)
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
	fl, ok := w.(http.Flusher)
	if !ok || s.Hub == nil {
		s.problem(w, r, renkei.Errorf("web.events", renkei.Unavailable, "live updates are not available here"))
		return
	}
	sub := &subscriber{institution: p.Institution, ch: make(chan live, 64)}
	if p.Kind == renkei.UserPrincipal {
		sub.user = p.ID
	}
	s.Hub.add(sub)
	defer s.Hub.remove(sub)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": renkei live updates\n\n")
	fl.Flush()
	tick := time.NewTicker(25 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.Hub.closed:
			return
		case ev := <-sub.ch:
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.event, ev.data)
			fl.Flush()
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			fl.Flush()
		}
	}
}
