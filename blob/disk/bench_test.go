package disk

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCommit writes CT-sized blobs (512 KiB, in 16 KiB pieces) from 4 writers (RENKEI_BENCH_WRITERS), committing each, with each way of
// making them durable, and a copy that only writes and fsyncs each file (the baseline docs/benchmarks.md compares
// ingest with). -count alternates the ways, so that they share the machine's moods: go test ./blob/disk -run '^$'
// -bench Commit -count 3.
func BenchmarkCommit(b *testing.B) {
	const size = 512 << 10
	writers := 4
	if n, err := strconv.Atoi(os.Getenv("RENKEI_BENCH_WRITERS")); err == nil && n > 0 {
		writers = n // STOW-RS commits up to 16 parts of a request at once
	}
	for _, mode := range []string{"copy", "per-file", "shared", "adaptive"} {
		b.Run(mode, func(b *testing.B) {
			s, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := s.Prepare(context.Background()); err != nil {
				b.Fatal(err)
			}
			switch mode {
			case "per-file":
				s.group = nil
			case "shared":
				s.sharedFrom = 1
			}
			if n, err := strconv.Atoi(os.Getenv("RENKEI_BENCH_SHARED_FROM")); err == nil && mode == "adaptive" {
				s.sharedFrom = int32(n)
			}
			if s.group == nil && mode != "per-file" && mode != "copy" {
				b.Skip("no shared flush here")
			}
			var flushes atomic.Int64
			if s.group != nil {
				sync := s.group.sync
				s.group.sync = func() error { flushes.Add(1); return sync() }
			}
			b.SetBytes(size)
			b.ResetTimer()
			b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			var seq atomic.Uint64
			base := uint64(time.Now().UnixNano())
			b.RunParallel(func(pb *testing.PB) {
				data := make([]byte, size)
				for i := range data {
					data[i] = byte(i * 7)
				}
				for pb.Next() {
					binary.LittleEndian.PutUint64(data, base+seq.Add(1))
					if mode == "copy" {
						f, err := os.Create(filepath.Join(s.Root, "tmp", "copy-"+time.Now().Format("150405.000000000")+"-"+string(rune('a'+seq.Load()%26))))
						if err != nil {
							b.Error(err)
							return
						}
						for off := 0; off < size; off += 16 << 10 {
							f.Write(data[off : off+16<<10])
						}
						if err := f.Sync(); err != nil {
							b.Error(err)
						}
						f.Close()
						continue
					}
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
			if s.group != nil {
				b.ReportMetric(float64(flushes.Load())/float64(b.N), "flushes/op")
			}
		})
	}
}
