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
	"renkei/dimse"
	"renkei/internal/dicomtest"
)

// stowServer answers STOW-RS as renkei's dicomweb handler does (PS3.18 10.5.3): an instance is stored the first
// time; the same SOP Instance UID with other bytes is refused with 0x0111, and both appear in one answer.
type stowServer struct {
	mu     sync.Mutex
	stored map[string][]byte // by SOP Instance UID
}

func (s *stowServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	mr := multipart.NewReader(r.Body, params["boundary"])
	var ok, failed []string
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
		uid := df.DataSet.String(dicom.SOPInstanceUID)
		s.mu.Lock()
		prev, had := s.stored[uid]
		if !had {
			s.stored[uid] = b
		}
		s.mu.Unlock()
		item := fmt.Sprintf(`{"00081155":{"vr":"UI","Value":[%q]}`, uid)
		if had && !bytes.Equal(prev, b) {
			failed = append(failed, item+`,"00081197":{"vr":"US","Value":[273]},"00000902":{"vr":"LO","Value":["instance already stored with different content"]}}`)
			continue
		}
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

// TestUploaderDuplicateSOPInstance: a modality sends the same SOP Instance UID twice with different content (a
// corrected resend), so two files wait in the spool. renkei stores one and refuses the other (0x0111); the refused
// one must stay in the spool with renkei's reason, not be removed as if stored because its UID is also among the
// stored ones of the same answer.
func TestUploaderDuplicateSOPInstance(t *testing.T) {
	sp, err := Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	base := dicomtest.CTOptions{PatientID: "DUP1", Rows: 8, Cols: 8, Seed: 7, InstanceNumber: 1}
	first, second := base, base
	second.PatientName = "Corrected^Name"
	var keys []string
	for _, o := range []dicomtest.CTOptions{first, second} {
		e, err := sp.Put(context.Background(), bytes.NewReader(ctFile(t, o)), Entry{CallingAETitle: "CT1"})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, e.Key)
	}
	if keys[0] == keys[1] {
		t.Fatal("the two versions have the same bytes")
	}
	srv := &stowServer{stored: map[string][]byte{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	sent := make(chan Entry, 2)
	refused := make(chan struct{}, 2)
	ledger, err := OpenLedger(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	u := &Uploader{Spool: sp, Server: ts.URL, Token: "t", Client: ts.Client(), Poll: 20 * time.Millisecond, Ledger: ledger,
		Sent: func(e Entry) { sent <- e }, Refused: func() { refused <- struct{}{} }, RefusedBackoff: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go u.Run(ctx)
	// Files received just now wait 200 ms for the rest of their study; then both are answered within a second.
	deadline := time.After(5 * time.Second)
	gotSent, gotRefused := 0, 0
	for gotSent+gotRefused < 2 {
		select {
		case <-sent:
			gotSent++
		case <-refused:
			gotRefused++
		case <-deadline:
			all, _ := sp.List()
			t.Fatalf("after 5 s: %d sent, %d refused, spool %+v", gotSent, gotRefused, all)
		}
	}
	time.Sleep(100 * time.Millisecond) // nothing else may happen
	cancel()
	all, err := sp.List()
	if err != nil {
		t.Fatal(err)
	}
	if gotSent != 1 || len(all) != 1 {
		t.Fatalf("%d acknowledged, spool holds %d (want 1 and 1: the refused version stays)", gotSent, len(all))
	}
	if !strings.Contains(all[0].LastError, "0x0111") || all[0].NextAttempt.IsZero() {
		t.Errorf("the refused version's sidecar: %+v", all[0])
	}
	// A storage commitment of the instance, asked after the corrected resend, fails: renkei does not hold what the
	// modality sent last.
	c := &Commitments{Spool: sp, Ledger: ledger}
	committed, failed, pending, err := c.resolve([]dimse.SOPReference{{SOPClassUID: all[0].SOPClassUID, SOPInstanceUID: all[0].SOPInstanceUID}})
	if err != nil || len(committed) != 0 || len(failed) != 1 || pending != 0 {
		t.Errorf("storage commitment: committed %v, failed %v, pending %d, %v", committed, failed, pending, err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	f, err := sp.OpenFile(all[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kept, _ := io.ReadAll(f)
	if bytes.Equal(kept, srv.stored[all[0].SOPInstanceUID]) {
		t.Error("the spool kept the version renkei stored and dropped the refused one")
	}
}

// TestUploaderMissingFile: a spooled file removed by hand from objects/ while the gateway runs must not hold back the
// rest of its study (every request holding it failed as if renkei could not be reached): the others are sent and the
// orphan entry leaves the spool.
func TestUploaderMissingFile(t *testing.T) {
	sp, err := Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	for i := 1; i <= 3; i++ {
		e, err := sp.Put(context.Background(), bytes.NewReader(ctFile(t, dicomtest.CTOptions{PatientID: "GONE", Rows: 8, Cols: 8, Seed: 9, InstanceNumber: i})), Entry{})
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	if err := os.Remove(sp.path(entries[1].Key)); err != nil {
		t.Fatal(err)
	}
	srv := &stowServer{stored: map[string][]byte{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	var mu sync.Mutex
	var contactErrs []error
	u := &Uploader{Spool: sp, Server: ts.URL, Token: "t", Client: ts.Client(), Poll: 20 * time.Millisecond, MinBackoff: time.Minute,
		Contact: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				contactErrs = append(contactErrs, err)
			}
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go u.Run(ctx)
	for {
		srv.mu.Lock()
		n := len(srv.stored)
		srv.mu.Unlock()
		all, _ := sp.List()
		if n == 2 && len(all) == 0 {
			break
		}
		if ctx.Err() != nil {
			mu.Lock()
			t.Fatalf("after 5 s renkei holds %d of the 2 files left, the spool lists %d entries; contact errors %v", n, len(all), contactErrs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	if len(contactErrs) > 0 {
		t.Errorf("renkei was reported unreachable: %v", contactErrs)
	}
}
