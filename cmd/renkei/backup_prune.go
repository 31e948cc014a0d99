package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"renkei/internal/fsync"
)

// Pruning a backup folder: the oldest complete generations beyond --keep, then the blobs in BACKUPDIR/blobs that no
// remaining generation lists, and the folders of runs that did not finish. Every step is safe to interrupt:
//   - a generation to remove is first renamed NAME.pruning (one atomic rename, synced): from then on it is not a
//     complete generation, restore never picks it, and the next run removes what is left of it;
//   - a blob is removed only if no remaining generation's blobs.txt lists it, and the lists are read (and checked
//     against their manifests) before anything is removed: if one cannot be read, nothing is removed at all;
//   - only one backup works in a folder at a time (an exclusive lock on BACKUPDIR/backup.lock, which the kernel
//     releases when the process ends however it ends), so no other run is between finding a blob already in the
//     backup and writing the blobs.txt that lists it, and a NAME.partial folder there is a left-over.

const (
	backupLockFile  = "backup.lock"
	generationTime  = "20060102T150405Z"
	partialSuffix   = ".partial"
	pruningSuffix   = ".pruning"
	defaultKeepGens = 7
)

// lockBackupDir takes the backup folder's lock for this process, or says that another backup holds it. Closing the
// file releases it.
func lockBackupDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, backupLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another renkei admin backup is writing to %s: let it end first (two at once could remove blobs the other one needs)", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// removeLeftovers removes the NAME.partial folders of backups that did not finish and the NAME.pruning folders of
// prunings that did not finish. The caller holds the lock, so none of them belongs to a running backup.
func removeLeftovers(dir string, out io.Writer) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() || !strings.HasSuffix(name, partialSuffix) && !strings.HasSuffix(name, pruningSuffix) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
		fmt.Fprintf(out, "removed %s, left by a backup or pruning that did not finish\n", name)
	}
	return nil
}

// pruneBackup keeps the newest keep complete generations of dir, removes the older ones, then the blobs no kept
// generation lists. The caller holds the lock and has just written a complete generation.
func pruneBackup(dir string, keep int, out io.Writer) error {
	gens, err := backupGenerations(dir)
	if err != nil {
		return err
	}
	old := gens[:max(0, len(gens)-keep)]
	// The blobs every remaining generation needs, read before anything is removed. Every folder named like a
	// generation counts, complete or not (one without a manifest is something this program did not make: it
	// stops the pruning rather than lose what it may need).
	needed := map[string]bool{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() || slices.Contains(old, name) {
			continue
		}
		if _, err := time.Parse(generationTime, name); err != nil {
			continue
		}
		if err := generationBlobs(filepath.Join(dir, name), needed); err != nil {
			return fmt.Errorf("generation %s: %w; nothing was removed", name, err)
		}
	}

	// The old generations: out of sight in one rename each, then removed.
	for _, g := range old {
		if err := os.Rename(filepath.Join(dir, g), filepath.Join(dir, g+pruningSuffix)); err != nil {
			return fmt.Errorf("remove generation %s: %w", g, err)
		}
	}
	if err := fsync.Dir(dir); err != nil {
		return err
	}
	for _, g := range old {
		if err := os.RemoveAll(filepath.Join(dir, g+pruningSuffix)); err != nil {
			return fmt.Errorf("remove generation %s: %w", g, err)
		}
	}
	if len(old) > 0 {
		fmt.Fprintf(out, "removed %d old generation(s), keeping %d: %s\n", len(old), keep, strings.Join(old, ", "))
	}

	// The blobs no remaining generation lists: those only the removed generations held, and those copied by runs
	// that did not finish.
	root := filepath.Join(dir, "blobs")
	subs, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	var n, size int64
	for _, s := range subs {
		if !s.IsDir() || len(s.Name()) != 3 {
			continue // tmp/ is the blob store's own
		}
		files, err := os.ReadDir(filepath.Join(root, s.Name()))
		if err != nil {
			return err
		}
		for _, f := range files {
			k := f.Name()
			if f.IsDir() || !isBlobKey(k) || !strings.HasPrefix(k, s.Name()) || needed[k] {
				continue
			}
			info, err := f.Info()
			if err != nil {
				return err
			}
			if err := os.Remove(filepath.Join(root, s.Name(), k)); err != nil {
				return fmt.Errorf("remove blob %s: %w", k, err)
			}
			n++
			size += info.Size()
		}
	}
	if n > 0 {
		fmt.Fprintf(out, "removed %d blob(s) (%s) that no kept generation lists\n", n, bytesText(size))
	}
	return nil
}

// generationBlobs adds the keys a generation's blobs.txt lists to keys, after checking the list against the
// manifest's SHA-256 and count: a damaged list must not decide which blobs go.
func generationBlobs(genDir string, keys map[string]bool) error {
	mb, err := os.ReadFile(filepath.Join(genDir, manifestFile))
	if err != nil {
		return err
	}
	var m backupManifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return fmt.Errorf("%s: %w", manifestFile, err)
	}
	lb, err := os.ReadFile(filepath.Join(genDir, blobListFile))
	if err != nil {
		return err
	}
	if s := sha256.Sum256(lb); hex.EncodeToString(s[:]) != m.BlobList {
		return fmt.Errorf("%s is damaged: its SHA-256 is not the one in the manifest", blobListFile)
	}
	var n int64
	sc := bufio.NewScanner(bytes.NewReader(lb))
	for sc.Scan() {
		if !isBlobKey(sc.Text()) {
			return fmt.Errorf("%s lists %q, which is not a blob key", blobListFile, sc.Text())
		}
		keys[sc.Text()] = true
		n++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if n != m.Blobs {
		return fmt.Errorf("%s lists %d blobs, the manifest %d", blobListFile, n, m.Blobs)
	}
	return nil
}

// isBlobKey reports whether s is a blob key: 64 lowercase hex digits.
func isBlobKey(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
