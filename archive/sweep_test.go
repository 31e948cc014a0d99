package archive_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"renkei"
	"renkei/archive"
	"renkei/blob/disk"
	"renkei/internal/dicomtest"
	"renkei/sqlstore"
)

// TestSweepOrphans: a blob written but never indexed (a crash between the two) is removed once old enough; blobs of
// stored instances and fresh blobs (an ingest may still be in flight) are kept.
func TestSweepOrphans(t *testing.T) {
	ctx := context.Background()
	a, blobs, data := newArchive(t)
	if res := a.Store(ctx, bytes.NewReader(data), archive.StoreRequest{}); res.Err != nil {
		t.Fatal(res.Err)
	}
	w, _ := blobs.Create(ctx)
	w.Write([]byte("written, then the process died before the index transaction"))
	orphan, _, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := a.SweepOrphans(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("a fresh orphan was swept (%d, %v): an ingest may still be using it", n, err)
	}
	n, err := a.SweepOrphans(ctx, time.Now().Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("swept %d (%v), want the one orphan", n, err)
	}
	if _, err := blobs.Open(ctx, orphan); err == nil {
		t.Error("the orphan blob is still there")
	}
	recs, err := a.Instances(ctx, "", "", "")
	if err != nil || len(recs) != 1 {
		t.Fatalf("instances after sweep: %d %v", len(recs), err)
	}
	if r, err := blobs.Open(ctx, recs[0].BlobKey); err != nil {
		t.Errorf("the stored instance's blob was swept: %v", err)
	} else {
		r.Close()
	}
}

// TestSameDataSetOtherMeta: the same instance sent again through another path (another File Meta Information, as
// after a gateway or C-STORE following STOW-RS) is a duplicate; the same UID with another data set is refused.
func TestSameDataSetOtherMeta(t *testing.T) {
	ctx := context.Background()
	a, _, data := newArchive(t)
	if res := a.Store(ctx, bytes.NewReader(data), archive.StoreRequest{}); res.Err != nil {
		t.Fatal(res.Err)
	}
	// Same data set, other bytes before it: the preamble is not part of the data set.
	other := bytes.Clone(data)
	other[0] = 'X'
	if res := a.Store(ctx, bytes.NewReader(other), archive.StoreRequest{}); res.Err != nil || res.Outcome != renkei.Duplicate {
		t.Errorf("same data set, other meta: %v (outcome %v), want a duplicate", res.Err, res.Outcome)
	}
	changed := bytes.Clone(data)
	changed[len(changed)-1] ^= 0xFF // one pixel differs
	if res := a.Store(ctx, bytes.NewReader(changed), archive.StoreRequest{}); res.Failure != archive.StatusDuplicateDifferent {
		t.Errorf("same UID, other pixels: failure 0x%04X (%v), want 0x0111", res.Failure, res.Err)
	}
}

// newArchive opens an archive on a real SQLite file and blob folder in a temporary folder, with one small CT file's
// bytes to store.
func newArchive(t *testing.T) (*archive.Service, *disk.Store, []byte) {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlstore.Open(context.Background(), filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := disk.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "ct.dcm")
	if err := dicomtest.CT(p, dicomtest.CTOptions{Rows: 16, Cols: 16, PatientID: "S"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return archive.New(db, blobs, slog.New(slog.NewTextHandler(io.Discard, nil))), blobs, data
}
