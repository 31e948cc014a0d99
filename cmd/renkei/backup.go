package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"renkei/blob/disk"
	"renkei/internal/fsync"
	"renkei/sqlstore"
)

const backupUsage = `Usage:
  renkei admin backup --data DIR --to BACKUPDIR [--keep N] [--backup-marker FILE]
  renkei admin restore --from BACKUPDIR [--generation NAME] --data EMPTYDIR

backup copies the embedded form of a region (SQLite index and blob folder) while renkei serve runs and ingests: a
consistent snapshot of the index (SQLite's VACUUM INTO), the blobs that snapshot refers to, checked against their
SHA-256 as they are copied, and the data folder's other files (the audit key, demo accounts). Each run adds one
generation, BACKUPDIR/<UTC time>/, with a manifest.json; blobs are shared by every generation in BACKUPDIR/blobs/ and
copied only once, so a daily run copies only what arrived since the last one. On success it touches --backup-marker,
which renkei serve --backup-marker shows on the security page, then keeps the newest --keep generations (default 7;
0 keeps all): it removes the older ones and the blobs in BACKUPDIR/blobs that no kept generation lists, and the
folders (NAME.partial) of runs that did not finish. It removes nothing if a kept generation's blob list cannot be
read or does not match its manifest. One backup at a time works in BACKUPDIR; a second one is refused.

restore brings the newest generation (or --generation NAME) back into an empty data folder, checks the SHA-256 of the
index copy and of every blob, verifies the audit chain, and says what it restored. Start renkei serve --data EMPTYDIR.

The backup holds the audit signing key and patient data: keep it encrypted, and keep one copy off the machine and
off the network. PostgreSQL and S3 deployments back up with pg_dump or PITR and bucket versioning instead (README).
`

// backupManifest describes one generation of a backup. It is written last: a generation without one is incomplete.
type backupManifest struct {
	Format      int                  `json:"format"`
	Time        time.Time            `json:"time"`         // when the index snapshot was taken
	Source      string               `json:"source"`       // the data folder backed up
	AuditHead   int64                `json:"audit_head"`   // the newest audit event in the snapshot
	Index       string               `json:"index_sha256"` // of index.db in this generation
	Counts      sqlstore.IndexCounts `json:"counts"`
	Blobs       int64                `json:"blobs"`        // listed in blobs.txt, all in ../blobs
	BlobBytes   int64                `json:"blob_bytes"`   // their total size
	BlobList    string               `json:"blobs_sha256"` // of blobs.txt
	CopiedBlobs int64                `json:"copied_blobs"` // new in this run; the rest were in the backup already
	Files       map[string]string    `json:"files"`        // other files of the data folder → SHA-256
}

const (
	manifestFile = "manifest.json"
	blobListFile = "blobs.txt"
	indexFile    = "index.db"
)

// adminBackup runs renkei admin backup.
func adminBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("renkei admin backup", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, backupUsage); fl.PrintDefaults() }
	data := fl.String("data", "./renkei-data", "the data folder of the region (its index.db, blobs/ and audit key)")
	to := fl.String("to", "", "the backup folder (created if needed; later runs add generations to it)")
	marker := fl.String("backup-marker", "", "a file to touch after a successful backup (what renkei serve --backup-marker watches)")
	keep := fl.Int("keep", defaultKeepGens, "how many generations to keep, the newest (0: keep every generation)")
	pg := fl.String("db", "", "refused: an index on PostgreSQL is backed up with PostgreSQL's own tools")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if err := envFlags(fl); err != nil {
		return err
	}
	if *to == "" {
		return fmt.Errorf("--to: give the backup folder")
	}
	if *pg != "" {
		return fmt.Errorf("--db (RENKEI_DB): an index on PostgreSQL is backed up with pg_dump or PITR, its blobs with bucket versioning (see README, Backup and restore); admin backup copies the embedded form")
	}
	if *keep < 0 {
		return fmt.Errorf("--keep: give a number of generations, or 0 to keep them all")
	}
	index := filepath.Join(*data, indexFile)
	if _, err := os.Stat(index); err != nil {
		return fmt.Errorf("--data %s holds no index.db: %w", *data, err)
	}
	if err := os.MkdirAll(*to, 0o700); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	lock, err := lockBackupDir(*to)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := removeLeftovers(*to, stdout); err != nil {
		return err
	}
	start := time.Now()
	gen := start.UTC().Format(generationTime)
	partial := filepath.Join(*to, gen+partialSuffix)
	if err := os.Mkdir(partial, 0o700); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	defer os.RemoveAll(partial) // gone once renamed; left-overs of a failed run go too

	// 1. The index, as of one instant. Blobs are committed before the rows that name them, so every blob the
	// snapshot refers to exists by now.
	snap := filepath.Join(partial, indexFile)
	if err := sqlstore.Snapshot(ctx, index, snap); err != nil {
		return err
	}
	m := backupManifest{Format: 1, Time: start.UTC(), Source: *data, Files: map[string]string{}}

	// 2. The blobs, into the shared content-addressed folder: a key already there is the same bytes.
	src := &disk.Store{Root: filepath.Join(*data, "blobs")} // not disk.Open: that would clear the server's temporary files
	into, err := disk.Open(filepath.Join(*to, "blobs"))
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	list, err := backupBlobs(ctx, snap, src, into, start, &m)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(list))
	m.BlobList = hex.EncodeToString(sum[:])
	if err := writeFileSync(filepath.Join(partial, blobListFile), []byte(list), 0o600); err != nil {
		return err
	}

	// 3. The data folder's other files: the audit key (without it the restored chain cannot be signed on, nor its
	// checkpoints checked), the demo accounts, whatever else lives beside the index.
	ents, err := os.ReadDir(*data)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || name == indexFile || strings.HasPrefix(name, indexFile+"-") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(*data, name))
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if err := writeFileSync(filepath.Join(partial, name), b, info.Mode().Perm()); err != nil {
			return err
		}
		s := sha256.Sum256(b)
		m.Files[name] = hex.EncodeToString(s[:])
	}

	// 4. The manifest, then the generation's final name: a generation is there whole or not at all.
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(partial, manifestFile), append(mb, '\n'), 0o600); err != nil {
		return err
	}
	if err := fsync.Dir(partial); err != nil {
		return err
	}
	if err := os.Rename(partial, filepath.Join(*to, gen)); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if err := fsync.Dir(*to); err != nil {
		return err
	}
	if *marker != "" {
		now := time.Now()
		f, err := os.OpenFile(*marker, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("--backup-marker: %w", err)
		}
		f.Close()
		if err := os.Chtimes(*marker, now, now); err != nil {
			return fmt.Errorf("--backup-marker: %w", err)
		}
	}
	fmt.Fprintf(stdout, "backup %s written to %s (%s)\n", gen, filepath.Join(*to, gen), time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "index as of %s: %s; audit chain up to event %d\n", m.Time.Local().Format("2006-01-02 15:04:05"), countsText(m.Counts), m.AuditHead)
	fmt.Fprintf(stdout, "blobs: %d (%s), %d copied now, %d already in the backup\n", m.Blobs, bytesText(m.BlobBytes), m.CopiedBlobs, m.Blobs-m.CopiedBlobs)
	if *keep > 0 {
		if err := pruneBackup(*to, *keep, stdout); err != nil {
			return fmt.Errorf("backup %s is complete, but the old generations were not pruned: %w", gen, err)
		}
	}
	return nil
}

// snapshotFacts opens the snapshot to record its audit head and counts in m, and returns the blob keys it refers to.
func snapshotFacts(ctx context.Context, path string, m *backupManifest) ([]string, error) {
	db, err := sqlstore.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	var keys []string
	err = func() error {
		var err error
		if m.AuditHead, err = db.AuditHead(ctx); err != nil {
			return err
		}
		if m.Counts, err = db.Counts(ctx); err != nil {
			return err
		}
		after := ""
		for {
			ks, err := db.BlobKeys(ctx, after, 1000)
			if err != nil {
				return err
			}
			keys = append(keys, ks...)
			if len(ks) < 1000 {
				return nil
			}
			after = ks[len(ks)-1]
		}
	}()
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	// Hashed after it is closed: opening it may have set its header (WAL mode) and written nothing else. The last
	// connection to close checkpoints and removes its -wal, so index.db alone is the whole snapshot.
	if info, err := os.Stat(path + "-wal"); err == nil && info.Size() > 0 {
		return nil, fmt.Errorf("the index snapshot %s was left with a -wal file", path)
	}
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")
	os.Remove(path + sqlstore.JournalLockSuffix) // its audit journal's lock (no events: the snapshot is closed drained)
	if err := fsync.Dir(path); err != nil {
		return nil, err
	}
	if m.Index, err = fileSHA256(path); err != nil {
		return nil, err
	}
	return keys, nil
}

// backupBlobs records in m what the index snapshot at snap holds, and copies into into the blobs it refers to and
// the blobs of src written before start that no row names; it returns the blob list (blobs.txt) and counts the
// blobs in m. The server's purge may remove, while this runs, instances of the trash that the snapshot still names,
// and then their blobs: such a blob missing, the snapshot is purged the same way (of what was in the trash until
// the latest of them went there, which the server has purged too) and the blobs counted again. A blob missing under
// a live row is damage, and an error.
func backupBlobs(ctx context.Context, snap string, src, into *disk.Store, start time.Time, m *backupManifest) (string, error) {
	for pass := 0; ; pass++ {
		m.Blobs, m.BlobBytes, m.CopiedBlobs = 0, 0, 0
		keys, err := snapshotFacts(ctx, snap, m)
		if err != nil {
			return "", err
		}
		// Blobs written before the snapshot that no instance or consent row names (a referral's report PDF, whose
		// key sits in the referral's JSON) are kept too; those written after it are not needed by this generation.
		needed := map[string]bool{}
		for _, k := range keys {
			needed[k] = true
		}
		err = src.List(ctx, func(k string, written time.Time) error {
			if !written.After(start) {
				keys = append(keys, k)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		var list strings.Builder
		var missing []string
		for _, k := range keys {
			size, copied, err := backupBlob(ctx, src, into, k)
			if errors.Is(err, fs.ErrNotExist) && !needed[k] {
				continue // removed since it was listed (an orphan swept): nothing refers to it
			}
			if errors.Is(err, fs.ErrNotExist) && pass < 3 {
				missing = append(missing, k) // purged since the snapshot, or lost: purgeSnapshot tells
				continue
			}
			if err != nil {
				return "", err
			}
			list.WriteString(k + "\n")
			m.Blobs++
			m.BlobBytes += size
			if copied {
				m.CopiedBlobs++
			}
		}
		if len(missing) == 0 {
			return list.String(), nil
		}
		if err := purgeSnapshot(ctx, snap, src, missing); err != nil {
			return "", err
		}
	}
}

// purgeSnapshot purges the index snapshot at snap of the trash up to the latest time an instance naming one of the
// missing blobs went there. A missing blob that a live row names is an error.
func purgeSnapshot(ctx context.Context, snap string, src *disk.Store, missing []string) error {
	db, err := sqlstore.Open(ctx, snap)
	if err != nil {
		return err
	}
	var cutoff time.Time
	for _, k := range missing {
		at, trashed, err := db.TrashedOnly(ctx, k)
		if err == nil && !trashed {
			err = fmt.Errorf("blob %s is missing from %s, and the index names it: %w", k, src.Root, fs.ErrNotExist)
		}
		if err != nil {
			db.Close()
			return err
		}
		if at.After(cutoff) {
			cutoff = at
		}
	}
	if _, err := db.Purge(ctx, cutoff.Add(time.Millisecond)); err != nil {
		db.Close()
		return fmt.Errorf("purge the index snapshot of what the server purged meanwhile: %w", err)
	}
	return db.Close()
}

// backupBlob copies one blob into the backup unless it is there already, checking what it read against the key.
// It returns the blob's size and whether it was copied now.
func backupBlob(ctx context.Context, from *disk.Store, into *disk.Store, key string) (int64, bool, error) {
	if info, err := os.Stat(blobPath(into.Root, key)); err == nil {
		return info.Size(), false, nil
	}
	r, err := os.Open(blobPath(from.Root, key))
	if err != nil {
		return 0, false, fmt.Errorf("blob %s: %w", key, err)
	}
	defer r.Close()
	n, err := copyBlob(ctx, r, into, key)
	return n, err == nil, err
}

// copyBlob writes r into the store and checks that its SHA-256 is key.
func copyBlob(ctx context.Context, r io.Reader, into *disk.Store, key string) (int64, error) {
	w, err := into.Create(ctx)
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", key, err)
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return 0, fmt.Errorf("blob %s: %w", key, err)
	}
	got, n, err := w.Commit(ctx)
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", key, err)
	}
	if got != key {
		// The copy is kept under the key of the bytes it holds; nothing names that key.
		into.Delete(ctx, got)
		return 0, fmt.Errorf("blob %s is damaged: its bytes have SHA-256 %s", key, got)
	}
	return n, nil
}

func blobPath(root, key string) string { return filepath.Join(root, key[:3], key) }

// adminRestore runs renkei admin restore.
func adminRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("renkei admin restore", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, backupUsage); fl.PrintDefaults() }
	from := fl.String("from", "", "the backup folder (what renkei admin backup --to wrote)")
	genFlag := fl.String("generation", "", "the generation to restore, a folder name such as 20261128T031500Z (default: the newest)")
	data := fl.String("data", "", "the data folder to restore into: it must be empty or not exist")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *from == "" || *data == "" {
		return fmt.Errorf("give --from BACKUPDIR and --data EMPTYDIR")
	}
	if ents, err := os.ReadDir(*data); err == nil && len(ents) > 0 {
		return fmt.Errorf("--data %s is not empty: restore only into an empty folder, so that nothing of another region mixes in", *data)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--data: %w", err)
	}
	gen := *genFlag
	if gen == "" {
		gens, err := backupGenerations(*from)
		if err != nil {
			return err
		}
		if len(gens) == 0 {
			return fmt.Errorf("--from %s holds no complete backup (no generation folder with a %s)", *from, manifestFile)
		}
		gen = gens[len(gens)-1]
	}
	dir := filepath.Join(*from, gen)
	mb, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return fmt.Errorf("generation %s is not complete: %w", gen, err)
	}
	var m backupManifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, manifestFile), err)
	}
	if err := os.MkdirAll(*data, 0o750); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	failed := func(err error) error {
		return fmt.Errorf("%w\nthe restore is not complete: remove %s before trying again", err, *data)
	}

	// The index and the other files, each checked against the manifest.
	copyChecked := func(name, want string, perm fs.FileMode) error {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != want {
			return fmt.Errorf("%s in the backup is damaged: its SHA-256 is not the one in the manifest", name)
		}
		return writeFileSync(filepath.Join(*data, name), b, perm)
	}
	if err := copyChecked(indexFile, m.Index, 0o600); err != nil {
		return failed(err)
	}
	names := make([]string, 0, len(m.Files))
	for name, sum := range m.Files {
		if name != filepath.Base(name) || name == "." || name == ".." {
			return failed(fmt.Errorf("the manifest names a file %q outside the data folder", name))
		}
		perm := fs.FileMode(0o640)
		if info, err := os.Stat(filepath.Join(dir, name)); err == nil {
			perm = info.Mode().Perm()
		}
		if err := copyChecked(name, sum, perm); err != nil {
			return failed(err)
		}
		names = append(names, name)
	}
	sort.Strings(names)

	// Every blob of the generation, read back from the backup and checked against its key while it is written.
	lb, err := os.ReadFile(filepath.Join(dir, blobListFile))
	if err != nil {
		return failed(err)
	}
	if s := sha256.Sum256(lb); hex.EncodeToString(s[:]) != m.BlobList {
		return failed(fmt.Errorf("%s in the backup is damaged: its SHA-256 is not the one in the manifest", blobListFile))
	}
	into, err := disk.Open(filepath.Join(*data, "blobs"))
	if err != nil {
		return failed(err)
	}
	var blobs, size int64
	sc := bufio.NewScanner(strings.NewReader(string(lb)))
	for sc.Scan() {
		k := sc.Text()
		if len(k) != 64 {
			return failed(fmt.Errorf("%s lists %q, which is not a blob key", blobListFile, k))
		}
		r, err := os.Open(blobPath(filepath.Join(*from, "blobs"), k))
		if err != nil {
			return failed(fmt.Errorf("blob %s is missing from the backup: %w", k, err))
		}
		n, err := copyBlob(ctx, r, into, k)
		r.Close()
		if err != nil {
			return failed(err)
		}
		blobs++
		size += n
	}
	if blobs != m.Blobs {
		return failed(fmt.Errorf("%s lists %d blobs, the manifest %d", blobListFile, blobs, m.Blobs))
	}

	// The restored index: what it holds, that it names no blob left behind, and that its audit chain is intact.
	db, err := sqlstore.Open(ctx, filepath.Join(*data, indexFile))
	if err != nil {
		return failed(err)
	}
	defer db.Close()
	counts, err := db.Counts(ctx)
	if err != nil {
		return failed(err)
	}
	listed := map[string]bool{}
	for _, k := range strings.Fields(string(lb)) {
		listed[k] = true
	}
	for after := ""; ; {
		ks, err := db.BlobKeys(ctx, after, 1000)
		if err != nil {
			return failed(err)
		}
		for _, k := range ks {
			if !listed[k] {
				return failed(fmt.Errorf("the index names blob %s, which the backup does not hold", k))
			}
		}
		if len(ks) < 1000 {
			break
		}
		after = ks[len(ks)-1]
	}
	keys := map[string]ed25519.PublicKey{}
	key, err := readAuditKey(filepath.Join(*data, auditKeyFile))
	if err == nil {
		keys[key.ID] = key.Private.Public().(ed25519.PublicKey)
	}
	rep, err := db.VerifyAudit(ctx, keys)
	if err != nil {
		return failed(err)
	}
	if len(rep.Problems) > 0 {
		for _, p := range rep.Problems {
			fmt.Fprintf(stdout, "audit event %d: %s\n", p.Seq, p.Problem)
		}
		return failed(fmt.Errorf("the restored audit chain is not intact: %d problem(s)", len(rep.Problems)))
	}
	if rep.LastSeq != m.AuditHead {
		return failed(fmt.Errorf("the restored audit chain ends at event %d, the backup's at %d", rep.LastSeq, m.AuditHead))
	}

	fmt.Fprintf(stdout, "restored backup %s (taken %s) into %s\n", gen, m.Time.Local().Format("2006-01-02 15:04:05"), *data)
	fmt.Fprintf(stdout, "index: %s; its SHA-256 matches the backup's\n", countsText(counts))
	fmt.Fprintf(stdout, "blobs: %d (%s), every one read back and its SHA-256 checked\n", blobs, bytesText(size))
	fmt.Fprintf(stdout, "files: %s\n", strings.Join(names, ", "))
	fmt.Fprintf(stdout, "audit chain intact: %d events up to event %d, %d signed checkpoints\n", rep.Events, rep.LastSeq, rep.Checkpoints)
	fmt.Fprintf(stdout, "start it with: renkei serve --data %s\n", *data)
	return nil
}

// backupGenerations lists the complete generations of a backup folder, oldest first.
func backupGenerations(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), partialSuffix) || strings.HasSuffix(e.Name(), pruningSuffix) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), manifestFile)); err == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out) // UTC times in a fixed format sort as they happened
	return out, nil
}

func countsText(c sqlstore.IndexCounts) string {
	return fmt.Sprintf("%d institutions, %d users, %d patients, %d studies, %d series, %d instances, %d referrals, %d audit events",
		c.Institutions, c.Users, c.Patients, c.Studies, c.Series, c.Instances, c.Referrals, c.AuditEvents)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeFileSync writes a file and makes it durable before returning.
func writeFileSync(path string, b []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
