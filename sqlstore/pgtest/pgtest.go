// Package pgtest starts a private PostgreSQL cluster for tests: Debian's PostgreSQL (initdb, postgres), on
// 127.0.0.1 at a free port with its socket in a temporary folder, once per test binary, and gives each test a fresh
// database in it. Run as root, the cluster runs as the user postgres (PostgreSQL refuses to run as root).
//
// Without PostgreSQL installed the tests that need it are skipped, except on CI (CI set), where they fail: scripts/setup
// installs it.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// cluster is the one cluster of this test binary.
type cluster struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when the server has exited
	err  error
	skip string
}

var (
	once    sync.Once
	c       cluster
	counter atomic.Int64
)

// binDir finds PostgreSQL's programs: on PATH, or in Debian's /usr/lib/postgresql/VERSION/bin.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("PostgreSQL is not installed (Debian package postgresql; scripts/setup installs it)")
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

func start() {
	bin, err := binDir()
	if err != nil {
		c.skip = err.Error()
		return
	}
	dir, err := os.MkdirTemp("", "renkei-pg-")
	if err != nil {
		c.err = err
		return
	}
	c.dir = dir
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			c.err = fmt.Errorf("running as root, PostgreSQL needs the user postgres: %w", err)
			return
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			c.err = err
			return
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		c.err = fmt.Errorf("initdb: %v\n%s", err, out)
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.err = err
		return
	}
	c.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	// The server is a child of this process, started from a thread that never exits, with a parent-death signal:
	// when the test binary ends, however it ends, the cluster stops (SIGQUIT: immediate shutdown).
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: Pdeathsig follows the thread that started the child
		cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(c.port), "-k", dir,
			"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=300", "-c", "shared_buffers=64MB")
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
		logf, err := os.Create(filepath.Join(dir, "postgres.log"))
		if err != nil {
			started <- err
			return
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.cmd, c.done = cmd, make(chan struct{})
		started <- nil
		cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	if err := <-started; err != nil {
		c.err = fmt.Errorf("start postgres: %w", err)
		return
	}
	deadline := time.Now().Add(30 * time.Second)
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
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			c.err = fmt.Errorf("postgres did not start: %v\n%s", err, log)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func adminURL() string { return url("postgres") }

func url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// Available reports whether the cluster runs, starting it if needed; why says why not.
func Available() (ok bool, why string) {
	once.Do(start)
	switch {
	case c.err != nil:
		return false, c.err.Error()
	case c.skip != "":
		return false, c.skip
	}
	return true, ""
}

// URL creates a fresh, empty database (UTF8, collation C) for the test and returns its postgres:// URL. It skips
// the test when PostgreSQL is not installed (fails on CI) and fails it when the cluster cannot start.
func URL(t testing.TB) string {
	t.Helper()
	once.Do(start)
	if c.err != nil {
		t.Fatalf("PostgreSQL for tests: %v", c.err)
	}
	if c.skip != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL for tests: %s", c.skip)
		}
		t.Skipf("PostgreSQL for tests: %s", c.skip)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), counter.Add(1))
	admin, err := sql.Open("pgx", adminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+name+` TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	return url(name)
}

// Main runs the tests of a package (call it from TestMain) and then stops the cluster, if one was started, and
// removes its files.
func Main(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// Stop stops the cluster and removes its files.
func Stop() {
	if c.cmd != nil {
		c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
		}
	}
	if c.dir != "" && strings.Contains(c.dir, "renkei-pg-") {
		os.RemoveAll(c.dir)
	}
}
