package dimse_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"renkei/dimse"
	"renkei/internal/dicomtest"
)

// TestStorescuThroughput measures storescu → Server over one association with a handler that discards the data,
// the protocol's own cost. Run with DIMSE_BENCH=1.
func TestStorescuThroughput(t *testing.T) {
	if os.Getenv("DIMSE_BENCH") == "" {
		t.Skip("set DIMSE_BENCH=1")
	}
	needTools(t, "storescu")
	dir := t.TempDir()
	const n = 300
	var total int64
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%04d.dcm", i))
		if err := dicomtest.CT(p, dicomtest.CTOptions{InstanceNumber: i + 1, Seed: 9}); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		total += fi.Size()
	}
	h := dimse.StoreFunc(func(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
		io.Copy(io.Discard, data)
		return dimse.Success()
	})
	addr := serve(t, &dimse.Server{Handlers: dimse.Handlers{Store: h}})
	host, port := hostPort(t, addr)
	start := time.Now()
	run(t, "storescu", "+sd", "-aec", "RENKEI", host, port, dir)
	d := time.Since(start)
	t.Logf("%d instances, %.0f MB in %v: %.0f instances/s, %.0f MB/s", n, float64(total)/1e6, d, n/d.Seconds(), float64(total)/1e6/d.Seconds())
}
