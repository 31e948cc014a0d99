package disk

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// TestGroup: a Commit that arrives while a flush runs is served by the next one, and a failed flush's error reaches
// the Commits it served and those of the flush after it (whose pages it may have met), not later ones.
func TestGroup(t *testing.T) {
	errDisk := errors.New("write-back error")
	release := make(chan struct{})
	var mu sync.Mutex
	started := 0
	g := newGroup(func() error {
		mu.Lock()
		started++
		n := started
		mu.Unlock()
		if n == 1 {
			<-release
			return errDisk
		}
		return nil
	})
	errA, errB := make(chan error), make(chan error)
	go func() { errA <- g.wait() }()
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return started == 1 })
	go func() { errB <- g.wait() }()
	waitUntil(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.next.waiters == 1 })
	close(release)
	if err := <-errA; !errors.Is(err, errDisk) {
		t.Errorf("the failed flush's Commit got %v", err)
	}
	if err := <-errB; !errors.Is(err, errDisk) {
		t.Errorf("the next flush's Commit got %v", err)
	}
	if started != 2 {
		t.Errorf("%d flushes ran, want 2: the Commit that came during the first must wait for a second", started)
	}
	if err := g.wait(); err != nil {
		t.Errorf("a Commit two flushes later got %v", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
