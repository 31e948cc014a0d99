// Package disk is the embedded blob store: one file per blob under a folder, named by its SHA-256.
//
// A blob is written to a temporary file, fsynced, renamed into place and its folder fsynced before Commit returns,
// so a crash at any moment leaves either no blob or a whole one, never half a file under a real key.
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
	"time"

	"renkei"
	"renkei/blob"
)

// Store keeps blobs in Root/abc/<sha256> (4096 fan-out folders, each made the first time a blob needs it), with
// temporary files in Root/tmp.
type Store struct {
	Root string

	dirs sync.Map // fan-out folders known to exist, durably
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
	if err := syncDir(s.Root); err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	return s, nil
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
	s    *Store
	f    *os.File
	bw   *bufio.Writer
	h    hash.Hash
	n    int64
	done bool
}

func (w *writer) Write(b []byte) (int, error) {
	n, err := w.bw.Write(b)
	w.h.Write(b[:n])
	w.n += int64(n)
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
	if err := w.f.Sync(); err != nil {
		return fail(err)
	}
	if err := w.f.Close(); err != nil {
		return fail(err)
	}
	final, _ := w.s.path(key)
	if _, err := os.Stat(final); err == nil {
		// Already stored: a rename only puts a whole, synced file in place, so the existing one is complete. Its
		// written time becomes now: the orphan sweep removes unused blobs written before its cutoff, and this one
		// is about to be used (not synced: after a crash the sweep asks the index, which then knows).
		os.Remove(w.f.Name())
		now := time.Now()
		os.Chtimes(final, now, now)
		return key, w.n, nil
	}
	dir := filepath.Dir(final)
	if err := w.s.ensureDir(dir); err != nil {
		return fail(err)
	}
	if err := os.Rename(w.f.Name(), final); err != nil {
		return fail(err)
	}
	if err := syncDir(dir); err != nil {
		return fail(err)
	}
	return key, w.n, nil
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
	// Made here or by Prepare a moment ago: either way its entry must be durable before a blob is renamed into it.
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := syncDir(s.Root); err != nil {
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
	if err := syncDir(s.Root); err != nil {
		return fmt.Errorf("prepare blob folders: %w", err)
	}
	for _, dir := range made {
		s.dirs.Store(dir, true)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
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
