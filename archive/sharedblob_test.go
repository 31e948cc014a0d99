package archive_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"renkei"
	"renkei/archive"
)

// Blob keys are the SHA-256 of the content: the same file stored by two institutions is one blob, and the blob a
// store no longer needs for one instance may be another's.

// instIndex stores every instance as the institution it is set to (what the access layer does for each caller),
// and runs after, when set, right after the index answered an insert.
type instIndex struct {
	archive.Index
	inst  int64
	after func(orphan string)
}

func (x *instIndex) Insert(ctx context.Context, in *renkei.Instance) (renkei.StoreOutcome, string, error) {
	in.Institution = x.inst
	out, orphan, err := x.Index.Insert(ctx, in)
	if x.after != nil {
		x.after(orphan)
	}
	return out, orphan, err
}

// TestRefusedBlobOfAnotherInstitution: a hospital imported a CD holding the clinic's instance (other File Meta
// Information, so other bytes); the clinic then sends the same file again. For the clinic it is a duplicate of its
// own copy, and the bytes it sent were removed as unused, but they were the hospital's stored blob (keys are the
// content's hash, shared by every institution): the hospital's instance could no longer be read.
func TestRefusedBlobOfAnotherInstitution(t *testing.T) {
	ctx := context.Background()
	a, blobs, data := newArchive(t)
	idx := &instIndex{Index: a.Index}
	a.Index = idx
	cd := bytes.Clone(data)
	cd[0] = 'X' // the preamble: another file of the same data set
	changed := bytes.Clone(data)
	changed[len(changed)-1] ^= 0xFF // one pixel differs: another data set under the same UID
	for _, s := range []struct {
		inst    int64
		data    []byte
		outcome renkei.StoreOutcome
		failure uint16
	}{
		{1, data, renkei.Stored, 0},                       // the clinic's own copy
		{2, cd, renkei.Stored, 0},                         // the hospital imports the CD
		{1, cd, renkei.Duplicate, 0},                      // the clinic sends the CD's file: the same instance
		{3, changed, renkei.Stored, 0},                    // a third institution holds a changed copy
		{1, changed, 0, archive.StatusDuplicateDifferent}, // which the clinic refuses as another data set
	} {
		idx.inst = s.inst
		if res := a.Store(ctx, bytes.NewReader(s.data), archive.StoreRequest{}); res.Outcome != s.outcome || res.Failure != s.failure {
			t.Fatalf("store at institution %d: outcome %v, failure 0x%04X (%v), want %v 0x%04X", s.inst, res.Outcome, res.Failure, res.Err, s.outcome, s.failure)
		}
	}
	recs, err := a.Instances(ctx, "", "", "")
	if err != nil || len(recs) != 3 {
		t.Fatalf("instances: %d %v", len(recs), err)
	}
	for _, r := range recs {
		b, err := blobs.Open(ctx, r.BlobKey)
		if err != nil {
			t.Errorf("an instance of institution %d has lost its blob: %v", r.Series.Study.Institution, err)
			continue
		}
		b.Close()
	}
}

// TestReplacedBlobStoredMeanwhile: an instance in the trash sent again with other bytes replaces its trashed copy,
// whose blob the index then names as unused; the same bytes stored by another institution at that moment keep it.
func TestReplacedBlobStoredMeanwhile(t *testing.T) {
	ctx := context.Background()
	a, blobs, data := newArchive(t)
	next := a.Index
	idx := &instIndex{Index: next, inst: 1}
	a.Index = idx
	if res := a.Store(ctx, bytes.NewReader(data), archive.StoreRequest{}); res.Outcome != renkei.Stored {
		t.Fatal(res.Err)
	}
	recs, err := a.Instances(ctx, "", "", "")
	if err != nil || len(recs) != 1 {
		t.Fatalf("instances: %d %v", len(recs), err)
	}
	first := recs[0]
	if _, err := a.Delete(ctx, first.Series.Study.StudyInstanceUID, "", ""); err != nil {
		t.Fatal(err)
	}
	idx.after = func(orphan string) {
		if orphan != first.BlobKey {
			t.Errorf("the replaced copy's blob %q is not named unused (%q)", first.BlobKey, orphan)
			return
		}
		// Another institution's ingest of the same file commits now (its blob write found the file there).
		in := &renkei.Instance{Institution: 9, Patient: renkei.PatientKey{Issuer: "X", ID: "S"}, StudyInstanceUID: first.Series.Study.StudyInstanceUID,
			SeriesInstanceUID: first.Series.SeriesInstanceUID, SOPInstanceUID: first.SOPInstanceUID, SOPClassUID: first.SOPClassUID,
			TransferSyntaxUID: first.TransferSyntaxUID, BlobKey: orphan, Size: first.Size, ReceivedAt: time.Now()}
		if out, _, err := next.Insert(ctx, in); err != nil || out != renkei.Stored {
			t.Errorf("the other institution's insert: %v %v", out, err)
		}
	}
	changed := bytes.Clone(data)
	changed[len(changed)-1] ^= 0xFF
	if res := a.Store(ctx, bytes.NewReader(changed), archive.StoreRequest{}); res.Outcome != renkei.Stored {
		t.Fatalf("store over the trashed copy: %v %v", res.Outcome, res.Err)
	}
	b, err := blobs.Open(ctx, first.BlobKey)
	if err != nil {
		t.Fatalf("the other institution's instance has lost its blob: %v", err)
	}
	b.Close()
}
