package consult_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei/consult"
)

// bus is an in-process relay between the Rooms of several "nodes", with NOTIFY's guarantees: a sender's messages
// reach every other node in order, later, on one goroutine per node; never the sender.
type bus struct {
	mu    sync.Mutex
	nodes []*busNode
}

type busNode struct {
	b    *bus
	in   chan []byte
	mu   sync.Mutex
	subs []func([]byte)
}

func (b *bus) node() *busNode {
	n := &busNode{b: b, in: make(chan []byte, 1000)}
	b.mu.Lock()
	b.nodes = append(b.nodes, n)
	b.mu.Unlock()
	go func() {
		for body := range n.in {
			n.mu.Lock()
			subs := slices.Clone(n.subs)
			n.mu.Unlock()
			for _, fn := range subs {
				fn(body)
			}
		}
	}()
	return n
}

func (n *busNode) Send(topic string, body []byte) error {
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	for _, o := range n.b.nodes {
		if o != n {
			o.in <- body
		}
	}
	return nil
}

func (n *busNode) Listen(topic string, fn func([]byte)) {
	n.mu.Lock()
	n.subs = append(n.subs, fn)
	n.mu.Unlock()
}

func newNode(b *bus) *consult.Rooms {
	rs := consult.NewRooms(consult.NewLocalHub())
	rs.Connect(b.node(), nil)
	return rs
}

// next returns the next message of a subscription, failing after 5 s.
func next(t *testing.T, msgs <-chan consult.Message, ok func(consult.Message) bool) consult.Message {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-msgs:
			t.Logf("%+v", m)
			if ok(m) {
				return m
			}
		case <-deadline:
			t.Fatal("message not received")
		}
	}
}

// TestRoomsAcrossNodes: the driver on node A leaves; node A hands control to the participant on node B, and both
// nodes' rooms agree; a late joiner on node C gets the room with the hand-over and the annotation.
func TestRoomsAcrossNodes(t *testing.T) {
	b := &bus{}
	a, bn := newNode(b), newNode(b)
	tanaka := consult.Participant{Login: "tanaka", Name: "田中", Institution: "中央病院"}
	kato := consult.Participant{Login: "kato", Name: "加藤", Institution: "北町クリニック"}

	_, _, leaveA := a.Join(1, tanaka)
	_, onB, leaveB := bn.Join(1, kato)
	defer leaveB()
	next(t, onB, func(m consult.Message) bool {
		return m.Type == consult.TypeSnapshot && m.Driver == "tanaka" && len(m.Participants) == 2
	})
	if r := a.Handle(1, tanaka, consult.Message{Type: consult.TypeAnnotate, Annotation: []byte(`{"x":1}`)}); r != nil {
		t.Fatalf("annotate: %s", r.Text)
	}
	next(t, onB, func(m consult.Message) bool { return m.Type == consult.TypeAnnotate })
	if r := bn.Handle(1, kato, consult.Message{Type: consult.TypeState, State: []byte(`{}`)}); r == nil {
		t.Error("node B let kato, who does not drive, move the images")
	}
	leaveA()
	next(t, onB, func(m consult.Message) bool { return m.Type == consult.TypeControl && m.Driver == "kato" })
	if r := bn.Handle(1, kato, consult.Message{Type: consult.TypeState, State: []byte(`{"slice":4}`)}); r != nil {
		t.Errorf("kato drives after the hand-over, but node B says %s", r.Text)
	}

	c := newNode(b)
	snap, onC, leaveC := c.Join(1, tanaka)
	defer leaveC()
	if snap.Driver != "tanaka" {
		// The first joiner on a node that knows nothing of the room drives there until the others answer.
		t.Errorf("first snapshot on node C: driver %q", snap.Driver)
	}
	got := next(t, onC, func(m consult.Message) bool { return m.Type == consult.TypeSnapshot })
	type room struct {
		Driver       string
		Participants []string
		Annotations  []string
		State        string
	}
	view := func(m consult.Message) room {
		r := room{Driver: m.Driver, State: string(m.State)}
		for _, p := range m.Participants {
			r.Participants = append(r.Participants, p.Login)
		}
		for _, a := range m.Annotations {
			r.Annotations = append(r.Annotations, string(a))
		}
		slices.Sort(r.Participants)
		return r
	}
	want := room{Driver: "kato", Participants: []string{"kato", "tanaka"}, Annotations: []string{`{"x":1}`}, State: `{"slice":4}`}
	if diff := cmp.Diff(want, view(got)); diff != "" {
		t.Errorf("the room on node C (-want +got):\n%s", diff)
	}
}
