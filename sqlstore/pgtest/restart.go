package pgtest

import (
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// Restart stops the cluster with a fast shutdown (SIGINT, what `pg_ctl restart -m fast` sends: open transactions
// are rolled back, every connection is closed), runs down while it is stopped, and starts it again on the same
// port and data folder; it returns once the cluster accepts connections. Every database of the test binary goes
// down with it, so a test that restarts must not run in parallel with others that use PostgreSQL.
func Restart(tb testing.TB, down func()) {
	tb.Helper()
	once.Do(start)
	if c.cmd == nil {
		tb.Fatalf("PostgreSQL for tests: no cluster to restart (%v %s)", c.err, c.skip)
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		tb.Fatal("PostgreSQL did not stop within 60 s of a fast shutdown")
	}
	down()
	// Started as start does: from a thread that never exits, so that Pdeathsig stops the cluster with the binary.
	old := c.cmd
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked
		cmd := exec.Command(old.Path, old.Args[1:]...)
		cmd.Dir, cmd.SysProcAttr = old.Dir, old.SysProcAttr
		logf, err := os.OpenFile(filepath.Join(c.dir, "postgres.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			started <- err
			return
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			started <- err
			return
		}
		c.cmd, c.done = cmd, done
		started <- nil
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	if err := <-started; err != nil {
		tb.Fatalf("restart postgres: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open("pgx", adminURL())
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
			tb.Fatalf("postgres did not come back within 60 s: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
