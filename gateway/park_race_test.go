package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
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
