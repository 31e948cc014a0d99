package disk_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"renkei/blob"
	"renkei/blob/blobtest"
	"renkei/blob/disk"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := disk.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestDuplicateRefreshesTime: a duplicate of an old blob gets a new written time, so that the orphan sweep (which
// removes unused blobs written before its cutoff) does not remove it while the new instance that uses it is indexed.
func TestDuplicateRefreshesTime(t *testing.T) {
	root := t.TempDir()
	s, err := disk.Open(root)
	if err != nil {
		t.Fatal(err)
	}
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
