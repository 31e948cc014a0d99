package disk

import (
	"errors"
	"sync"
)

// sharedFrom is how many Commits must be syncing at once for them to share flushes: measured with BenchmarkCommit
// (see the package comment).
const sharedFrom = 8

// group shares one flush among the Commits waiting at the same time (leader/follower group commit). A Commit calls
// wait after its writes; the flush that serves it is the first one to start after it called, so everything it wrote
// before calling is covered. While a flush runs, the Commits that arrive register for the next one; when it ends, one
// of them runs the next flush for all of them.
type group struct {
	sync func() error // makes every write on the store's file system durable that was done before it started

	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	next    *flush // the flush that starts next: Commits arriving now register on it
	lastErr error  // the previous flush's error
}

type flush struct {
	waiters int // registered Commits
	done    bool
	err     error
}

func newGroup(fn func() error) *group {
	g := &group{sync: fn, next: &flush{}}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// wait returns once a flush that started after the call has ended, with that flush's error. A write-back error
// (syncfs(2) reports the errors met since its previous call on the same file, whoever's pages they were) is also given
// to the Commits of the following flush: a page written before a Commit registered may have failed during the flush
// that was already running, and that flush reported the error to the Commits it served, not to this one.
func (g *group) wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.next
	f.waiters++
	for !f.done {
		if g.running {
			g.cond.Wait()
			continue
		}
		// This Commit leads: the flush starts now, after the writes of every Commit registered on it.
		g.running = true
		g.next = &flush{}
		g.mu.Unlock()
		err := g.sync()
		g.mu.Lock()
		g.running = false
		f.done, f.err = true, errors.Join(err, g.lastErr)
		g.lastErr = err
		g.cond.Broadcast()
	}
	return f.err
}
