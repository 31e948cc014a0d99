package archive_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"renkei"
	"renkei/archive"
)

// heldIndex is an index whose purge leaves one study in the trash (as sqlstore.DB.Purge does when a row still
// refers to it): it returns the blobs of what it did purge together with the error.
type heldIndex struct {
	archive.Index
	mu    sync.Mutex
	calls int
	keys  []string
}

func (x *heldIndex) Purge(ctx context.Context, cutoff time.Time) ([]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.calls++
	keys := x.keys
	x.keys = nil
	return keys, renkei.Errorf("index.Purge", renkei.Unavailable, "1 of 2 studies in the trash could not be purged; the others were: study 6.2 held")
}

func (x *heldIndex) BlobInUse(ctx context.Context, key string) (bool, error) { return false, nil }

// TestPurgerPartial: the blobs of what the index purged are deleted even when part of the trash could not be purged,
// the error reaches the log as it is, and the purger tries again at its next round. The blobs of a purge that
// failed in part were once left on disk, and the index no longer named them.
func TestPurgerPartial(t *testing.T) {
	ctx := context.Background()
	a, blobs, _ := newArchive(t)
	w, _ := blobs.Create(ctx)
	w.Write([]byte("an instance purged from the index"))
	key, _, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idx := &heldIndex{Index: a.Index, keys: []string{key}}
	a.Index = idx
	var log syncBuffer
	a.Logger = slog.New(slog.NewTextHandler(&log, nil))

	n, err := a.Purge(ctx)
	if renkei.ErrorKind(err) != renkei.Unavailable || n != 1 {
		t.Errorf("purge: %d %v, want the one blob purged and the error", n, err)
	}
	if _, err := blobs.Open(ctx, key); err == nil {
		t.Error("the blob of the purged instance is still there")
	}

	run, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.RunPurger(run, 5*time.Millisecond); close(done) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		idx.mu.Lock()
		calls := idx.calls
		idx.mu.Unlock()
		if calls >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the purger ran %d times in 5 s", calls)
		}
	}
	stop()
	<-done
	if s := log.String(); !strings.Contains(s, `msg="purge trash"`) || !strings.Contains(s, "study 6.2 held") {
		t.Errorf("the log does not say why the purge failed:\n%s", s)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// resendIndex stores the same bytes again right after the index's purge committed, before the archive deletes the
// blobs it returned: a modality sending a purged study again while the purge runs.
type resendIndex struct {
	archive.Index
	resend func()
}

func (x *resendIndex) Purge(ctx context.Context, cutoff time.Time) ([]string, error) {
	keys, err := x.Index.Purge(ctx, cutoff)
	x.resend()
	return keys, err
}

// TestPurgeResentMeanwhile: an instance stored again with the same bytes between the index's purge and the deletion
// of its blobs keeps its blob. The blob was once deleted under the new instance, which had been acknowledged as
// stored and could then never be read.
func TestPurgeResentMeanwhile(t *testing.T) {
	ctx := context.Background()
	a, blobs, data := newArchive(t)
	if res := a.Store(ctx, bytes.NewReader(data), archive.StoreRequest{}); res.Err != nil {
		t.Fatal(res.Err)
	}
	recs, err := a.Instances(ctx, "", "", "")
	if err != nil || len(recs) != 1 {
		t.Fatalf("instances: %d %v", len(recs), err)
	}
	if _, err := a.Delete(ctx, recs[0].Series.Study.StudyInstanceUID, "", ""); err != nil {
		t.Fatal(err)
	}
	a.TrashPeriod = -time.Minute // the trash is old enough at once
	a.Index = &resendIndex{Index: a.Index, resend: func() {
		if res := a.Store(ctx, bytes.NewReader(data), archive.StoreRequest{}); res.Err != nil || res.Outcome != renkei.Stored {
			t.Errorf("store again during the purge: %v %v", res.Outcome, res.Err)
		}
	}}
	if _, err := a.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err = a.Instances(ctx, "", "", "")
	if err != nil || len(recs) != 1 {
		t.Fatalf("instances after the purge: %d %v", len(recs), err)
	}
	r, err := blobs.Open(ctx, recs[0].BlobKey)
	if err != nil {
		t.Fatalf("the instance stored again has lost its blob: %v", err)
	}
	r.Close()
}
