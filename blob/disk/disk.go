// Package disk is the embedded blob store: one file per blob under a folder, named by its SHA-256.
//
// A blob is written to a temporary file, made durable, renamed into its fan-out folder, and the folder made durable
// before Commit returns (the archive indexes the instance and answers only after that), so a crash at any moment
// leaves either no blob or a whole one, never half a file under a real key, and a blob whose Commit returned survives
// a power loss. A Commit that finds its key already stored makes that folder durable too (the Commit that renamed the
// file there may still be waiting for it, or was killed before it) instead of its temporary file.
//
// Each "made durable" costs a cache flush of the device (about 2.4 ms on the benchmark machine's disk, ext4 without
// a journal): two per blob. When many Commits sync at once (STOW-RS commits up to 16 parts of each request
// concurrently), they share them instead (group commit): a Commit that has written its temporary file waits for a
// shared flush that started after it asked, renames, and waits for another. A shared flush is one syncfs(2) of the
// store's file system followed by an fsync of the root folder, run by one of the waiting Commits for all who asked
// before it started; its error goes to them and to those of the next flush (syncfs reports every write-back error
// since its last call, and the previous flush may have met pages of Commits that asked during it). The fsync is
// needed on ext4 without a journal: syncfs flushes the device's cache before it writes the inode tables and folder
// blocks (sync_filesystem in fs/sync.c), which would otherwise stay in the volatile cache.
//
// Why, and why only when 8 or more Commits are syncing (measured 2026-11-28, see docs/benchmarks.md): while the
// disk was slow, renkei's STOW-RS with 4 clients ran at 2.1× Orthanc with shared flushes against 1.6-1.95× with a
// sync per file and folder, in runs alternated on the same machine; while it was fast, at the same ratio (1.8-1.9×,
// renkei then being bound by CPU). But a shared flush costs two device flushes plus a pass over the file system's
// dirty inodes, while the block layer already merges the cache flushes of concurrent fsyncs, so it only pays when it
// serves many Commits. With few (DIMSE: one per association) each Commit syncs its own file and folder.
// BenchmarkCommit (2 to 16 writers, no HTTP or index) did not settle the threshold: from one series to the next,
// sharing was half as fast or as fast with 4 writers, 1.5× or 0.8× as fast with 16, on this disk.
//
// syncfs writes every dirty page of the file system, not only the store's: a shared flush also waits for whatever
// other programs left in the page cache on the same file system. The store's own large blobs do not weigh on it:
// their write-back starts every 8 MiB as they arrive (sync_file_range(2)). Where syncfs is missing (not Linux) or
// does not report write-back errors (Linux before 5.8), every Commit syncs its own file and folder, as does a Store
// made without Open.
package disk

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"renkei"
	"renkei/blob"
	"renkei/internal/fsync"
)

// Store keeps blobs in Root/abc/<sha256> (4096 fan-out folders, each made the first time a blob needs it), with
// temporary files in Root/tmp.
type Store struct {
	Root string

	dirs       sync.Map     // fan-out folders known to exist, durably
	group      *group       // the shared flush; nil: each Commit syncs its own file and folder
	rootFile   *os.File     // the root held open for the shared flush
	syncing    atomic.Int32 // Commits between their last write and their answer
	sharedFrom int32        // Commits share flushes when at least this many are syncing
}

// Open opens (creating if needed) the store rooted at root and removes temporary files left by a crash.
func Open(root string) (*Store, error) {
	s := &Store{Root: root}
	tmp := filepath.Join(s.Root, "tmp")
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	for _, e := range ents {
		os.Remove(filepath.Join(tmp, e.Name()))
	}
	if err := fsync.Dir(s.Root); err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	g, f, err := openGroup(s.Root)
	if err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	s.group, s.rootFile, s.sharedFrom = g, f, sharedFrom
	return s, nil
}

// Close releases the folder held open for the shared flush. Commits must not be running.
func (s *Store) Close() error {
	if s.rootFile == nil {
		return nil
	}
	err := s.rootFile.Close()
	s.group, s.rootFile = nil, nil
	return err
}

func (s *Store) path(key string) (string, error) {
	if len(key) != 64 {
		return "", renkei.Errorf("blob.Open", renkei.Invalid, "invalid blob key %q", key)
	}
	if _, err := hex.DecodeString(key); err != nil || strings.ToLower(key) != key {
		return "", renkei.Errorf("blob.Open", renkei.Invalid, "invalid blob key %q", key)
	}
	return filepath.Join(s.Root, key[0:3], key), nil
}

// Create implements blob.Store.
func (s *Store) Create(ctx context.Context) (blob.Writer, error) {
	f, err := os.CreateTemp(filepath.Join(s.Root, "tmp"), "put-*")
	if err != nil {
		return nil, &renkei.Error{Op: "blob.Create", Kind: renkei.Unavailable, Message: "the image store cannot be written", Err: err}
	}
	bw := bufPool.Get().(*bufio.Writer)
	bw.Reset(f)
	return &writer{s: s, f: f, bw: bw, h: sha256.New()}, nil
}

// bufPool holds the write buffers of blobs being received: callers write in small pieces (a multipart body arrives
// in 4 KiB reads), and one system call per piece cost more CPU than hashing the bytes.
var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}

type writer struct {
	s       *Store
	f       *os.File
	bw      *bufio.Writer
	h       hash.Hash
	n       int64
	started int64 // bytes whose write-back has been started
	done    bool
}

// writeBehind is how many bytes of a blob may wait in the page cache before their write-back is started: a large
// blob (a 2 GB multi-frame object) then reaches the disk while it arrives, so that neither its own sync nor a shared
// flush of other Commits (which writes every dirty page of the file system) waits for gigabytes at once.
const writeBehind = 8 << 20

func (w *writer) Write(b []byte) (int, error) {
	n, err := w.bw.Write(b)
	w.h.Write(b[:n])
	w.n += int64(n)
	if inFile := w.n - int64(w.bw.Buffered()); inFile-w.started >= writeBehind {
		startWriteback(w.f, w.started, inFile-w.started)
		w.started = inFile
	}
	return n, err
}

// release returns the buffer to the pool.
func (w *writer) release() {
	if w.bw != nil {
		w.bw.Reset(nil)
		bufPool.Put(w.bw)
		w.bw = nil
	}
}

func (w *writer) Commit(ctx context.Context) (string, int64, error) {
	if w.done {
		return "", 0, errors.New("blob already committed or aborted")
	}
	w.done = true
	defer w.release()
	key := hex.EncodeToString(w.h.Sum(nil))
	fail := func(err error) (string, int64, error) {
		w.f.Close()
		os.Remove(w.f.Name())
		return "", 0, &renkei.Error{Op: "blob.Commit", Kind: renkei.Unavailable, Message: "the image store cannot be written", Err: err}
	}
	if err := w.bw.Flush(); err != nil {
		return fail(err)
	}
	final, _ := w.s.path(key)
	dir := filepath.Dir(final)
	shared, done := w.s.share()
	defer done()
	if _, err := os.Stat(final); err == nil {
		// Already stored: a rename only puts a whole file in place (its bytes were durable before it), so the
		// existing one is complete. Its folder entry may not be durable yet (the Commit that renamed it may still be
		// waiting for its folder sync, or was killed before it), so the folder is synced here, in place of the
		// temporary file. Its written time becomes now: the orphan sweep removes unused blobs written before its
		// cutoff, and this one is about to be used (not synced: after a crash the sweep asks the index, which then
		// knows).
		w.f.Close()
		os.Remove(w.f.Name())
		now := time.Now()
		os.Chtimes(final, now, now)
		if err := w.s.syncDir(dir, shared); err != nil {
			return fail(err)
		}
		return key, w.n, nil
	}
	if err := w.s.syncFile(w.f, shared); err != nil {
		return fail(err)
	}
	if err := w.s.ensureDir(dir); err != nil {
		return fail(err)
	}
	if err := os.Rename(w.f.Name(), final); err != nil {
		return fail(err)
	}
	if err := w.s.syncDir(dir, shared); err != nil {
		return fail(err)
	}
	return key, w.n, nil
}

// share tells whether a Commit about to sync shares the flushes of the Commits syncing at the same time, and returns
// the function to call when it is done. It shares when at least sharedFrom Commits (itself included) are syncing:
// with fewer, each one's own fsyncs finish sooner (see the package comment).
func (s *Store) share() (bool, func()) {
	if s.group == nil {
		return false, func() {}
	}
	n := s.syncing.Add(1)
	return n >= s.sharedFrom, func() { s.syncing.Add(-1) }
}

// syncFile makes a written temporary file's bytes durable and closes it.
func (s *Store) syncFile(f *os.File, shared bool) error {
	if shared {
		if err := f.Close(); err != nil {
			return err
		}
		return s.group.wait()
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// syncDir makes the entries of a fan-out folder durable.
func (s *Store) syncDir(dir string, shared bool) error {
	if shared {
		return s.group.wait()
	}
	return fsync.Dir(dir)
}

func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.release()
	w.f.Close()
	return os.Remove(w.f.Name())
}

// ensureDir makes a fan-out folder if it is missing, durably (its entry in the root is fsynced). There are only 4096,
// so after the first few thousand blobs (or once Prepare has run) this is a map look-up.
func (s *Store) ensureDir(dir string) error {
	if _, ok := s.dirs.Load(dir); ok {
		return nil
	}
	// Made here or by Prepare a moment ago: either way its entry must be durable before a blob is renamed into it
	// (synced here even when the blob's Commit shares flushes: the next Commit into the folder may not).
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := fsync.Dir(s.Root); err != nil {
		return err
	}
	s.dirs.Store(dir, true)
	return nil
}

// Prepare makes all 4096 fan-out folders that are missing, then makes their entries durable, so that the first
// thousands of blobs of a new archive do not each pay for a folder of their own. A server calls it in the background
// after opening; it takes about a second of system time on a new store and almost nothing afterwards.
func (s *Store) Prepare(ctx context.Context) error {
	var made []string
	for i := 0; i < 4096; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		dir := filepath.Join(s.Root, fmt.Sprintf("%03x", i))
		if _, ok := s.dirs.Load(dir); ok {
			continue
		}
		if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("prepare blob folders: %w", err)
		}
		made = append(made, dir)
	}
	if err := fsync.Dir(s.Root); err != nil {
		return fmt.Errorf("prepare blob folders: %w", err)
	}
	for _, dir := range made {
		s.dirs.Store(dir, true)
	}
	return nil
}

// Ready checks that the store's folders are there (a readiness check: a data disk that is not mounted fails it).
func (s *Store) Ready(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.Root, "tmp")); err != nil {
		return fmt.Errorf("blob store %s: %w", s.Root, err)
	}
	return nil
}

// Open implements blob.Store.
func (s *Store) Open(ctx context.Context, key string) (blob.Reader, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &renkei.Error{Op: "blob.Open", Kind: renkei.NotFound, Message: "the stored object is missing", Err: err}
	}
	if err != nil {
		return nil, &renkei.Error{Op: "blob.Open", Kind: renkei.Unavailable, Message: "the image store cannot be read", Err: err}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &reader{File: f, size: st.Size()}, nil
}

type reader struct {
	*os.File
	size int64
}

func (r *reader) Size() int64 { return r.size }

// WriteTo copies the blob from the file itself, so that the kernel can send it (sendfile) when w is a socket or an
// HTTP response without chunking.
func (r *reader) WriteTo(w io.Writer) (int64, error) {
	if rf, ok := w.(io.ReaderFrom); ok {
		return rf.ReadFrom(r.File) // the *os.File itself: net/http hands it to sendfile
	}
	return io.Copy(w, r.File)
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob: %w", err)
	}
	return nil
}

// List implements blob.Lister.
func (s *Store) List(ctx context.Context, fn func(key string, written time.Time) error) error {
	for i := 0; i < 4096; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		dir := filepath.Join(s.Root, fmt.Sprintf("%03x", i))
		ents, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("list blobs: %w", err)
		}
		for _, e := range ents {
			if len(e.Name()) != 64 {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			if err := fn(e.Name(), info.ModTime()); err != nil {
				return err
			}
		}
	}
	return nil
}
