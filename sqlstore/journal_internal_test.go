package sqlstore

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"renkei"
)

// readEvent is the audit event of a read of study n by a token.
func readEvent(n int) *renkei.AuditEvent {
	return &renkei.AuditEvent{Actor: "viewer", ActorKind: renkei.TokenPrincipal, ActorID: 7, Institution: 1, Action: renkei.ActionRead,
		DataInstitution: 1, Patient: renkei.PatientKey{Issuer: "HOSP", ID: fmt.Sprint("P", n%10)}, Study: fmt.Sprint("1.2.392.", n),
		Source: "192.0.2.1", Detail: "WADO-RS 山田"}
}

// chainStudies returns the studies of the chain's events in order, and fails the test if the chain does not verify.
func chainStudies(t *testing.T, db *DB) []string {
	t.Helper()
	ctx := context.Background()
	rep, err := db.VerifyAudit(ctx, nil)
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	evs, err := db.AuditEvents(ctx, renkei.AuditFilter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(evs) - 1; i >= 0; i-- { // AuditEvents lists the newest first
		out = append(out, evs[i].Study)
	}
	return out
}

// waitInTable waits (10 s at most) for the event of a read of study to be in audit_events, without asking for it
// (FlushAudit): what the committer does by itself.
func waitInTable(t *testing.T, db *DB, study, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		db.read.QueryRowContext(context.Background(), `SELECT count(*) FROM audit_events WHERE study_uid = ?`, study).Scan(&n)
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in audit_events 10 s later", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closedJournalBase opens a new index at path, closes it, and returns the start of its journal's file names.
func closedJournalBase(t *testing.T, path string) string {
	t.Helper()
	db := openIndex(t, path)
	base := db.journal.base
	db.Close()
	return base
}

// noTimedDrains keeps events in the journal's files for the test (no drain after journalDrainEvery).
func noTimedDrains(t *testing.T) {
	every := journalDrainEvery
	journalDrainEvery = time.Hour
	t.Cleanup(func() { journalDrainEvery = every })
}

func openIndex(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestJournal: the events of reads written to the journal reach the chain, in the order they were acknowledged
// among the other writes, and whatever reads the chain sees them at once.
func TestJournal(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	db := openIndex(t, path)
	if db.journal == nil {
		t.Fatal("a SQLite index opened by one process has no audit journal")
	}
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := db.Audit(ctx, readEvent(c*1000+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// A write's event after the reads (an admin action through writeTx) comes after them in the chain.
	admin := &renkei.AuditEvent{Actor: "admin", ActorKind: renkei.UserPrincipal, Action: renkei.ActionAdmin, Study: "admin-after-reads"}
	if err := db.writeTx(ctx, "test", func(*sql.Tx) error { return nil }, admin); err != nil {
		t.Fatal(err)
	}
	if err := db.Audit(ctx, readEvent(9999)); err != nil {
		t.Fatal(err)
	}
	got := chainStudies(t, db)
	if len(got) != 202 || got[200] != "admin-after-reads" || got[201] != "1.2.392.9999" {
		t.Fatalf("chain holds %d events, the last two %q; want 200 reads, the admin action, then the last read", len(got), got[max(0, len(got)-2):])
	}
	seen := map[string]bool{}
	for _, s := range got[:200] {
		seen[s] = true
	}
	if len(seen) != 200 {
		t.Errorf("the 200 reads are %d distinct events", len(seen))
	}
	// Once in the chain, their files are gone: one empty file is being written to.
	nums, err := db.journal.journalFiles()
	if err != nil || len(nums) != 1 {
		t.Errorf("journal files after the chain took their events: %v %v; want one", nums, err)
	} else if fi, err := os.Stat(db.journal.name(nums[0])); err != nil || fi.Size() != 0 {
		t.Errorf("the file being written to after the chain took its events: %v %v; want it empty", fi, err)
	}
	// Events wait at most journalDrainEvery without anyone asking: they are in the table soon after.
	if err := db.Audit(ctx, readEvent(12345)); err != nil {
		t.Fatal(err)
	}
	waitInTable(t, db, "1.2.392.12345", "a read's event, acknowledged")
}

// TestJournalOtherProcess: a second handle on the same index (renkei admin beside the server) finds the journal
// taken and writes its events directly; the server's waiting events still make one valid chain with them.
func TestJournalOtherProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	server := openIndex(t, path)
	admin := openIndex(t, path)
	if server.journal == nil || admin.journal != nil {
		t.Fatalf("journals: first handle %v, second %v; want the first to own it", server.journal != nil, admin.journal != nil)
	}
	for i := 0; i < 5; i++ {
		if err := server.Audit(ctx, readEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.Audit(ctx, &renkei.AuditEvent{Actor: "admin", ActorKind: renkei.UserPrincipal, Action: renkei.ActionAdmin, Study: "by-admin"}); err != nil {
		t.Fatal(err)
	}
	got := chainStudies(t, server)
	if len(got) != 6 || !slicesContains(got, "by-admin") {
		t.Errorf("chain: %q; want the 5 reads and the admin's event", got)
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestJournalFailClosed: when the journal cannot be written, reads are refused; when the chain cannot be written,
// reads are refused once that is known, and no acknowledged event is lost when it can be written again.
func TestJournalFailClosed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	db := openIndex(t, path)

	if err := db.Audit(ctx, readEvent(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.write.ExecContext(ctx, `CREATE TRIGGER audit_full BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END`); err != nil {
		t.Fatal(err)
	}
	if err := db.FlushAudit(ctx); err == nil {
		t.Fatal("FlushAudit succeeded with audit_events refusing every row")
	}
	if err := db.Audit(ctx, readEvent(2)); err == nil {
		t.Error("a read was acknowledged after the chain failed to take the journal's events")
	}
	if _, err := db.write.ExecContext(ctx, `DROP TRIGGER audit_full`); err != nil {
		t.Fatal(err)
	}
	// The committer tries again by itself: the waiting event reaches the chain with no request to carry it.
	waitInTable(t, db, "1.2.392.1", "the read acknowledged before the chain failed, the chain writable again")
	if err := db.Audit(ctx, readEvent(3)); err != nil {
		t.Fatalf("a read once the chain can be written again: %v", err)
	}
	got := chainStudies(t, db)
	if !slicesContains(got, "1.2.392.1") || !slicesContains(got, "1.2.392.3") {
		t.Errorf("chain %q lost an acknowledged read", got)
	}

	// The file itself unwritable (a full or read-only disk): refused at once. (The flush makes the committer idle,
	// with nothing waiting, so that the test may swap the file's handle: the next request's send orders it.)
	if err := db.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	cur := db.journal.cur()
	ro, err := os.Open(cur.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	rw := cur.f
	cur.f = ro
	err = db.Audit(ctx, readEvent(4))
	if ferr := db.FlushAudit(ctx); ferr != nil {
		t.Fatal(ferr)
	}
	cur.f = rw
	ro.Close()
	if err == nil {
		t.Error("a read was acknowledged though its event could not be written to the journal")
	}
}

// TestJournalTornLine: a journal left by a crash, its last line cut short, is appended to the chain up to that line
// at the next open.
func TestJournalTornLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db")
	base := closedJournalBase(t, path)
	var b strings.Builder
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&b, `{"at":%d,"actor":"viewer","kind":"token","action":"read","study":"torn-%d"}`+"\n", time.Now().UnixMilli(), i)
	}
	b.WriteString(`{"at":1,"actor":"viewer","kind":"tok`)
	// The file after the one the previous run left empty (renkei closed cleanly) and removed.
	if err := os.WriteFile(base+".0000000000000002", []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	db := openIndex(t, path)
	got := chainStudies(t, db)
	if strings.Join(got, ",") != "torn-0,torn-1,torn-2" {
		t.Errorf("chain after the restart: %q; want the 3 whole lines", got)
	}
}

// The crash tests run a child process (this test binary) that opens the index, acknowledges reads and is killed.
const journalChildEnv = "RENKEI_JOURNAL_CHILD"

// TestJournalChild is the child: it is not a test on its own.
func TestJournalChild(t *testing.T) {
	mode := os.Getenv(journalChildEnv)
	if mode == "" {
		t.Skip("the crash tests' child process")
	}
	path := os.Getenv("RENKEI_JOURNAL_INDEX")
	n, _ := strconv.Atoi(os.Getenv("RENKEI_JOURNAL_READS"))
	journalDrainEvery = time.Hour // the events stay in the file until the kill
	if mode != "before-drain" {
		journalAfterDrain = func() {
			fmt.Println("drained")
			select {} // killed here: the chain has the events, the file still holds them
		}
	}
	db, err := Open(context.Background(), path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	for i := 0; i < n; i++ {
		if err := db.Audit(context.Background(), readEvent(i)); err != nil {
			fmt.Println("audit:", err)
			os.Exit(2)
		}
		fmt.Println("acked", i)
	}
	if mode == "after-flush" {
		db.FlushAudit(context.Background())
	}
	select {}
}

// TestJournalCrash kills a process that acknowledged reads whose events were only in the journal; one killed after
// those events went into the chain by a flush (as before another write, or a reader of the chain) but before their
// files were removed; and one killed the same way in a drain that ran beside new reads (512 events start one): at
// the next open the chain holds every acknowledged read exactly once, in order, and verifies.
func TestJournalCrash(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		reads int
	}{{"before-drain", 40}, {"after-flush", 40}, {"after-drain", journalDrainAt + 88}} {
		t.Run(tc.mode, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "index.db")
			cmd := exec.Command(os.Args[0], "-test.run=^TestJournalChild$")
			cmd.Env = append(os.Environ(), journalChildEnv+"="+tc.mode, "RENKEI_JOURNAL_INDEX="+path, fmt.Sprint("RENKEI_JOURNAL_READS=", tc.reads))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			acked, drained := 0, tc.mode == "before-drain"
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.HasPrefix(line, "acked "):
					acked++
				case line == "drained":
					drained = true
				case strings.HasPrefix(line, "open:") || strings.HasPrefix(line, "audit:"):
					t.Fatal(line)
				}
				if acked == tc.reads && drained {
					break
				}
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			if acked != tc.reads || !drained {
				t.Fatalf("the child acknowledged %d reads (drained: %v) before the kill; want %d", acked, drained, tc.reads)
			}
			db := openIndex(t, path)
			got := chainStudies(t, db)
			if len(got) != tc.reads {
				t.Fatalf("after the kill the chain holds %d events; want the %d acknowledged reads once each", len(got), tc.reads)
			}
			for i, s := range got {
				if s != fmt.Sprint("1.2.392.", i) {
					t.Errorf("event %d: study %s, want 1.2.392.%d (in the order acknowledged)", i+1, s, i)
					break
				}
			}
		})
	}
}

// TestJournalLine: an event written to the journal by hand reads back, by encoding/json, as the same event, whatever
// its text holds (quotes, backslashes, line breaks, Japanese, control characters; invalid UTF-8 becomes U+FFFD).
func TestJournalLine(t *testing.T) {
	base := readEvent(3)
	base.Time = time.UnixMilli(1790000000123)
	base.Role, base.Outcome, base.Purpose = renkei.Physician, renkei.OutcomeSuccess, "referral"
	for _, detail := range []string{"", `QIDO-RS /dicomweb/studies?PatientName="山田*"&limit=50`, "a\\b\n\r\t\x00\x1f\x7f end",
		"半角ｶﾅ and 𠮷野家", "bad \xff\xfe utf-8"} {
		e := *base
		e.Detail = detail
		line := appendJournalLine(nil, &e)
		if len(line) == 0 || line[len(line)-1] != '\n' || strings.Count(string(line), "\n") != 1 {
			t.Fatalf("%q: not one line: %q", detail, line)
		}
		var got journalEvent
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%q: %v in %s", detail, err, line)
		}
		want := e
		enc, _ := json.Marshal(detail) // what encoding/json makes of it (each invalid byte a U+FFFD)
		json.Unmarshal(enc, &want.Detail)
		w, g := *got.event(), want
		g.Seq, g.PrevHash, g.Hash = 0, nil, nil
		if !w.Time.Equal(g.Time) {
			t.Errorf("%q: time %v, want %v", detail, w.Time, g.Time)
		}
		w.Time, g.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(w, g) {
			t.Errorf("%q: read back as\n%+v\nwant\n%+v", detail, w, g)
		}
	}
}

// TestJournalShortWrite: writes cut short (a full disk, here the file size limit) are cut back to the last whole
// line every time, so that the events acknowledged once the disk has room again are read back by a replay. A second
// short write in a row was not: the offset the file was cut back to was the end of the first short write, where the
// descriptor's offset stayed, and its torn line swallowed the next event's.
func TestJournalShortWrite(t *testing.T) {
	ctx := context.Background()
	noTimedDrains(t) // the events stay in the file
	db := openIndex(t, filepath.Join(t.TempDir(), "index.db"))
	if err := db.Audit(ctx, readEvent(1)); err != nil {
		t.Fatal(err)
	}
	name := db.journal.cur().f.Name()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// Room for part of a line: both reads below are refused, each after a short write.
	lim := old
	lim.Cur = uint64(fi.Size()) + 100
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	errs := []error{db.Audit(ctx, readEvent(2)), db.Audit(ctx, readEvent(3))}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("read %d was acknowledged though its event could not be written to the journal", i+2)
		}
	}
	if err := db.Audit(ctx, readEvent(4)); err != nil {
		t.Fatal(err)
	}
	events, err := readJournalFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Study)
	}
	if strings.Join(got, ",") != "1.2.392.1,1.2.392.4" {
		t.Errorf("a replay of the journal would find %q; want the two acknowledged reads", got)
	}
}

// TestJournalDirName: the files a crash left are found whatever the index's folder is called; a name with a glob's
// metacharacters ([, *, ?) is an ordinary name.
func TestJournalDirName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "renkei [test]")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "index.db")
	base := closedJournalBase(t, path)
	line := fmt.Sprintf(`{"at":%d,"actor":"viewer","kind":"token","action":"read","study":"left"}`+"\n", time.Now().UnixMilli())
	if err := os.WriteFile(base+".0000000000000002", []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	db := openIndex(t, path)
	if got := chainStudies(t, db); strings.Join(got, ",") != "left" {
		t.Errorf("chain after the restart: %q; want the read the journal held", got)
	}
}

// TestJournalSyncDelay: a read's event is made durable (the file synced) at most maxReadSyncDelay after it was
// written, though no other read follows to carry the sync.
func TestJournalSyncDelay(t *testing.T) {
	ctx := context.Background()
	noTimedDrains(t) // no drain syncs the file either
	db := openIndex(t, filepath.Join(t.TempDir(), "index.db"))
	// The committer calls Now for each group of reads before writing it: what it sees of the file then.
	var dirty []bool
	db.Now = func() time.Time {
		dirty = append(dirty, db.journal.dirty)
		return time.Now()
	}
	time.Sleep(maxReadSyncDelay + 50*time.Millisecond)
	// The first read is synced as it is written (the last sync is old); the second, right after, is not.
	for i := 0; i < 2; i++ {
		if err := db.Audit(ctx, readEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * maxReadSyncDelay)
	if err := db.Audit(ctx, readEvent(2)); err != nil {
		t.Fatal(err)
	}
	if len(dirty) != 3 || dirty[2] {
		t.Errorf("the journal %v before each group of reads; want the second read's event synced by the third", dirty)
	}
}

// TestJournalFlushBeside: FlushAudit (the monitor asks every second) waits for a drain beside the committer, which
// meanwhile goes on answering reads; it returns once the events acknowledged before it are in the chain.
func TestJournalFlushBeside(t *testing.T) {
	ctx := context.Background()
	db := openIndex(t, filepath.Join(t.TempDir(), "index.db"))
	if err := db.Audit(ctx, readEvent(1)); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}, 1), make(chan struct{})
	journalAfterDrain = func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	}
	defer func() { journalAfterDrain = nil }()
	flushed := make(chan error, 1)
	go func() { flushed <- db.FlushAudit(ctx) }()
	select {
	case <-entered: // the drain committed; it is held before it tells the committer
	case <-time.After(10 * time.Second):
		t.Fatal("FlushAudit started no drain")
	}
	reads := make(chan error, 1)
	go func() {
		for i := 2; i <= 9; i++ {
			if err := db.Audit(ctx, readEvent(i)); err != nil {
				reads <- err
				return
			}
		}
		reads <- nil
	}()
	select {
	case err := <-reads:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("reads waited for a flush's drain")
	}
	select {
	case err := <-flushed:
		t.Fatalf("FlushAudit returned (%v) before its drain ended", err)
	default:
	}
	close(release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	var n int
	db.read.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE study_uid = '1.2.392.1'`).Scan(&n)
	if n != 1 {
		t.Errorf("after FlushAudit the read acknowledged before it is %d times in audit_events, want 1", n)
	}
	if got := chainStudies(t, db); len(got) != 9 {
		t.Errorf("chain after the reads: %q; want the 9 reads", got)
	}
}

// TestJournalOtherIndex: files left beside a folder's earlier index.db (deleted, and a new one made) are not taken
// for the new index's: its chain starts empty.
func TestJournalOtherIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	old := closedJournalBase(t, path)
	line := fmt.Sprintf(`{"at":%d,"actor":"viewer","kind":"token","action":"read","study":"old-index"}`+"\n", time.Now().UnixMilli())
	if err := os.WriteFile(old+".0000000000000002", []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
	db := openIndex(t, path)
	if got := chainStudies(t, db); len(got) != 0 {
		t.Errorf("a new index's chain holds %q from files of the index it replaced", got)
	}
}
