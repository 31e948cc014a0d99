package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"renkei"
	"renkei/blob"
	"renkei/blob/disk"
	"renkei/sqlstore"
)

const migrateUsage = `Usage:
  renkei admin migrate --from sqlite://PATH --to postgres://… [--blobs-from DIR] [--blobs-to s3://…|DIR]

Moves a region from the embedded form (SQLite file and blob folder) to PostgreSQL and an S3-compatible bucket: every
table with its keys, the audit chain as it is, and every blob, checked against its SHA-256. Stop renkei serve first:
migrate refuses a SQLite file that another process has open. It can be stopped at any time (Ctrl-C, kill) and run
again with the same arguments: it continues where it stopped. At the end it checks row counts, the audit chain and
every blob on the target and says what differs (exit status 1). --blobs-from defaults to blobs/ beside the SQLite
file; without --blobs-to the blobs stay where they are. S3 credentials come from the AWS environment, as for serve.
`

// adminMigrate runs renkei admin migrate.
func adminMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("renkei admin migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, migrateUsage); fs.PrintDefaults() }
	from := fs.String("from", "", "the SQLite index: sqlite://PATH (its data folder's index.db)")
	to := fs.String("to", "", "the PostgreSQL database: postgres://USER@HOST:PORT/DB (empty, UTF8, collation C)")
	blobsFrom := fs.String("blobs-from", "", "the blob folder (default: blobs/ beside the SQLite file)")
	blobsTo := fs.String("blobs-to", "", "where the blobs go: s3://BUCKET?endpoint=… or a folder (default: they stay)")
	keyFile := fs.String("key", "", "the audit key file, to check the chain's signed checkpoints (default: audit-key beside the SQLite file)")
	batch := fs.Int("batch", 1000, "rows per transaction")
	every := fs.Duration("progress", 2*time.Second, "how often to print a progress line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path, ok := strings.CutPrefix(*from, "sqlite://")
	if !ok || path == "" {
		return fmt.Errorf("--from: give sqlite://PATH of the index.db to move")
	}
	if !strings.HasPrefix(*to, "postgres://") && !strings.HasPrefix(*to, "postgresql://") {
		return fmt.Errorf("--to: give the postgres:// URL of an empty database")
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	data := filepath.Dir(path)
	if *blobsFrom == "" {
		*blobsFrom = filepath.Join(data, "blobs")
	}
	if *keyFile == "" {
		*keyFile = filepath.Join(data, auditKeyFile)
	}
	// The copy is of a stopped region: rows changed after their batch was copied would be lost silently. SQLite
	// keeps a shared lock on the wal-index of a database in WAL mode for as long as a connection has it open, so
	// another process holding that lock is a renkei serve (or admin command) still running.
	probe, err := openLockProbe(path)
	if err != nil {
		return err
	}
	defer probe.Close()
	if err := probe.check(); err != nil {
		return err
	}
	src, err := sqlstore.Open(ctx, path)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := probe.open(); err != nil {
		return err
	}
	dst, err := sqlstore.Open(ctx, *to)
	if err != nil {
		return err
	}
	defer dst.Close()

	last := time.Now()
	progress := func(format string, args ...any) {
		if time.Since(last) >= *every {
			last = time.Now()
			fmt.Fprintf(stderr, format+"\n", args...)
		}
	}
	start := time.Now()
	err = sqlstore.Copy(ctx, dst, src, sqlstore.CopyOptions{Batch: *batch, Progress: func(p sqlstore.CopyProgress) {
		progress("index: table %d/%d (%s), %d/%d rows", p.TablesDone, p.Tables, p.Table, p.Rows, p.TotalRows)
	}})
	if err != nil {
		return fmt.Errorf("%w\n(run the same command again to continue)", err)
	}
	fmt.Fprintf(stdout, "index copied (%s)\n", time.Since(start).Round(time.Millisecond))

	var bfrom, into blob.Store
	if *blobsTo != "" {
		if bfrom, err = disk.Open(*blobsFrom); err != nil {
			return fmt.Errorf("--blobs-from: %w", err)
		}
		if strings.Contains(*blobsTo, "://") {
			into, err = openBlobs(ctx, *blobsTo, data, slog.New(slog.NewTextHandler(io.Discard, nil)))
		} else {
			into, err = disk.Open(*blobsTo)
		}
		if err != nil {
			return fmt.Errorf("--blobs-to: %w", err)
		}
		c := &blobCopy{src: src, dst: dst, from: bfrom, into: into, progress: progress}
		if err := c.run(ctx); err != nil {
			return fmt.Errorf("%w\n(run the same command again to continue)", err)
		}
		fmt.Fprintf(stdout, "blobs copied: %d (this run: %s)\n", c.blobs, bytesText(c.bytes))
	}

	// Verification, on the target, of what was copied in this run and in earlier ones.
	if err := probe.check(); err != nil {
		return fmt.Errorf("%w: the copy may miss its last changes; stop it and run again", err)
	}
	var problems []string
	counts, err := sqlstore.CompareTables(ctx, dst, src)
	if err != nil {
		return err
	}
	var rows int64
	for _, c := range counts {
		rows += c.Source
		if c.Source != c.Target {
			problems = append(problems, fmt.Sprintf("table %s: %d rows on the source, %d on the target", c.Table, c.Source, c.Target))
		}
	}
	if len(problems) == 0 {
		fmt.Fprintf(stdout, "row counts equal: %d tables, %d rows\n", len(counts), rows)
	}
	keys := map[string]ed25519.PublicKey{}
	if k, err := readAuditKey(*keyFile); err == nil {
		keys[k.ID] = k.Private.Public().(ed25519.PublicKey)
	} else {
		fmt.Fprintf(stderr, "no audit key (%v): the signed checkpoints cannot be checked\n", err)
	}
	rep, err := dst.VerifyAudit(ctx, keys)
	if err != nil {
		return err
	}
	if len(rep.Problems) == 0 {
		fmt.Fprintf(stdout, "audit chain intact on the target: %d events, %d signed checkpoints\n", rep.Events, rep.Checkpoints)
	}
	for _, p := range rep.Problems {
		if len(keys) == 0 && strings.Contains(p.Problem, "unknown key") {
			continue
		}
		problems = append(problems, fmt.Sprintf("audit event %d on the target: %s", p.Seq, p.Problem))
	}
	if into != nil {
		v := &blobCopy{src: src, dst: dst, from: bfrom, into: into, progress: progress}
		bad, err := v.verify(ctx)
		if err != nil {
			return err
		}
		if len(bad) == 0 {
			fmt.Fprintf(stdout, "every blob on the target has its SHA-256: %d blobs, %s\n", v.blobs, bytesText(v.bytes))
		}
		problems = append(problems, bad...)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stdout, p)
		}
		return fmt.Errorf("the migration is not complete: %d difference(s); run the same command again to continue", len(problems))
	}
	fmt.Fprintln(stdout, "migration verified: start renkei serve with --db (and --blobs) of the target")
	return nil
}

// blobCopy copies the blobs of a region: those the index refers to, then (if the source can list them) every other
// blob of the source store, in ascending key order, recording its position on the target every few blobs.
type blobCopy struct {
	src, dst   *sqlstore.DB
	from, into blob.Store
	progress   func(format string, args ...any)
	blobs      int64
	bytes      int64
}

const blobsPerRecord = 64

func (c *blobCopy) run(ctx context.Context) error {
	// The blobs the index refers to.
	after, n, done, err := c.dst.MigrationCursor(ctx, "blobs:index")
	if err != nil {
		return err
	}
	c.blobs = n
	for !done {
		keys, err := c.src.BlobKeys(ctx, after, blobsPerRecord)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := c.copy(ctx, k); err != nil {
				return err
			}
		}
		if len(keys) > 0 {
			after = keys[len(keys)-1]
		}
		done = len(keys) < blobsPerRecord
		if err := c.dst.SetMigrationCursor(ctx, "blobs:index", after, c.blobs, done); err != nil {
			return err
		}
	}
	// Every other blob of the source (a consent document being written, an orphan not yet swept): listed in
	// ascending key order by the disk store. Those the index refers to were copied above; the count recorded here
	// is of both parts, so a run that resumes in this part goes on counting from it.
	l, ok := c.from.(blob.Lister)
	if !ok {
		return nil
	}
	after, n, done, err = c.dst.MigrationCursor(ctx, "blobs:store")
	if err != nil {
		return err
	}
	if c.blobs = max(c.blobs, n); done {
		return nil
	}
	since := 0
	err = l.List(ctx, func(k string, _ time.Time) error {
		if k <= after {
			return nil
		}
		if used, err := c.src.BlobInUse(ctx, k); err != nil || used {
			return err
		}
		if err := c.copy(ctx, k); err != nil {
			return err
		}
		after = k
		if since++; since == blobsPerRecord {
			since = 0
			return c.dst.SetMigrationCursor(ctx, "blobs:store", after, c.blobs, false)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.dst.SetMigrationCursor(ctx, "blobs:store", after, c.blobs, true)
}

// copy copies one blob, checking what was read against its key before the target keeps it.
func (c *blobCopy) copy(ctx context.Context, key string) error {
	r, err := c.from.Open(ctx, key)
	if err != nil {
		return fmt.Errorf("blob %s on the source: %w", key, err)
	}
	defer r.Close()
	w, err := c.into.Create(ctx)
	if err != nil {
		return fmt.Errorf("blob %s: %w", key, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), r)
	if err != nil {
		w.Abort()
		return fmt.Errorf("blob %s: %w", key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != key {
		w.Abort()
		return fmt.Errorf("blob %s on the source is damaged: its bytes have SHA-256 %s", key, got)
	}
	got, _, err := w.Commit(ctx)
	if err != nil {
		return fmt.Errorf("blob %s on the target: %w", key, err)
	}
	if got != key {
		return fmt.Errorf("blob %s on the target was stored as %s", key, got)
	}
	c.blobs++
	c.bytes += n
	c.progress("blobs: %d copied, %s", c.blobs, bytesText(c.bytes))
	return nil
}

// verify reads back every blob the index refers to, and every blob of the source store, from the target and checks
// its SHA-256; it returns what is missing or wrong.
func (c *blobCopy) verify(ctx context.Context) ([]string, error) {
	var bad []string
	check := func(key string) error {
		if len(bad) >= 100 {
			return nil
		}
		r, err := c.into.Open(ctx, key)
		if renkei.ErrorKind(err) == renkei.NotFound {
			bad = append(bad, fmt.Sprintf("blob %s is missing on the target", key))
			return nil
		}
		if err != nil {
			return fmt.Errorf("blob %s on the target: %w", key, err)
		}
		defer r.Close()
		h := sha256.New()
		n, err := io.Copy(h, r)
		if err != nil {
			return fmt.Errorf("blob %s on the target: %w", key, err)
		}
		if hex.EncodeToString(h.Sum(nil)) != key {
			bad = append(bad, fmt.Sprintf("blob %s on the target has the wrong SHA-256", key))
		}
		c.blobs++
		c.bytes += n
		c.progress("verifying blobs: %d, %s", c.blobs, bytesText(c.bytes))
		return nil
	}
	after := ""
	for {
		keys, err := c.src.BlobKeys(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if err := check(k); err != nil {
				return nil, err
			}
		}
		if len(keys) < 1000 {
			break
		}
		after = keys[len(keys)-1]
	}
	if l, ok := c.from.(blob.Lister); ok {
		// Those the index refers to were checked above; the rest is what the source store holds besides.
		err := l.List(ctx, func(k string, _ time.Time) error {
			used, err := c.src.BlobInUse(ctx, k)
			if err != nil || used {
				return err
			}
			return check(k)
		})
		if err != nil {
			return nil, err
		}
	}
	return bad, nil
}

// bytesText writes a size for people.
func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// lockProbe tells whether another process has a SQLite database in WAL mode open. Every connection holds a shared
// lock on byte 128 of the wal-index file (DB-shm, the "dead man switch" of SQLite's os_unix.c) while it is open;
// F_GETLK asks whether another process's lock would conflict with an exclusive one there, without taking any. The
// file stays open until the end, because closing a file releases every POSIX lock this process holds on it,
// SQLite's own included.
type lockProbe struct {
	path string
	f    *os.File
}

// openLockProbe opens the wal-index if there is one (none: nobody has the database open).
func openLockProbe(path string) (*lockProbe, error) {
	p := &lockProbe{path: path}
	if err := p.open(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return p, nil
}

func (p *lockProbe) open() error {
	if p.f != nil {
		return nil
	}
	f, err := os.OpenFile(p.path+"-shm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("check that %s is not in use: %w", p.path, err)
	}
	p.f = f
	return nil
}

func (p *lockProbe) check() error {
	if p.f == nil {
		return nil
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 128, Len: 1}
	if err := syscall.FcntlFlock(p.f.Fd(), syscall.F_GETLK, &lk); err != nil {
		return fmt.Errorf("check that %s is not in use: %w", p.path, err)
	}
	if lk.Type != syscall.F_UNLCK {
		return fmt.Errorf("%s is in use by process %d (renkei serve?): stop it first, so that nothing changes while the region moves", p.path, lk.Pid)
	}
	return nil
}

func (p *lockProbe) Close() error {
	if p.f == nil {
		return nil
	}
	return p.f.Close()
}
