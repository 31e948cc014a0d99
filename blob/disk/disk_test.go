package disk_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei"

	"renkei/blob"
	"renkei/blob/blobtest"
	"renkei/blob/disk"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return open(t) })
}

// TestConformanceModes runs the suite with every Commit sharing flushes, and with each syncing its own file and
// folder (as on systems without syncfs(2)).
func TestConformanceModes(t *testing.T) {
	for _, mode := range []string{"shared", "per-file"} {
		t.Run(mode, func(t *testing.T) {
			blobtest.Run(t, func(t *testing.T) blob.Store { return openMode(t, mode) })
		})
	}
}

// openMode opens a store that syncs the default way, or with every Commit sharing flushes ("shared"), or with each
// Commit syncing its own file and folder ("per-file").
func openMode(t *testing.T, mode string) *disk.Store {
	t.Helper()
	s := open(t)
	switch mode {
	case "shared":
		if !disk.AlwaysShare(s) {
			t.Skip("no syncfs(2) here")
		}
	case "per-file":
		disk.PerFileSync(s)
	}
	return s
}

func open(t *testing.T) *disk.Store {
	t.Helper()
	s, err := disk.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestConcurrentCommits commits many blobs at once, some of them the same bytes, so that Commits share flushes and
// meet duplicates still being stored: each returns its key, every blob reads back whole, and no temporary file is
// left.
func TestConcurrentCommits(t *testing.T) {
	for _, mode := range []string{"default", "shared", "per-file"} {
		t.Run(mode, func(t *testing.T) {
			s := openMode(t, mode)
			const writers, distinct = 64, 24 // writers i and i+24 (and i+48) store the same bytes
			data := make([][]byte, distinct)
			for i := range data {
				data[i] = blobtest.Bytes(1000+i*4099, uint64(i))
			}
			keys := make([]string, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() { keys[i], _ = blobtest.Put(t, s, data[i%distinct]) })
			}
			wg.Wait()
			for i, key := range keys {
				if want := blobtest.Key(data[i%distinct]); key != want {
					t.Errorf("writer %d: key %s, want %s", i, key, want)
				}
			}
			var want []string
			for _, d := range data {
				key := blobtest.Key(d)
				blobtest.ReadEqual(t, s, key, d)
				want = append(want, key)
			}
			if diff := cmp.Diff(sortedCopy(want), blobtest.Keys(t, s)); diff != "" {
				t.Errorf("stored keys (-want +got):\n%s", diff)
			}
			noTemporaryFiles(t, s)
		})
	}
}

// TestCommitError makes the renames of some Commits fail (a file stands where their fan-out folder should be), while
// others commit at the same time: the failing ones report Unavailable and leave nothing, the others are stored.
func TestCommitError(t *testing.T) {
	for _, mode := range []string{"default", "shared", "per-file"} {
		t.Run(mode, func(t *testing.T) {
			s := openMode(t, mode)
			var bad, good [][]byte
			for i := uint64(0); len(bad) < 8 || len(good) < 8; i++ {
				d := blobtest.Bytes(5000, i)
				if blobtest.Key(d)[0] == '0' {
					bad = append(bad, d)
				} else {
					good = append(good, d)
				}
			}
			// Not a folder: Commit's mkdir finds it and its rename into it fails (the store never made 0xx folders).
			for i := 0; i < 256; i++ {
				if err := os.WriteFile(filepath.Join(s.Root, fmt.Sprintf("0%02x", i)), nil, 0o640); err != nil {
					t.Fatal(err)
				}
			}
			ctx := context.Background()
			errs := make([]error, len(bad))
			var wg sync.WaitGroup
			for i, d := range bad {
				wg.Go(func() {
					w, err := s.Create(ctx)
					if err != nil {
						errs[i] = err
						return
					}
					w.Write(d)
					_, _, errs[i] = w.Commit(ctx)
				})
			}
			for _, d := range good {
				wg.Go(func() { blobtest.Put(t, s, d) })
			}
			wg.Wait()
			for i, err := range errs {
				if e := (*renkei.Error)(nil); !errors.As(err, &e) || e.Kind != renkei.Unavailable {
					t.Errorf("blob %d: Commit error %v, want an Unavailable renkei.Error", i, err)
				}
			}
			for _, d := range good {
				blobtest.ReadEqual(t, s, blobtest.Key(d), d)
			}
			noTemporaryFiles(t, s)
		})
	}
}

func sortedCopy(keys []string) []string {
	out := append([]string(nil), keys...)
	slices.Sort(out)
	return out
}

func noTemporaryFiles(t *testing.T, s *disk.Store) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Root, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("temporary file left: %s", e.Name())
	}
}

// TestDuplicateRefreshesTime: a duplicate of an old blob gets a new written time, so that the orphan sweep (which
// removes unused blobs written before its cutoff) does not remove it while the new instance that uses it is indexed.
func TestDuplicateRefreshesTime(t *testing.T) {
	s := open(t)
	root := s.Root
	data := blobtest.Bytes(1000, 1)
	key, _ := blobtest.Put(t, s, data)
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(root, key[:3], key), old, old); err != nil {
		t.Fatal(err)
	}
	blobtest.Put(t, s, data)
	s.List(context.Background(), func(k string, written time.Time) error {
		if time.Since(written) > time.Minute {
			t.Errorf("after a duplicate the blob's written time is %v", written)
		}
		return nil
	})
}
