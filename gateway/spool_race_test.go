package gateway

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"

	"renkei/internal/dicomtest"
)

// TestSpoolPutWhileRemoved: a modality sends an instance again (the same bytes, so the same key) while the uploader
// removes the first copy after renkei acknowledged it. Whatever the interleaving, the spool must never list an entry
// whose file is gone: the uploader would fail every request holding it, as if renkei could not be reached, and hold
// back the rest of its study until a restart.
func TestSpoolPutWhileRemoved(t *testing.T) {
	sp, err := Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	file := ctFile(t, dicomtest.CTOptions{PatientID: "RACE", Rows: 8, Cols: 8, Seed: 3})
	e, err := sp.Put(context.Background(), bytes.NewReader(file), Entry{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 600; i++ { // about one round in 200 hit the race before the fix
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := sp.Put(context.Background(), bytes.NewReader(file), Entry{}); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := sp.RemoveAll([]string{e.Key}); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		all, err := sp.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range all {
			if _, err := os.Stat(sp.path(got.Key)); err != nil {
				t.Fatalf("round %d: the spool lists %s without its file: %v", i, got.Key, err)
			}
		}
		if _, err := os.Stat(sp.path(e.Key)); err == nil && len(all) == 0 {
			t.Fatalf("round %d: the file is in the spool but not listed", i)
		}
	}
}
