package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"renkei"
	"renkei/blob/disk"
	"renkei/sqlstore"
)

// TestBackupPurgedMeanwhile: the server's hourly purge runs while a backup copies the blobs of its index snapshot,
// and removes an instance of the trash, then its blob, which the snapshot still names. The backup once failed as a
// whole on that blob ("no such file"), whenever a purge fell within a backup's run. The generation now holds the
// snapshot purged the same way, and every blob its index names; a blob missing under a live instance still fails
// the backup.
func TestBackupPurgedMeanwhile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(ctx, filepath.Join(data, indexFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	blobs, err := disk.Open(filepath.Join(data, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	db.Now = func() time.Time { return t0 }
	var keys []string
	for i, content := range []string{"kept", "trashed"} {
		w, err := blobs.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(content))
		key, size, err := w.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
		uid := []string{"1.1", "1.2"}[i]
		if _, _, err := db.Insert(ctx, &renkei.Instance{Patient: renkei.PatientKey{Issuer: "I", ID: "P" + uid}, StudyInstanceUID: uid,
			SeriesInstanceUID: uid + ".1", SOPInstanceUID: uid + ".1.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.7",
			TransferSyntaxUID: "1.2.840.10008.1.2.1", BlobKey: key, Size: size, ReceivedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Trash(ctx, renkei.TrashRequest{Study: "1.2"}); err != nil {
		t.Fatal(err)
	}
	backup := func() (string, backupManifest, string, error) {
		t.Helper()
		start := time.Now()
		gen := filepath.Join(t.TempDir(), indexFile)
		if err := sqlstore.Snapshot(ctx, filepath.Join(data, indexFile), gen); err != nil {
			t.Fatal(err)
		}
		// The server's purger runs now: the trashed study leaves the index, then its blob the folder.
		purged, err := db.Purge(ctx, t0.Add(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range purged {
			blobs.Delete(ctx, k)
		}
		into, err := disk.Open(filepath.Join(t.TempDir(), "blobs")) // a new backup folder
		if err != nil {
			t.Fatal(err)
		}
		m := backupManifest{Files: map[string]string{}}
		list, err := backupBlobs(ctx, gen, &disk.Store{Root: filepath.Join(data, "blobs")}, into, start, &m)
		return list, m, gen, err
	}
	list, m, gen, err := backup()
	if err != nil {
		t.Fatalf("a backup during a purge: %v", err)
	}
	if list != keys[0]+"\n" || m.Blobs != 1 || m.Counts.Instances != 1 || m.Counts.Studies != 1 {
		t.Errorf("the generation lists %q, manifest %+v; want the kept blob and instance only", list, m)
	}
	// Whole: its index names no blob it does not hold (what restore checks), and its hash is the file's.
	sdb, err := sqlstore.Open(ctx, gen)
	if err != nil {
		t.Fatal(err)
	}
	named, err := sdb.BlobKeys(ctx, "", 10)
	sdb.Close()
	if err != nil || !slices.Equal(named, keys[:1]) {
		t.Errorf("the generation's index names %v (%v), want %v", named, err, keys[:1])
	}
	os.Remove(gen + "-wal")
	os.Remove(gen + "-shm")
	if sum, err := fileSHA256(gen); err != nil || sum != m.Index {
		t.Errorf("the generation's index hashes to %s (%v), the manifest says %s", sum, err, m.Index)
	}

	// A blob lost under a live instance is damage, not a purge: the backup fails and says which.
	if err := blobs.Delete(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := backup(); err == nil || !strings.Contains(err.Error(), keys[0]) {
		t.Errorf("a backup with the blob of a live instance missing: %v, want an error naming it", err)
	}
}
