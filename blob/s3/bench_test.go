package s3_test

import (
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"renkei/blob"
	"renkei/blob/blobtest"
	"renkei/blob/disk"
	"renkei/blob/s3"
)

// The benchmarks run each workload on the disk store and on the S3 store (versitygw on loopback, on the same disk)
// and log S3's throughput as a share of disk's: go test ./blob/... -run '^$' -bench .
//
// Ingest: CT-sized blobs (512 KiB) written in 16 KiB pieces and committed, 8 at once as a STOW-RS request commits
// its parts. Frame: open a 64 MiB multi-frame object and read one 512 KiB frame at random, as the viewer asks for
// one frame. Retrieve: open a CT-sized blob and copy it whole, as WADO-RS sends an instance.

func benchStores(b *testing.B) []struct {
	name string
	s    blob.Store
} {
	d, err := disk.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	srv := startServer(b)
	cfg := config(b, srv)
	cfg.MemoryLimit, cfg.MultipartAbove = 0, 0 // the defaults serve uses
	s, err := s3.Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	return []struct {
		name string
		s    blob.Store
	}{{"disk", d}, {"s3", s}}
}

// compare runs bench on each store and logs the S3 store's throughput relative to disk's.
func compare(b *testing.B, bench func(b *testing.B, s blob.Store)) {
	per := map[string]float64{} // ns per op of the final run
	for _, st := range benchStores(b) {
		b.Run(st.name, func(b *testing.B) {
			bench(b, st.s)
			per[st.name] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
	}
	if per["disk"] > 0 && per["s3"] > 0 {
		b.Logf("S3 (versitygw on loopback) at %.0f%% of disk's throughput (%.2f ms vs %.2f ms per op)",
			100*per["disk"]/per["s3"], per["s3"]/1e6, per["disk"]/1e6)
	}
}

func BenchmarkIngest(b *testing.B) {
	const size = 512 << 10
	compare(b, func(b *testing.B, s blob.Store) {
		b.SetBytes(size)
		b.SetParallelism(4) // 8 writers on 2 cores
		var seq atomic.Uint64
		base := uint64(time.Now().UnixNano())
		b.RunParallel(func(pb *testing.PB) {
			data := blobtest.Bytes(size, 1)
			for pb.Next() {
				binary.LittleEndian.PutUint64(data, base+seq.Add(1)) // a new blob every time, never a duplicate
				w, err := s.Create(context.Background())
				if err != nil {
					b.Error(err)
					return
				}
				for off := 0; off < size; off += 16 << 10 {
					w.Write(data[off : off+16<<10])
				}
				if _, _, err := w.Commit(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkFrame(b *testing.B) {
	const frame, frames = 512 << 10, 128
	compare(b, func(b *testing.B, s blob.Store) {
		key, _ := blobtest.Put(b, s, blobtest.Bytes(frame*frames+1024, 2))
		rng := rand.New(rand.NewPCG(1, 2))
		p := make([]byte, frame)
		b.SetBytes(frame)
		b.ResetTimer()
		for b.Loop() {
			r, err := s.Open(context.Background(), key)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := r.ReadAt(p, 1024+int64(rng.IntN(frames))*frame); err != nil {
				b.Fatal(err)
			}
			r.Close()
		}
	})
}

func BenchmarkRetrieve(b *testing.B) {
	const size = 512 << 10
	compare(b, func(b *testing.B, s blob.Store) {
		key, _ := blobtest.Put(b, s, blobtest.Bytes(size, 3))
		b.SetBytes(size)
		b.ResetTimer()
		for b.Loop() {
			r, err := s.Open(context.Background(), key)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Fatal(err)
			}
			r.Close()
		}
	})
}
