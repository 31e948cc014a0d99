package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"log/slog"
	"renkei/archive"
	"renkei/blob/disk"
	"renkei/internal/dicomtest"
	"renkei/sqlstore"
)

// BenchmarkStore measures ingest through the archive service (parse, blob fsync+rename, grouped index commit) with 4
// concurrent writers, against a baseline in the same run: writing the same bytes to files with an fsync each.
// Report the ratio, not the absolute figure: these machines vary by 2× between runs.
func BenchmarkStore(b *testing.B) {
	dir := b.TempDir()
	var files [][]byte
	for i := 0; i < 64; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%d.dcm", i))
		if err := dicomtest.CT(p, dicomtest.CTOptions{Seed: int64(i), PatientID: "B", InstanceNumber: i}); err != nil {
			b.Fatal(err)
		}
		data, _ := os.ReadFile(p)
		files = append(files, data)
	}
	b.Run("fsync-copy", func(b *testing.B) {
		out := b.TempDir()
		var n atomic.Int64
		b.SetBytes(int64(len(files[0])))
		b.SetParallelism(2) // 4 writers on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				f, err := os.Create(filepath.Join(out, fmt.Sprint(i)))
				if err != nil {
					b.Fatal(err)
				}
				f.Write(files[i%int64(len(files))])
				f.Sync()
				f.Close()
			}
		})
	})
	b.Run("archive.Store", func(b *testing.B) {
		ctx := context.Background()
		d := b.TempDir()
		db, err := sqlstore.Open(ctx, filepath.Join(d, "index.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		blobs, err := disk.Open(filepath.Join(d, "blobs"))
		if err != nil {
			b.Fatal(err)
		}
		a := archive.New(db, blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
		var n atomic.Int64
		b.SetBytes(int64(len(files[0])))
		b.SetParallelism(2)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				// A distinct instance each time: rewrite the SOP Instance UID's last digits in a copy.
				data := bytes.Clone(files[i%int64(len(files))])
				uid := []byte(dicomtest.UID(fmt.Sprint("bench", i)))
				old := []byte(dicomtest.UID(fmt.Sprint("bench-sop-", i%int64(len(files)))))
				_ = old
				patchSOP(data, uid)
				res := a.Store(ctx, bytes.NewReader(data), archive.StoreRequest{Source: "bench"})
				if res.Err != nil {
					b.Fatal(res.Err)
				}
			}
		})
	})
}

// patchSOP overwrites the value of (0008,0018) in an explicit VR LE file with uid (padded to the same length).
func patchSOP(data, uid []byte) {
	i := bytes.Index(data, []byte{0x08, 0x00, 0x18, 0x00, 'U', 'I'})
	if i < 0 {
		return
	}
	l := int(data[i+6]) | int(data[i+7])<<8
	v := data[i+8 : i+8+l]
	for j := range v {
		v[j] = 0
	}
	copy(v, uid[:min(len(uid), l)])
}
