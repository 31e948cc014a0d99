package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"renkei/dicom"
	"renkei/internal/dicomtest"
)

// refuser answers STOW-RS as renkei does, refusing the instances of some studies in the ways renkei can: an
// instance-level failure reason (PS3.18 Table 10.5.3-2) or a request-level status. It counts the requests that
// carried each SOP Instance UID.
type refuser struct {
	mu      sync.Mutex
	failure map[string]int // by Study Instance UID: the FailureReason its instances get (0: stored)
	status  map[string]int // by Study Instance UID: the request's HTTP status instead of an answer
	sent    map[string]int // requests by SOP Instance UID
	stored  map[string]bool
}

func (s *refuser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	mr := multipart.NewReader(r.Body, params["boundary"])
	var ok, failed []string
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		part, err := mr.NextPart()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(part)
		df, err := dicom.Parse(bytes.NewReader(b), dicom.DefaultReadOptions)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sop, study := df.DataSet.String(dicom.SOPInstanceUID), df.DataSet.String(dicom.StudyInstanceUID)
		s.sent[sop]++
		if st := s.status[study]; st != 0 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(st)
			fmt.Fprintf(w, `{"title":"refused","detail":"answered %d for the test"}`, st)
			return
		}
		item := fmt.Sprintf(`{"00081155":{"vr":"UI","Value":[%q]}`, sop)
		if f := s.failure[study]; f != 0 {
			failed = append(failed, item+fmt.Sprintf(`,"00081197":{"vr":"US","Value":[%d]},"00000902":{"vr":"LO","Value":["refused for the test"]}}`, f))
			continue
		}
		s.stored[sop] = true
		ok = append(ok, item+"}")
	}
	status := http.StatusOK
	switch {
	case len(ok) == 0:
		status = http.StatusConflict
	case len(failed) > 0:
		status = http.StatusAccepted
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"00081198":{"vr":"SQ","Value":[%s]},"00081199":{"vr":"SQ","Value":[%s]}}`, strings.Join(failed, ","), strings.Join(ok, ","))
}

func (s *refuser) count(sop string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[sop]
}

// TestUploaderParks: renkei's refusals that will not heal (0x0111 conflict, 0xA900, 0xC000, a 422 for the
// instance's request) park the instance after one request; one that might (0x0110) after MaxRefusals; a busy or
// failing renkei (503, 0xA700) never, however often. Parked instances are not sent again, leave the queue (status,
// heartbeat backlog) and are reported by study; the operator's retry, through the running gateway's requests,
// sends one study again, and discard deletes only the named study's parked files.
func TestUploaderParks(t *testing.T) {
	dir := t.TempDir()
	sp, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := &refuser{failure: map[string]int{}, status: map[string]int{}, sent: map[string]int{}, stored: map[string]bool{}}
	studies := map[string]string{} // name → Study Instance UID
	sops := map[string][]string{}
	for _, c := range []struct {
		name    string
		n       int
		failure int
		status  int
	}{
		// "fine" first: while renkei answers 503 or 0xA700 the uploader pauses everything, as it should.
		{"fine", 3, 0, 0}, {"conflict", 2, 0x0111, 0}, {"invalid", 1, 0xA900, 0}, {"unreadable", 1, 0xC000, 0},
		{"unprocessable", 1, 0, 422}, {"processing", 1, 0x0110, 0}, {"busy", 1, 0xA700, 0}, {"down", 1, 0, 503},
	} {
		studies[c.name] = dicomtest.UID("park-" + c.name)
		srv.failure[studies[c.name]], srv.status[studies[c.name]] = c.failure, c.status
		for i := 1; i <= c.n; i++ {
			sop := dicomtest.UID(fmt.Sprintf("park-%s-%d", c.name, i))
			b := ctFile(t, dicomtest.CTOptions{StudyInstanceUID: studies[c.name], SOPInstanceUID: sop, PatientID: "P-" + c.name, Rows: 8, Cols: 8, Seed: int64(i), InstanceNumber: i})
			if _, err := sp.Put(context.Background(), bytes.NewReader(b), Entry{CallingAETitle: "CT1"}); err != nil {
				t.Fatal(err)
			}
			sops[c.name] = append(sops[c.name], sop)
		}
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	u := &Uploader{Spool: sp, Server: ts.URL, Token: "t", Client: ts.Client(), Poll: 10 * time.Millisecond, Parallel: 2,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, RefusedBackoff: 10 * time.Millisecond, MaxRefusals: 3}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go u.Run(ctx)

	wantParked := map[string]string{"conflict": ParkedConflict, "invalid": ParkedInvalid, "unreadable": ParkedUnreadable,
		"unprocessable": ParkedRequest, "processing": ParkedRepeated}
	deadline := time.Now().Add(10 * time.Second)
	for {
		parked, err := sp.Parked("")
		if err != nil {
			t.Fatal(err)
		}
		if len(parked) == 6 && srv.count(sops["fine"][2]) > 0 && srv.count(sops["busy"][0]) > 10 && srv.count(sops["down"][0]) > 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s, %d parked (want 6): %+v; requests %v", len(parked), parked, srv.sent)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Nothing parked is sent again.
	before := map[string]int{}
	for name := range wantParked {
		for _, sop := range sops[name] {
			before[sop] = srv.count(sop)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for name, kind := range wantParked {
		want := 1
		if name == "processing" {
			want = 3 // MaxRefusals
		}
		for _, sop := range sops[name] {
			if got := srv.count(sop); got != want || got != before[sop] {
				t.Errorf("%s (%s): %d requests (%d when parked), want %d", name, sop, got, before[sop], want)
			}
		}
		parked, _ := sp.Parked(studies[name])
		for _, e := range parked {
			if e.ParkedKind != kind || e.Parked.IsZero() || e.LastError == "" {
				t.Errorf("%s parked as %q at %v (%q), want %q", name, e.ParkedKind, e.Parked, e.LastError, kind)
			}
		}
	}
	// A busy or failing renkei is never a reason to park, however often it answers so.
	for _, name := range []string{"busy", "down"} {
		all, _ := sp.List()
		for _, e := range all {
			if e.StudyInstanceUID == studies[name] && (!e.Parked.IsZero() || e.Refusals != 0) {
				t.Errorf("%s: %d requests left it %+v; want queued, no refusal", name, srv.count(e.SOPInstanceUID), e)
			}
		}
	}
	q, err := sp.Summary()
	if err != nil {
		t.Fatal(err)
	}
	if q.Instances != 2 || q.Studies != 2 || q.Parked.Instances != 6 || len(q.Parked.Studies) != 5 {
		t.Errorf("summary: %d waiting in %d studies (want 2 in 2: busy, down), %d parked in %d studies (want 6 in 5)",
			q.Instances, q.Studies, q.Parked.Instances, len(q.Parked.Studies))
	}
	for _, f := range q.Failures {
		if f.StudyInstanceUID != studies["busy"] && f.StudyInstanceUID != studies["down"] {
			t.Errorf("a parked instance among the queue's failures: %+v", f)
		}
	}

	// The operator, as `renkei gateway retry` and `discard` while the gateway runs: the gateway holds the lock and
	// serves the requests (as Run does every second).
	unlock, ok, err := lockSpool(dir, 0)
	if err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	defer unlock()
	stop := make(chan struct{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if sp.serveRequests(nil) {
					u.Wake()
				}
			}
		}
	}()
	defer func() { close(stop); <-served }()
	srv.mu.Lock()
	srv.failure[studies["conflict"]] = 0 // renkei's admin removed the cause
	srv.mu.Unlock()
	res, err := Act(dir, Action{Action: "retry", Study: studies["conflict"], By: "test"}, 5*time.Second, nil)
	if err != nil || len(res.Entries) != 2 || !res.Gateway {
		t.Fatalf("retry: %+v %v", res, err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for !(srv.count(sops["conflict"][0]) == 2 && srv.count(sops["conflict"][1]) == 2) {
		if time.Now().After(deadline) {
			t.Fatalf("the retried study was not sent again: %v", srv.sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		if p, _ := sp.Parked(studies["conflict"]); len(p) == 0 {
			if all, _ := sp.List(); !hasStudy(all, studies["conflict"]) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the retried study did not leave the spool once renkei stored it")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Discard deletes the named study's parked instances and nothing else.
	res, err = Act(dir, Action{Action: "discard", Study: studies["invalid"], By: "test"}, 5*time.Second, nil)
	if err != nil || len(res.Entries) != 1 || res.Entries[0].SOPInstanceUID != sops["invalid"][0] {
		t.Fatalf("discard: %+v %v", res, err)
	}
	if _, err := os.Stat(sp.path(res.Entries[0].Key)); !os.IsNotExist(err) {
		t.Errorf("the discarded file is still there: %v", err)
	}
	parked, _ := sp.Parked("")
	if len(parked) != 3 || hasStudy(parked, studies["invalid"]) {
		t.Errorf("after discarding one study, parked: %+v (want unreadable, unprocessable, processing)", parked)
	}
	if _, err := Act(dir, Action{Action: "discard", All: true}, time.Second, nil); err == nil {
		t.Error("discard without a study was accepted")
	}
	log, _ := os.ReadFile(dir + "/audit.log")
	for _, want := range []string{`"action":"park"`, `"action":"retry"`, `"action":"discard"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the audit log has no %s:\n%s", want, log)
		}
	}
	// The discard's intent, naming what it will delete, is logged before the deletion (a crash in between leaves it).
	begin, end := strings.Index(string(log), `"action":"discard-begin"`), strings.Index(string(log), `"action":"discard"`)
	if begin < 0 || begin > end || !strings.Contains(string(log)[begin:end], sops["invalid"][0]) {
		t.Errorf("the audit log does not name what the discard deletes before it deletes it:\n%s", log)
	}
	cancel()

	// A restarted gateway (a new Open) finds them parked still; a lost sidecar queues its instance again (safe).
	sp2, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := sp2.Parked(""); len(p) != 3 {
		t.Errorf("after reopening, %d parked, want 3", len(p))
	}
	os.Remove(sp.jpath(parked[0].Key))
	sp3, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := sp3.Parked(""); len(p) != 2 {
		t.Errorf("after losing one parked sidecar, %d parked, want 2", len(p))
	}
}

func hasStudy(es []Entry, study string) bool {
	for _, e := range es {
		if e.StudyInstanceUID == study {
			return true
		}
	}
	return false
}

// TestUploaderRequestRefusedAlone: a request of several instances refused as a whole (413) is not pinned on any of
// them: each is sent alone next, and only the one renkei refuses alone is parked.
func TestUploaderRequestRefusedAlone(t *testing.T) {
	sp, err := Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	study := dicomtest.UID("alone-study")
	big := dicomtest.UID("alone-big")
	for i := 1; i <= 3; i++ {
		sop := dicomtest.UID(fmt.Sprintf("alone-%d", i))
		if i == 3 {
			sop = big
		}
		b := ctFile(t, dicomtest.CTOptions{StudyInstanceUID: study, SOPInstanceUID: sop, PatientID: "ALONE", Rows: 8, Cols: 8, Seed: int64(i), InstanceNumber: i})
		if _, err := sp.Put(context.Background(), bytes.NewReader(b), Entry{}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	requests := 0
	stored := map[string]bool{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mr := multipart.NewReader(r.Body, params["boundary"])
		var uids []string
		for {
			part, err := mr.NextPart()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(part)
			df, _ := dicom.Parse(bytes.NewReader(b), dicom.DefaultReadOptions)
			uids = append(uids, df.DataSet.String(dicom.SOPInstanceUID))
		}
		mu.Lock()
		defer mu.Unlock()
		requests++
		for _, u := range uids {
			if u == big { // the request holding it is too large
				http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
				return
			}
		}
		var items []string
		for _, u := range uids {
			stored[u] = true
			items = append(items, fmt.Sprintf(`{"00081155":{"vr":"UI","Value":[%q]}}`, u))
		}
		w.Header().Set("Content-Type", "application/dicom+json")
		fmt.Fprintf(w, `{"00081199":{"vr":"SQ","Value":[%s]}}`, strings.Join(items, ","))
	}))
	defer ts.Close()
	u := &Uploader{Spool: sp, Server: ts.URL, Token: "t", Client: ts.Client(), Poll: 10 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, RefusedBackoff: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go u.Run(ctx)
	for {
		all, _ := sp.List()
		if len(all) == 1 && !all[0].Parked.IsZero() {
			if all[0].SOPInstanceUID != big || all[0].ParkedKind != ParkedRequest {
				t.Errorf("parked %+v, want the large one as refused by request", all[0])
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after 10 s the spool holds %+v", all)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stored) != 2 || requests != 4 {
		t.Errorf("renkei stored %d in %d requests; want the 2 others in 4 (all three, then each alone)", len(stored), requests)
	}
}
