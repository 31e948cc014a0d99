package pgbus_test

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"renkei/pgbus"
	"renkei/sqlstore/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t *testing.T, url string) *pgbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := pgbus.Open(ctx, url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b.Check, b.Retry = 200*time.Millisecond, 100*time.Millisecond
	t.Cleanup(b.Close)
	return b
}

// receive collects what a bus hears on topic.
func receive(b *pgbus.Bus, topic string) <-chan []byte {
	ch := make(chan []byte, 100)
	b.Listen(topic, func(body []byte) { ch <- body })
	return ch
}

func wait(t *testing.T, ch <-chan []byte, what string) []byte {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing arrived", what)
		return nil
	}
}

// TestSend: a message reaches the other node's handlers of its topic, not the sender's own, not other topics'; one
// larger than a NOTIFY payload arrives whole, in parts; one larger than MaxBody is refused.
func TestSend(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	fromA, fromB, other := receive(b, "x"), receive(a, "x"), receive(b, "y")

	if err := a.Send("x", []byte(`{"hello":"b"}`)); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, fromA, "small message"); string(got) != `{"hello":"b"}` {
		t.Errorf("b got %s", got)
	}
	big := []byte(`"` + strings.Repeat("相談", 5000) + `"`) // 30 kB: four parts
	if err := a.Send("x", big); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, fromA, "large message"); !bytes.Equal(got, big) {
		t.Errorf("large message: got %d bytes, want %d", len(got), len(big))
	}
	if err := a.Send("x", make([]byte, pgbus.MaxBody+1)); err == nil {
		t.Error("a message over MaxBody was accepted")
	}
	select {
	case m := <-fromB:
		t.Errorf("a heard its own message %.40s", m)
	case m := <-other:
		t.Errorf("topic y heard %.40s", m)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestListenReconnects: when the listening connection is killed, the bus reconnects and hears messages again.
func TestListenReconnects(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	got := receive(b, "x")
	terminate(t, url, "renkei listen "+b.Node)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		a.Send("x", []byte(`1`))
		select {
		case <-got:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatal("no message heard after the listening connection was killed")
}

// terminate kills the PostgreSQL connections whose application_name is name, and waits for at least one.
func terminate(t *testing.T, url, name string) {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection named %q", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLease: of two nodes one runs the job; when the holder's lease connection is killed its job ends and the other
// node takes over, never both at once.
func TestLease(t *testing.T) {
	url := pgtest.URL(t)
	nodes := []*pgbus.Bus{open(t, url), open(t, url)}
	var running atomic.Int32
	var mu sync.Mutex
	var runs []string
	overlap := false
	started := make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Lease(ctx, "job", func(ctx context.Context) {
				if running.Add(1) > 1 {
					overlap = true
				}
				mu.Lock()
				runs = append(runs, n.Node)
				mu.Unlock()
				started <- n.Node
				<-ctx.Done()
				running.Add(-1)
			})
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	var first string
	select {
	case first = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no node took the lease")
	}
	// The killed holder may win the lock again (both retry): kill it until the other node has the job.
	for holder, tries := first, 0; holder == first; tries++ {
		if tries == 5 {
			t.Fatalf("the job stayed on %s", first)
		}
		terminate(t, url, "renkei lease job "+holder)
		select {
		case holder = <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("no node took the lease over")
		}
	}
	select {
	case n := <-started:
		t.Errorf("a third start, by %s", n)
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	wg.Wait()
	if overlap {
		t.Errorf("two nodes ran the job at once: %v", runs)
	}
	if running.Load() != 0 {
		t.Errorf("%d jobs still running after the leases ended", running.Load())
	}
}
