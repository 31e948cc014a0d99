package gateway

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"renkei/internal/dicomtest"
)

// BenchmarkSpoolPut measures what one modality association waits for per C-STORE: Put of a 512×512 16-bit CT
// instance (525 kB) into a spool on the test's disk, one at a time, while a second goroutine removes what was put
// in groups of 16 (as the uploader does once renkei acknowledged a request), so the file system sees the same
// churn of created and deleted files as a running gateway. It reports the CPU time of the whole process per Put
// (user + system, from getrusage), since on this machine the kernel's share of a Put is most of it.
//
//	go test ./gateway -run '^$' -bench SpoolPut -benchtime 400x -count 3
func BenchmarkSpoolPut(b *testing.B) {
	dir := b.TempDir()
	sp, err := Open(filepath.Join(dir, "spool"), 0)
	if err != nil {
		b.Fatal(err)
	}
	const distinct = 64
	files := make([][]byte, distinct)
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("ct-%d.dcm", i))
		if err := dicomtest.CT(p, dicomtest.CTOptions{PatientID: "BENCH", Seed: int64(i + 1)}); err != nil {
			b.Fatal(err)
		}
		if files[i], err = os.ReadFile(p); err != nil {
			b.Fatal(err)
		}
	}
	keys := make(chan string, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var group []string
		for k := range keys {
			if group = append(group, k); len(group) == 16 {
				if err := sp.RemoveAll(group); err != nil {
					b.Error(err)
				}
				group = group[:0]
			}
		}
		sp.RemoveAll(group)
	}()
	ctx := context.Background()
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.SetBytes(int64(len(files[0])))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f := uniqueCopy(files[i%distinct], i) // every Put needs bytes of its own: the key is their SHA-256
		e, err := sp.Put(ctx, bytes.NewReader(f), Entry{CallingAETitle: "CT1"})
		if err != nil {
			b.Fatal(err)
		}
		keys <- e.Key
	}
	b.StopTimer()
	close(keys)
	<-done
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/put")
}

// uniqueCopy returns f with its last 8 bytes (pixel data) replaced by i, so that every Put has another SHA-256.
func uniqueCopy(f []byte, i int) []byte {
	out := bytes.Clone(f)
	for k := range 8 {
		out[len(out)-1-k] = byte(i >> (8 * k))
	}
	return out
}
