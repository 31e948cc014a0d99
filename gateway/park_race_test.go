package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"renkei/internal/dicomtest"
)

// TestDiscardWhileSentAgain: the operator discards a study's parked instances while a modality sends one of them
// again (the very same bytes, so the same key) and is told it is stored. The copy the modality was just told is
// stored must not be deleted by the discard, which listed the parked copy before the resend: it is in the queue,
// with its file. Put is held until the discard is under way, and lands while it deletes the other parked
// instances of the study.
func TestDiscardWhileSentAgain(t *testing.T) {
	dir := t.TempDir()
	base := ctFile(t, dicomtest.CTOptions{PatientID: "DISCARD", Rows: 8, Cols: 8, Seed: 5})
	if _, err := Open(dir, 0); err != nil { // the folders
		t.Fatal(err)
	}
	// Many parked instances of one study, written straight into the folder (a Put each would cost an fsync), the
	// one sent again received last, so that the discard reaches it last.
	const n = 3000
	t0 := time.Now().Add(-time.Hour)
	var first, last Entry
	var lastBytes []byte
	for i := range n {
		b := uniqueCopy(base, i)
		sum := sha256.Sum256(b)
		e := Entry{Key: hex.EncodeToString(sum[:]), StudyInstanceUID: "1.2.3.4", SOPInstanceUID: "1.2.3.4." + string(rune('0'+i%10)),
			Received: t0.Add(time.Duration(i) * time.Millisecond), Size: int64(len(b)), Attempts: 1, Refusals: 1,
			LastError: "renkei refused it: 0x0111", Parked: t0, ParkedKind: ParkedConflict}
		sp := &Spool{Dir: dir}
		if err := os.WriteFile(sp.path(e.Key), b, 0o600); err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(e)
		if err := os.WriteFile(sp.jpath(e.Key), j, 0o600); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = e
		}
		last, lastBytes = e, b
	}
	sp, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}

	discarded := make(chan []Entry, 1)
	go func() {
		done, err := sp.Discard("1.2.3.4")
		if err != nil {
			t.Error(err)
		}
		discarded <- done
	}()
	// The modality's resend starts once the discard deletes (it listed the parked instances before).
	put, err := sp.Put(context.Background(), &heldReader{r: bytes.NewReader(lastBytes), until: func() bool {
		_, err := os.Stat(sp.path(first.Key))
		return errors.Is(err, os.ErrNotExist)
	}}, Entry{})
	if err != nil {
		t.Fatal(err)
	}
	if put.Key != last.Key {
		t.Fatalf("the resend has key %s, want %s", put.Key, last.Key)
	}
	putDone := time.Now()
	done := <-discarded
	if len(done) < n-1 {
		t.Fatalf("discarded %d of %d parked instances", len(done), n)
	}
	if _, err := os.Stat(sp.path(last.Key)); err != nil {
		t.Fatalf("the copy the modality was told is stored (at %s) was deleted by the discard: %v", putDone.Format(time.StampMicro), err)
	}
	all, err := sp.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].Key != last.Key || !all[0].Parked.IsZero() {
		t.Fatalf("after the discard the spool holds %+v, want the resent copy alone, queued", all)
	}
}

// heldReader reads nothing until until() holds.
type heldReader struct {
	r     io.Reader
	until func() bool
	ok    bool
}

func (h *heldReader) Read(p []byte) (int, error) {
	for !h.ok {
		if h.until() {
			h.ok = true
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	return h.r.Read(p)
}

// TestActAsRootForTheGatewaysUser: the gateway runs as its own user; the operator runs `sudo renkei gateway retry`.
// The request folder the command makes, and the request in it, must be the spool owner's: a folder of root's, mode
// 0700, could not be read by the gateway (the command would time out, "did not take the request") nor written by
// any later command run without sudo.
func TestActAsRootForTheGatewaysUser(t *testing.T) {
	dir, uid, gid := spoolOfNobody(t)
	unlock, ok, err := lockSpool(dir, 0) // the running gateway, which answers nothing here
	if err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	defer unlock()
	seen := make(chan string, 1)
	go func() {
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			des, _ := os.ReadDir(requestsDir(dir))
			for _, d := range des {
				if strings.HasSuffix(d.Name(), ".json") {
					seen <- filepath.Join(requestsDir(dir), d.Name())
					return
				}
			}
		}
		close(seen)
	}()
	done := make(chan error, 1)
	go func() {
		_, err := Act(dir, Action{Action: "retry", All: true, By: "root"}, time.Second, nil)
		done <- err
	}()
	req, ok := <-seen
	if !ok {
		t.Fatal("no request was left for the gateway")
	}
	for _, p := range []string{requestsDir(dir), req} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
			t.Errorf("%s belongs to %d:%d, not to the spool's owner %d:%d: the gateway cannot read it", p, st.Uid, st.Gid, uid, gid)
		}
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "nothing was done") {
		t.Errorf("Act with a gateway that does not answer: %v", err)
	}
}

// TestParkedNotSentAgainFromAStaleList: the uploader looks at the queue (List, which for a backlog of many
// instances takes a while) while a request is in flight; that request's instance is parked, and its request ends,
// before the look is done. The look's copy of the instance predates the parking: it must not be sent again from it.
// A large backlog of instances not yet due makes each look slow, and the uploader is woken again and again so that
// it is looking when renkei answers.
func TestParkedNotSentAgainFromAStaleList(t *testing.T) {
	sp, err := Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	study := dicomtest.UID("stale-study")
	sop := dicomtest.UID("stale-1")
	b := ctFile(t, dicomtest.CTOptions{StudyInstanceUID: study, SOPInstanceUID: sop, PatientID: "STALE", Rows: 8, Cols: 8, Seed: 1, InstanceNumber: 1})
	if _, err := sp.Put(context.Background(), bytes.NewReader(b), Entry{Received: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// The backlog: entries waiting for a later attempt (never sent here), only in the index.
	later := time.Now().Add(time.Hour)
	sp.indexed(func(m map[string]Entry) {
		for i := range 50000 {
			k := fmt.Sprintf("%064x", i)
			m[k] = Entry{Key: k, StudyInstanceUID: "9.9", SOPInstanceUID: "9.9." + strconv.Itoa(i), Received: time.Now(), NextAttempt: later}
		}
	})
	srv := &refuser{failure: map[string]int{study: 0x0111}, status: map[string]int{}, sent: map[string]int{}, stored: map[string]bool{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	u := &Uploader{Spool: sp, Server: ts.URL, Token: "t", Client: ts.Client(), Poll: 10 * time.Millisecond, Parallel: 2,
		MinBackoff: time.Millisecond, RefusedBackoff: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go u.Run(ctx)
	go func() {
		for ctx.Err() == nil {
			u.Wake()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p, _ := sp.Parked(study); len(p) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not parked after 30 s; %d requests", srv.count(sop))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if n := srv.count(sop); n != 1 {
		t.Errorf("the parked instance was sent in %d requests, want 1", n)
	}
}

// TestConflictProblemParks: a 409 whose body is a problem+json, not a STOW-RS answer (a proxy's, or a server
// refusing the request as a whole), refuses the request as it is, as a 409 of any other body does: the instance
// sent alone is parked, not sent again and again as if renkei's answer had only failed to mention it.
func TestConflictProblemParks(t *testing.T) {
	sp, err := Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	study, sop := dicomtest.UID("problem-study"), dicomtest.UID("problem-1")
	b := ctFile(t, dicomtest.CTOptions{StudyInstanceUID: study, SOPInstanceUID: sop, PatientID: "PROBLEM", Rows: 8, Cols: 8, Seed: 1, InstanceNumber: 1})
	if _, err := sp.Put(context.Background(), bytes.NewReader(b), Entry{}); err != nil {
		t.Fatal(err)
	}
	srv := &refuser{failure: map[string]int{}, status: map[string]int{study: 409}, sent: map[string]int{}, stored: map[string]bool{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	u := &Uploader{Spool: sp, Server: ts.URL, Token: "t", Client: ts.Client(), Poll: 10 * time.Millisecond,
		MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, RefusedBackoff: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go u.Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if p, _ := sp.Parked(study); len(p) == 1 {
			if p[0].ParkedKind != ParkedRequest || !strings.Contains(p[0].LastError, "409") {
				t.Errorf("parked as %q (%q), want %q with renkei's 409", p[0].ParkedKind, p[0].LastError, ParkedRequest)
			}
			break
		}
		if time.Now().After(deadline) {
			all, _ := sp.List()
			t.Fatalf("not parked after 5 s and %d requests: %+v", srv.count(sop), all)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.count(sop); n != 1 {
		t.Errorf("sent in %d requests, want 1", n)
	}
}

// TestActAsRootMakesTheLockTheOwners: `sudo renkei gateway discard` on a spool whose gateway (the spool's owner)
// has not made the lock file nor its audit log yet: the files the command makes must be the owner's, else that
// gateway could not open the lock, and would not start, nor write its audit log.
func TestActAsRootMakesTheLockTheOwners(t *testing.T) {
	dir, uid, gid := spoolOfNobody(t)
	if _, err := Act(dir, Action{Action: "discard", Study: "1.2.3", By: "root"}, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lock", "audit.log"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
			t.Errorf("%s belongs to %d:%d, not to the spool's owner %d:%d: the gateway could not open it", name, st.Uid, st.Gid, uid, gid)
		}
	}
}

// spoolOfNobody makes a spool owned by the user nobody, for a test that acts on it as root (skipped unless root).
func spoolOfNobody(t *testing.T) (dir string, uid, gid uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as root on a spool of another user's")
	}
	uid, gid = 65534, 65534 // nobody
	dir = t.TempDir()
	if _, err := Open(dir, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	return dir, uid, gid
}
