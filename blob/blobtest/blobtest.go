// Package blobtest is the conformance suite of blob.Store: every implementation (disk, s3) runs the same assertions,
// each against its real medium.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/blob"
)

// Run runs the suite. open returns a new, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) blob.Store) {
	ctx := context.Background()
	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		// Sizes around the S3 store's memory and multipart limits as the tests set them (64 KiB, 8 MiB), and
		// the empty blob.
		for _, size := range []int{0, 1, 1000, 64<<10 - 1, 64 << 10, 64<<10 + 1, 3<<20 + 17, 20 << 20} {
			data := Bytes(size, uint64(size))
			key, n := Put(t, s, data)
			if want := Key(data); key != want || n != int64(size) {
				t.Fatalf("%d bytes: Commit = %s, %d; want %s, %d", size, key, n, want, size)
			}
			r, err := s.Open(ctx, key)
			if err != nil {
				t.Fatalf("%d bytes: Open: %v", size, err)
			}
			if r.Size() != int64(size) {
				t.Errorf("%d bytes: Size() = %d", size, r.Size())
			}
			var got bytes.Buffer
			if _, err := io.Copy(&got, r); err != nil { // WriteTo where the reader has it
				t.Fatalf("%d bytes: copy: %v", size, err)
			}
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("%d bytes: read back %d bytes that differ", size, got.Len())
			}
			// Read in small pieces, from the start again.
			if _, err := r.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			all, err := io.ReadAll(struct{ io.Reader }{r}) // hides WriteTo: Read only
			if err != nil || !bytes.Equal(all, data) {
				t.Fatalf("%d bytes: Read after Seek(0): %d bytes, err %v", size, len(all), err)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("Duplicate", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		data := Bytes(100<<10, 1)
		k1, n1 := Put(t, s, data)
		k2, n2 := Put(t, s, data)
		if k1 != k2 || n1 != n2 {
			t.Fatalf("the same bytes committed twice: %s, %d then %s, %d", k1, n1, k2, n2)
		}
		if diff := cmp.Diff([]string{k1}, Keys(t, s)); diff != "" {
			t.Errorf("List after a duplicate (-want +got):\n%s", diff)
		}
		ReadEqual(t, s, k1, data)
	})

	t.Run("Abort", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		for _, size := range []int{10, 3 << 20} {
			data := Bytes(size, 7)
			w, err := s.Create(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := w.Abort(); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			if _, _, err := w.Commit(ctx); err == nil {
				t.Error("Commit after Abort succeeded")
			}
			if _, err := s.Open(ctx, Key(data)); renkei.ErrorKind(err) != renkei.NotFound {
				t.Errorf("Open of an aborted blob: %v, want NotFound", err)
			}
		}
		// Abort after Commit does nothing.
		w, _ := s.Create(ctx)
		w.Write([]byte("kept"))
		key, _, err := w.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Abort(); err != nil {
			t.Errorf("Abort after Commit: %v", err)
		}
		ReadEqual(t, s, key, []byte("kept"))
		if diff := cmp.Diff([]string{key}, Keys(t, s)); diff != "" {
			t.Errorf("List sees aborted blobs (-want +got):\n%s", diff)
		}
	})

	t.Run("ReadAt", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		size := 5<<20 + 123
		data := Bytes(size, 3)
		key, _ := Put(t, s, data)
		r, err := s.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for g := range 4 { // io.ReaderAt allows parallel calls on one reader
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 9))
				for range 40 {
					off := rng.Int64N(int64(size))
					n := rng.IntN(600 << 10)
					if rng.IntN(4) == 0 {
						n = rng.IntN(16)
					}
					p := make([]byte, n)
					m, err := r.ReadAt(p, off)
					end := min(off+int64(n), int64(size))
					if m != int(end-off) || !bytes.Equal(p[:m], data[off:end]) {
						errs <- errors.New("ReadAt returned bytes that differ from the blob's")
						return
					}
					if int64(n) > int64(size)-off && !errors.Is(err, io.EOF) {
						errs <- errors.New("ReadAt across the end did not return io.EOF")
						return
					}
					if int64(n) <= int64(size)-off && err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Seek then Read, as a parser skipping pixel data does.
		for range 30 {
			off := rng.Int64N(int64(size))
			if pos, err := r.Seek(off, io.SeekStart); err != nil || pos != off {
				t.Fatalf("Seek(%d) = %d, %v", off, pos, err)
			}
			p := make([]byte, rng.IntN(100<<10)+1)
			m, err := io.ReadFull(r, p)
			if end := min(off+int64(len(p)), int64(size)); m != int(end-off) || !bytes.Equal(p[:m], data[off:end]) {
				t.Fatalf("Read after Seek(%d): %d bytes, %v", off, m, err)
			}
		}
		if pos, err := r.Seek(-10, io.SeekEnd); err != nil || pos != int64(size)-10 {
			t.Fatalf("Seek(-10, end) = %d, %v", pos, err)
		}
		tail, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(tail, data[size-10:]) {
			t.Fatalf("the last 10 bytes: %x, %v", tail, err)
		}
		if m, err := r.ReadAt(make([]byte, 1), int64(size)); m != 0 || err != io.EOF {
			t.Errorf("ReadAt at the end = %d, %v; want 0, io.EOF", m, err)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		_, err := s.Open(ctx, Key([]byte("never stored")))
		if renkei.ErrorKind(err) != renkei.NotFound {
			t.Errorf("Open of a missing key: %v, want NotFound", err)
		}
		for _, bad := range []string{"", "abc", "../../etc/passwd", "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"} {
			if _, err := s.Open(ctx, bad); renkei.ErrorKind(err) != renkei.Invalid {
				t.Errorf("Open(%q): %v, want Invalid", bad, err)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		data := Bytes(1234, 5)
		key, _ := Put(t, s, data)
		if err := s.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(ctx, key); renkei.ErrorKind(err) != renkei.NotFound {
			t.Errorf("Open after Delete: %v, want NotFound", err)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete of a missing key: %v, want nil", err)
		}
		// Stored again after a delete: back.
		Put(t, s, data)
		ReadEqual(t, s, key, data)
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		l, ok := s.(blob.Lister)
		if !ok {
			t.Skip("not a blob.Lister")
		}
		start := time.Now().Add(-2 * time.Second) // S3 times are whole seconds
		var want []string
		for i := range 12 {
			key, _ := Put(t, s, Bytes(100+i, uint64(i)))
			if i%4 != 3 {
				want = append(want, key)
			} else if err := s.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
		sort.Strings(want)
		var got []string
		err := l.List(ctx, func(key string, written time.Time) error {
			got = append(got, key)
			if written.Before(start) || written.After(time.Now().Add(2*time.Second)) {
				t.Errorf("%s: written %v, not during the test", key, written)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
		// fn's error ends the listing and is returned.
		stop := errors.New("enough")
		calls := 0
		if err := l.List(ctx, func(string, time.Time) error { calls++; return stop }); err != stop || calls != 1 {
			t.Errorf("List with fn failing: %v after %d calls, want the error after 1", err, calls)
		}
	})

	t.Run("ConcurrentSameContent", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		data := Bytes(1<<20+5, 11)
		const writers = 8
		keys := make([]string, writers)
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w, err := s.Create(ctx)
				if err != nil {
					errs[i] = err
					return
				}
				for off := 0; off < len(data); off += 4096 {
					if _, err := w.Write(data[off:min(off+4096, len(data))]); err != nil {
						errs[i] = err
						return
					}
				}
				keys[i], _, errs[i] = w.Commit(ctx)
			}()
		}
		wg.Wait()
		for i := range writers {
			if errs[i] != nil {
				t.Fatalf("writer %d: %v", i, errs[i])
			}
			if keys[i] != Key(data) {
				t.Fatalf("writer %d: key %s, want %s", i, keys[i], Key(data))
			}
		}
		ReadEqual(t, s, Key(data), data)
		if _, ok := s.(blob.Lister); ok {
			if diff := cmp.Diff([]string{Key(data)}, Keys(t, s)); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
		}
	})
}

// Bytes returns n pseudo-random bytes from seed.
func Bytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// Key is the key a store must give data.
func Key(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Put stores data, written in uneven pieces as a network body arrives, and returns Commit's answer.
func Put(tb testing.TB, s blob.Store, data []byte) (string, int64) {
	tb.Helper()
	ctx := context.Background()
	w, err := s.Create(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	for off, step := 0, 1; off < len(data); off, step = off+step, step*3%65521+1 {
		if _, err := w.Write(data[off:min(off+step, len(data))]); err != nil {
			tb.Fatal(err)
		}
	}
	key, n, err := w.Commit(ctx)
	if err != nil {
		tb.Fatalf("Commit: %v", err)
	}
	return key, n
}

// ReadEqual checks that the blob under key holds data.
func ReadEqual(tb testing.TB, s blob.Store, key string, data []byte) {
	tb.Helper()
	r, err := s.Open(context.Background(), key)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		tb.Fatalf("blob %s: read %d bytes (err %v), want the %d stored", key, len(got), err, len(data))
	}
}

// Keys lists the store's keys, sorted.
func Keys(tb testing.TB, s blob.Store) []string {
	tb.Helper()
	var keys []string
	err := s.(blob.Lister).List(context.Background(), func(key string, _ time.Time) error {
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}
