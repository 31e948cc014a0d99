package main

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"renkei/dicom"
	"renkei/dimse"
)

// TestServeDIMSEIdleCap: 200 idle associations held open against renkei serve (a misbehaving peer, or a slow
// attack) fill its --dimse-max-associations; the next is refused as temporary congestion, at once, and a place freed
// is usable again. Nothing else is disturbed: C-ECHO on a held association still answers.
func TestServeDIMSEIdleCap(t *testing.T) {
	const limit = 200
	dir := t.TempDir()
	addr := freeAddr(t)
	_, stop := serveForTest(t, "serve", "--demo", "--data", filepath.Join(dir, "data"), "--http", "127.0.0.1:0", "--dimse", addr,
		"--dimse-accept-any", "--dimse-max-associations", "200", "--log-level", "error")
	defer stop()
	ctx := context.Background()
	pcs := []dimse.PresentationContext{{AbstractSyntax: dimse.Verification, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}}}
	held := make([]*dimse.Association, 0, limit)
	defer func() {
		for _, a := range held {
			a.Abort()
		}
	}()
	for i := range limit {
		a, err := dimse.Dial(ctx, addr, "IDLE", "RENKEI", pcs)
		if err != nil {
			t.Fatalf("association %d of %d: %v", i+1, limit, err)
		}
		held = append(held, a)
	}
	_, err := dimse.Dial(ctx, addr, "IDLE", "RENKEI", pcs)
	var rj *dimse.RejectError
	if !errors.As(err, &rj) || rj.Reject != *dimse.RejectTemporaryCongestion.PDU() {
		t.Fatalf("association %d: %v, want A-ASSOCIATE-RJ temporary congestion", limit+1, err)
	}
	if st, err := held[limit/2].Echo(ctx); err != nil || !st.IsSuccess() {
		t.Errorf("C-ECHO on a held association: %v %v", st, err)
	}
	held[0].Release(ctx)
	held = held[1:]
	// The server frees the place when its side of the released association has ended, a moment after the release.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		a, err := dimse.Dial(ctx, addr, "IDLE", "RENKEI", pcs)
		if err == nil {
			held = append(held, a)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after one was released: %v", err)
		}
	}
}
