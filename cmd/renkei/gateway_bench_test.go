package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"renkei/internal/dicomtest"
)

// Benchmarks of the hospital gateway (issue 11, "Speed"). They run the real binary as renkei (`renkei serve`) and
// as the gateway, with dcmtk's storescu as the modality, and report each figure beside a baseline measured in the
// same run, since this machine's speed moves from run to run (docs/benchmarks.md, "Hospital gateway"):
//
//	go test ./cmd/renkei -run '^$' -bench Gateway -benchtime 2x -v
//
// BenchmarkGatewayLoopback: storescu → gateway → renkei over loopback against direct STOW-RS of the same kind of
// study into the same renkei (batches of 20, 4 in flight, as the gateway's uploader sends). Target ≥ 80%.
// BenchmarkGatewaySlowLink: the gateway's uploads through a proxy that shapes each direction to 10 Mbit/s, with
// --encoding none, zstd and gzip, on uncompressed CT of two kinds of pixels. Target ≥ 1.5× for compression.
//
// RENKEI_BENCH_GW_INSTANCES (default 500) is the loopback study's size, RENKEI_BENCH_GW_SLOW_INSTANCES (default 40)
// the slow link's; RENKEI_BENCH_GW_PERF=DIR records a CPU profile of each gateway run with perf(1) into DIR.
// RENKEI_BENCH_GW_SPOOL_ROOT=DIR puts the gateways' spools in DIR instead of the benchmark's temporary folder: on a
// tmpfs (/dev/shm) that shows what the path would give if the spool's flushes cost nothing.

const (
	gbBatch    = 20             // the uploader's default MaxBatch
	gbParallel = 4              // the gateway's default --parallel
	gbSlowRate = 10_000_000 / 8 // bytes a second each way: 10 Mbit/s
)

// BenchmarkGatewayLoopback measures the whole path a modality's study takes over loopback: from storescu's start
// (one association, as a CT sends) until the gateway's spool is empty, that is until renkei acknowledged the last
// instance. The baseline is direct STOW-RS into the same renkei of a study of the same size, in batches of 20 with
// 4 requests in flight, files streamed from disk as the gateway streams its spool. Each iteration measures, in a
// rotating order, direct, the gateway with --encoding none (the same bytes as direct), with zstd (its default) and
// with 4 storescu associations at once, and two runs that only explain the others: spool-only, the gateway with
// renkei out of reach (how fast one association fills the spool), and sink, storescu into dcmtk's storescp, which
// discards what it receives (the modality's own ceiling); both are timed until storescu exits.
func BenchmarkGatewayLoopback(b *testing.B) {
	env := newGBEnv(b)
	n := gbEnvInt(b, "RENKEI_BENCH_GW_INSTANCES", 500)
	type variant struct {
		name     string
		kind     string // direct, gateway, spool-only or sink
		encoding string
		assocs   int
	}
	variants := []variant{{"direct", "direct", "", 0}, {"e2e-none", "gateway", "none", 1}, {"e2e-zstd", "gateway", "zstd", 1},
		{"e2e-none-4assoc", "gateway", "none", 4}, {"spool-only", "spool-only", "none", 1}, {"sink", "sink", "", 1}}
	runs := make([]gbRun, len(variants)) // sums over the iterations
	iters := 0
	for b.Loop() { // b.Loop, not b.N: the setup above runs once, not once more for a first b.N = 1
		b.StopTimer() // only storescu's start to the empty spool, and the direct requests, are timed
		it := iters
		iters++
		dirs := make([]string, len(variants))
		studies := make([]string, len(variants))
		for k, v := range variants {
			dirs[k] = filepath.Join(env.dir, fmt.Sprintf("loop-%d-%s", it, v.name))
			studies[k] = gbStudy(b, dirs[k], fmt.Sprintf("loop/%d/%s", it, v.name), n, false)
		}
		for j := range variants {
			k := (j + it) % len(variants) // a rotating order: no variant always follows the same one
			v := variants[k]
			syscall.Sync()
			var r gbRun
			switch v.kind {
			case "direct":
				cpu0 := gbCPU(env.renkeiPID)
				b.StartTimer()
				r.elapsed = env.direct(b, dirs[k])
				b.StopTimer()
				r.renkeiCPU = gbCPU(env.renkeiPID) - cpu0
			case "gateway":
				r = env.viaGateway(b, dirs[k], v.encoding, v.assocs, env.renkeiURL, nil)
			case "spool-only":
				r = env.viaGateway(b, dirs[k], v.encoding, v.assocs, "", nil)
			case "sink":
				r.elapsed = gbSink(b, dirs[k])
			}
			if v.kind == "direct" || v.kind == "gateway" {
				env.checkStored(b, studies[k], n)
			}
			b.Logf("iteration %d, %s: %d instances in %v (%.1f/s)%s", it, v.name, n, r.elapsed.Round(time.Millisecond),
				float64(n)/r.elapsed.Seconds(), r.describe(n))
			runs[k].add(r)
			os.RemoveAll(dirs[k])
		}
		b.StartTimer() // b.Loop wants it running
	}
	total := float64(n * iters)
	direct := runs[0].elapsed.Seconds()
	for k, v := range variants {
		r := runs[k]
		if k > 0 {
			b.ReportMetric(direct/r.elapsed.Seconds(), v.name+"/direct")
		}
		b.ReportMetric(total/r.elapsed.Seconds(), v.name+"-inst/s")
		if v.kind == "gateway" || v.kind == "spool-only" {
			b.ReportMetric(float64(r.gatewayCPU.Microseconds())/total, v.name+"-gateway-cpu-µs/inst")
		}
		if v.kind == "direct" || v.kind == "gateway" {
			b.ReportMetric(float64(r.renkeiCPU.Microseconds())/total, v.name+"-renkei-cpu-µs/inst")
		}
	}
	b.ReportMetric(total/runs[1].spooled.Seconds(), "e2e-none-storescu-inst/s")
	if runs[1].requests > 0 {
		b.ReportMetric(float64(runs[1].acked)/float64(runs[1].requests), "e2e-none-inst/request")
	}
}

// BenchmarkGatewaySlowLink measures what compression in transit gives on a hospital's slow line: the gateway's
// uploads pass a proxy that limits each direction to 10 Mbit/s (a token bucket shared by all connections), and the
// same kind of study goes with --encoding none, zstd and gzip, timed from storescu's start until the spool is empty.
// Two kinds of uncompressed CT (Explicit VR Little Endian, 512×512, 16-bit): dicomtest's synthetic pixels (a disc
// with uniform ±30 HU noise) and "anatomy" (a body with fat, lungs and spine, smooth texture and spatially
// correlated noise of about 12 HU, air and the padding outside the scan circle as a CT writes them), since how much
// a general-purpose compressor saves depends entirely on the pixels.
func BenchmarkGatewaySlowLink(b *testing.B) {
	env := newGBEnv(b)
	shaper := newGBShaper(b, env.renkeiAddr, gbSlowRate)
	n := gbEnvInt(b, "RENKEI_BENCH_GW_SLOW_INSTANCES", 40)
	for _, pixels := range []string{"synthetic", "anatomy"} {
		b.Run(pixels, func(b *testing.B) {
			kinds := []string{"none", "zstd", "gzip"}
			runs := make([]gbRun, len(kinds)) // sums over the iterations
			var stored int64
			iters := 0
			for b.Loop() {
				b.StopTimer()
				it := iters
				iters++
				dirs := make([]string, len(kinds))
				studies := make([]string, len(kinds))
				for k, kind := range kinds {
					dirs[k] = filepath.Join(env.dir, fmt.Sprintf("slow-%s-%d-%s", pixels, it, kind))
					studies[k] = gbStudy(b, dirs[k], fmt.Sprintf("slow/%s/%d/%s", pixels, it, kind), n, pixels == "anatomy")
				}
				stored += gbDirBytes(b, dirs[0])
				for j := range kinds {
					k := (j + it) % len(kinds)
					syscall.Sync()
					r := env.viaGateway(b, dirs[k], kinds[k], 1, "http://"+shaper.addr, shaper)
					env.checkStored(b, studies[k], n)
					b.Logf("%s, iteration %d, %s: %d instances in %v (%.2f/s), %.1f MB up, %.1f kB down%s", pixels, it, kinds[k], n,
						r.elapsed.Round(time.Millisecond), float64(n)/r.elapsed.Seconds(), float64(r.up)/1e6, float64(r.down)/1e3, r.describe(n))
					runs[k].add(r)
					os.RemoveAll(dirs[k])
				}
				b.StartTimer() // b.Loop wants it running
			}
			total := float64(n * iters)
			for k, kind := range kinds {
				r := runs[k]
				b.ReportMetric(total/r.elapsed.Seconds(), kind+"-inst/s")
				// stored ÷ wire: what the modality's files weigh against what crossed the line (HTTP and multipart
				// framing and the heartbeat included, so --encoding none shows slightly below 1).
				b.ReportMetric(float64(stored)/float64(r.up), kind+"-stored/wire")
				b.ReportMetric(float64(r.gatewayCPU.Microseconds())/total, kind+"-gateway-cpu-µs/inst")
			}
			b.ReportMetric(runs[0].elapsed.Seconds()/runs[1].elapsed.Seconds(), "zstd/none")
			b.ReportMetric(runs[0].elapsed.Seconds()/runs[2].elapsed.Seconds(), "gzip/none")
		})
	}
}

// gbEnv is one renkei server, with a clinic and its read-write token, and the built binary.
type gbEnv struct {
	bin, dir   string
	token      string
	tokFile    string
	renkeiAddr string
	renkeiURL  string
	renkeiPID  int
	http       *http.Client
	perfDir    string
	runs       int
	// pin (RENKEI_BENCH_GW_PIN=1) runs renkei on the second CPU and everything else on the first, as two machines.
	pin bool
}

func newGBEnv(b *testing.B) *gbEnv {
	b.Helper()
	if testing.Short() {
		b.Skip("the gateway benchmarks run the real binary; skipped with -short")
	}
	if _, err := exec.LookPath("storescu"); err != nil {
		b.Skip("storescu is missing: install Debian's dcmtk (scripts/setup does)")
	}
	dir := b.TempDir()
	e := &gbEnv{dir: dir, tokFile: filepath.Join(dir, "token"), perfDir: os.Getenv("RENKEI_BENCH_GW_PERF")}
	e.bin = scaleBuild(b, dir)
	if os.Getenv("RENKEI_BENCH_GW_PIN") == "1" {
		gbPinSelf(b, 0)
		e.pin = true
	}
	startBenchServe(b, e, e.bin, "renkei", filepath.Join(dir, "data"), nil, nil, "--dimse", "127.0.0.1:0")
	if err := os.WriteFile(e.tokFile, []byte(e.token+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	return e
}

// startBenchServe provisions a hospital with a write token in data (admin: extra flags of the admin commands, such as
// --db), starts `renkei serve` on it as a process (its log in DIR/name.log beside data), stops it when the benchmark
// ends, and fills e's token, address, URL, process and HTTP client once /healthz answers.
func startBenchServe(b *testing.B, e *gbEnv, bin, name, data string, admin, env []string, args ...string) {
	var out bytes.Buffer
	for _, a := range [][]string{
		{"admin", "institution", "add", "bench-hospital", "--name", "ベンチ病院", "--kind", "hospital"},
		{"admin", "token", "add", "bench-" + name, "--institution", "bench-hospital", "--write"},
	} {
		out.Reset()
		if code := Main(context.Background(), append(append(a, "--data", data), admin...), &out, &out); code != 0 {
			b.Fatalf("%v: %s", a, out.String())
		}
	}
	m := regexp.MustCompile(`(?m)^(rk_\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		b.Fatalf("token add printed no token: %s", out.String())
	}
	e.token = m[1]
	e.renkeiAddr = gbFreeAddr(b)
	e.renkeiURL = "http://" + e.renkeiAddr
	logPath := filepath.Join(filepath.Dir(data), name+".log")
	log, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--data", data, "--http", e.renkeiAddr, "--log-level", "warn"}, args...)...)
	if e.pin {
		cmd = exec.Command("taskset", append([]string{"-c", "1"}, cmd.Args...)...) // taskset execs: the same PID
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(append(os.Environ(), "RENKEI_DEMO=false", "TCP_NODELAY=1"), env...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	e.renkeiPID = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if b.Failed() {
			b.Logf("%s's log:\n%s", name, tail(logPath, 30))
		}
	})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = gbParallel
	e.http = &http.Client{Transport: bearer{e.token, tr}, Timeout: 10 * time.Minute}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := e.http.Get(e.renkeiURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			b.Fatalf("%s exited:\n%s", name, tail(logPath, 20))
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not answer /healthz:\n%s", name, tail(logPath, 20))
		}
	}
}

// gbPinSelf binds every thread of the benchmark's process to one CPU; threads and processes started later inherit it
// (the gateway, storescu, storescp and the direct client then share that CPU, and renkei has the other one).
func gbPinSelf(b *testing.B, cpu int) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		b.Fatal(err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			b.Fatalf("pin thread %d to CPU %d: %v", tid, cpu, err)
		}
	}
}

func gbEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func gbFreeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// gbStudy writes a study of n 512×512 CT instances (Explicit VR Little Endian, about 525 kB each) into dir and
// returns its Study Instance UID. anatomy replaces dicomtest's pixels with gbAnatomy's.
func gbStudy(b *testing.B, dir, name string, n int, anatomy bool) string {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	study, series := dicomtest.UID(name+"/study"), dicomtest.UID(name+"/series")
	const rows, cols = 512, 512
	var px []byte
	if anatomy {
		px = make([]byte, rows*cols*2)
	}
	for i := 1; i <= n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("ct-%04d.dcm", i))
		err := dicomtest.CT(p, dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: series,
			SOPInstanceUID: dicomtest.UID(fmt.Sprintf("%s/%d", name, i)), PatientID: "GWBENCH", PatientName: "Bench^Gateway=ベンチ^ゲートウェイ",
			Rows: rows, Cols: cols, InstanceNumber: i, Seed: int64(i)})
		if err != nil {
			b.Fatal(err)
		}
		if anatomy {
			gbAnatomy(px, rows, cols, i, 1) // the same pixels in every study, as dicomtest's are
			if err := gbReplacePixels(p, px); err != nil {
				b.Fatal(err)
			}
		}
	}
	return study
}

// gbReplacePixels overwrites the Pixel Data value that ends a dicomtest CT file (explicit VR little endian, OW).
func gbReplacePixels(path string, px []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	off := fi.Size() - int64(len(px))
	hdr := make([]byte, 12)
	if _, err := f.ReadAt(hdr, off-12); err != nil {
		return err
	}
	if !bytes.Equal(hdr[:6], []byte{0xE0, 0x7F, 0x10, 0x00, 'O', 'W'}) {
		return fmt.Errorf("%s does not end with an OW (7FE0,0010) of %d bytes", path, len(px))
	}
	if _, err := f.WriteAt(px, off); err != nil {
		return err
	}
	return f.Close()
}

// gbAnatomy fills px with a CT slice that looks, to a compressor, more like a patient than dicomtest's disc: stored
// values for RescaleIntercept -1024 (HU + 1024), PixelPaddingValue -2000 outside the scan circle, air around an
// elliptic body with a fat layer, two lungs with a smooth vessel-like texture, a vertebra, soft tissue with smooth
// variations, and noise of about 12 HU inside the body (4 HU in air) correlated over neighbouring pixels as a
// reconstruction kernel makes it. The shapes change slowly with the slice, as a series does.
func gbAnatomy(px []byte, rows, cols, slice int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(slice)))
	// White noise blurred by [1 2 1]/4 in both directions: σ falls to 0.375 of the white noise's, corrected below.
	white := make([]float64, rows*cols)
	for i := range white {
		white[i] = rng.NormFloat64()
	}
	tmp := make([]float64, rows*cols)
	for y := range rows {
		for x := range cols {
			l, r := white[y*cols+max(x-1, 0)], white[y*cols+min(x+1, cols-1)]
			tmp[y*cols+x] = (l + 2*white[y*cols+x] + r) / 4
		}
	}
	for y := range rows {
		for x := range cols {
			u, d := tmp[max(y-1, 0)*cols+x], tmp[min(y+1, rows-1)*cols+x]
			white[y*cols+x] = (u + 2*tmp[y*cols+x] + d) / 4 / 0.375
		}
	}
	z := float64(slice) * 0.04
	cx, cy := float64(cols)/2, float64(rows)/2
	fov := min(cx, cy) - 1
	ax, ay := 0.82*fov*(1+0.03*math.Sin(z)), 0.60*fov*(1+0.02*math.Cos(z))
	lx, ly, lax, lay := 0.36*ax, -0.08*ay, 0.27*ax*(1+0.1*math.Sin(z/2)), 0.62*ay
	sx, sy, sr := 0.0, 0.62*ay, 0.13*ay
	for y := range rows {
		dy := float64(y) - cy
		for x := range cols {
			dx := float64(x) - cx
			i := y*cols + x
			v := -2000 // padding, outside the reconstruction circle
			if dx*dx+dy*dy <= fov*fov {
				hu := -1000 + 4*white[i]
				if e := dx*dx/(ax*ax) + dy*dy/(ay*ay); e <= 1 {
					hu = 45 + 12*math.Sin(dx*0.031+z)*math.Cos(dy*0.023-z) + 8*math.Sin((dx+dy)*0.011+2*z)
					if e > 0.80 {
						hu = -95 + 10*math.Sin(dx*0.05+dy*0.04) // subcutaneous fat
					}
					lung := false
					for _, side := range []float64{-1, 1} {
						ex, ey := (dx-side*lx)/lax, (dy-ly)/lay
						if ex*ex+ey*ey <= 1 {
							lung = true
							hu = -860 + 60*math.Max(0, math.Sin(dx*0.19+z)*math.Sin(dy*0.17-z)) + 25*math.Sin(dx*0.05+dy*0.07)
						}
					}
					if d := math.Hypot(dx-sx, dy-sy); !lung && d <= sr {
						hu = 250 + 550*(d/sr)*(d/sr) // cancellous bone inside a cortical rim
					}
					hu += 12 * white[i]
				}
				v = int(math.Round(hu)) + 1024
			}
			px[2*i], px[2*i+1] = byte(uint16(int16(v))), byte(uint16(int16(v))>>8)
		}
	}
}

func gbDirBytes(b *testing.B, dir string) int64 {
	des, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, d := range des {
		fi, err := d.Info()
		if err != nil {
			b.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// direct sends the study's files to renkei by STOW-RS as the gateway's uploader does (batches of 20, 4 requests in
// flight, each body streamed from the files) and returns how long it took.
func (e *gbEnv) direct(b *testing.B, dir string) time.Duration {
	des, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var files []string
	for _, d := range des {
		files = append(files, filepath.Join(dir, d.Name()))
	}
	batches := make(chan []string, len(files)/gbBatch+1)
	for i := 0; i < len(files); i += gbBatch {
		batches <- files[i:min(i+gbBatch, len(files))]
	}
	close(batches)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, gbParallel)
	for range gbParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				if err := e.stow(batch); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return el
}

func (e *gbEnv) stow(files []string) error {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, p := range files {
			part, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			f, err := os.Open(p)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			_, err = io.Copy(part, f)
			f.Close()
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	req, err := http.NewRequest(http.MethodPost, e.renkeiURL+"/dicomweb/studies", pr)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := e.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("STOW-RS: %s: %s", resp.Status, body)
	}
	var ans map[string]dicomJSON
	if err := json.Unmarshal(body, &ans); err != nil {
		return fmt.Errorf("STOW-RS answer: %v", err)
	}
	if got := len(ans["00081199"].items()); got != len(files) {
		return fmt.Errorf("STOW-RS acknowledged %d of %d instances: %s", got, len(files), body)
	}
	return nil
}

// checkStored fails the benchmark unless renkei holds n instances of the study (QIDO-RS
// NumberOfStudyRelatedInstances).
func (e *gbEnv) checkStored(b *testing.B, study string, n int) {
	var res []map[string]dicomJSON
	resp, err := e.http.Get(e.renkeiURL + "/dicomweb/studies?StudyInstanceUID=" + study + "&includefield=00201208")
	if err == nil {
		defer resp.Body.Close()
		err = json.NewDecoder(resp.Body).Decode(&res)
	}
	if err != nil || len(res) != 1 {
		b.Fatalf("QIDO-RS of study %s: %v, %d results", study, err, len(res))
	}
	if got, err := res[0]["00201208"].num(); err != nil || got != n {
		b.Fatalf("renkei holds %d instances of study %s, want %d (%v)", got, study, n, err)
	}
}

// gbRun is one measured run (or the sum of several).
type gbRun struct {
	elapsed    time.Duration // storescu's start until the spool is empty
	spooled    time.Duration // storescu's start until its exit: everything on the spool's disk
	requests   int           // STOW-RS requests that stored something ("gateway: sent" log lines)
	acked      int           // instances they acknowledged
	up, down   int64         // bytes through the shaping proxy, gateway → renkei and back
	gatewayCPU time.Duration // user and system CPU time of the gateway's process
	renkeiCPU  time.Duration // of renkei's, during the run
}

func (r *gbRun) add(o gbRun) {
	r.elapsed += o.elapsed
	r.spooled += o.spooled
	r.requests += o.requests
	r.acked += o.acked
	r.up += o.up
	r.down += o.down
	r.gatewayCPU += o.gatewayCPU
	r.renkeiCPU += o.renkeiCPU
}

func (r gbRun) describe(n int) string {
	s := fmt.Sprintf("; renkei CPU %v", r.renkeiCPU.Round(time.Millisecond))
	if r.spooled > 0 {
		s += fmt.Sprintf("; storescu done after %v (%.1f/s); gateway CPU %v", r.spooled.Round(time.Millisecond),
			float64(n)/r.spooled.Seconds(), r.gatewayCPU.Round(time.Millisecond))
	}
	if r.requests > 0 {
		s += fmt.Sprintf("; %d requests, %.1f instances each", r.requests, float64(r.acked)/float64(r.requests))
	}
	return s
}

// gbCPU returns the user and system CPU time a process has used so far (/proc/PID/stat, proc(5)).
func gbCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, after, ok := bytes.Cut(b, []byte(") ")) // the command name may hold spaces
	if !ok {
		return 0
	}
	f := strings.Fields(string(after)) // f[0] is field 3 (state): utime and stime are fields 14 and 15
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

var gbSentRe = regexp.MustCompile(`msg="gateway: sent".* acknowledged=(\d+)`)

// viaGateway starts a gateway with a fresh spool and the encoding, sends the study's files to it with storescu
// (assocs processes at once, one association each, the files dealt out in turn) and waits until the spool is
// empty. With a shaper, the gateway reaches renkei through it (server is the shaper's URL) and the bytes it carried
// are counted. With server "" renkei is out of the gateway's reach and the run ends when storescu exits.
func (e *gbEnv) viaGateway(b *testing.B, dir, encoding string, assocs int, server string, shaper *gbShaper) gbRun {
	e.runs++
	spool := filepath.Join(e.dir, fmt.Sprintf("spool-%d", e.runs))
	if root := os.Getenv("RENKEI_BENCH_GW_SPOOL_ROOT"); root != "" {
		spool = filepath.Join(root, fmt.Sprintf("renkei-bench-spool-%d-%d", os.Getpid(), e.runs))
	}
	dimseAddr := gbFreeAddr(b)
	spoolOnly := server == ""
	if spoolOnly {
		server = "http://" + gbFreeAddr(b) // nothing listens there
	}
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	cmd := exec.Command(e.bin, "gateway", "--server", server, "--token-file", e.tokFile, "--dimse", dimseAddr, "--ae", "GW_BENCH",
		"--spool", spool, "--status", "off", "--heartbeat", "1m", "--reserve-mb", "64", "--encoding", encoding,
		"--parallel", strconv.Itoa(gbParallel), "--log-level", cmp.Or(map[bool]string{true: "debug"}[e.perfDir != ""], "info"))
	cmd.Stdout, cmd.Stderr = lockedWriter{&logMu, &logBuf}, lockedWriter{&logMu, &logBuf}
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	output := func() string { logMu.Lock(); defer logMu.Unlock(); return logBuf.String() }
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		os.RemoveAll(spool)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", dimseAddr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			b.Fatalf("the gateway exited: %v\n%s", waitErr, output())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("the gateway does not listen on %s:\n%s", dimseAddr, output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopPerf := e.perf(b, cmd.Process.Pid, encoding)
	if shaper != nil {
		shaper.reset()
	}
	host, port, _ := net.SplitHostPort(dimseAddr)
	des, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	scus := make([]*exec.Cmd, assocs)
	for k := range scus {
		args := []string{"-aet", "CT_ROOM1", "-aec", "GW_BENCH", host, port}
		for i := k; i < len(des); i += assocs {
			args = append(args, filepath.Join(dir, des[i].Name()))
		}
		scus[k] = dcmtk("storescu", args...)
	}
	objects := filepath.Join(spool, "objects")
	var r gbRun
	cpu0, gcpu0 := gbCPU(e.renkeiPID), gbCPU(cmd.Process.Pid)
	b.StartTimer()
	start := time.Now()
	outs := make([][]byte, assocs)
	errs := make([]error, assocs)
	var wg sync.WaitGroup
	for k, scu := range scus {
		wg.Add(1)
		go func() { defer wg.Done(); outs[k], errs[k] = scu.CombinedOutput() }()
	}
	wg.Wait()
	r.spooled = time.Since(start)
	for k, err := range errs {
		if err != nil {
			b.Fatalf("storescu: %v\n%s", err, tailString(string(outs[k]), 20))
		}
	}
	for deadline := start.Add(30 * time.Minute); !spoolOnly; {
		if gbSpooled(b, objects) == 0 {
			break
		}
		select {
		case <-exited:
			b.Fatalf("the gateway exited with images on its spool: %v\n%s", waitErr, tailString(output(), 20))
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("the spool did not empty:\n%s", tailString(output(), 20))
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.elapsed = time.Since(start)
	b.StopTimer()
	r.gatewayCPU, r.renkeiCPU = gbCPU(cmd.Process.Pid)-gcpu0, gbCPU(e.renkeiPID)-cpu0
	stopPerf()
	if e.perfDir != "" {
		os.WriteFile(filepath.Join(e.perfDir, fmt.Sprintf("gateway-%d-%s.log", e.runs, encoding)), []byte(output()), 0o644)
	}
	if shaper != nil {
		r.up, r.down = shaper.up.bytes.Load(), shaper.down.bytes.Load()
	}
	for _, m := range gbSentRe.FindAllStringSubmatch(output(), -1) {
		n, _ := strconv.Atoi(m[1])
		r.requests++
		r.acked += n
	}
	return r
}

// gbSink sends the study's files with storescu (one association) to dcmtk's storescp, which discards them, and
// returns how long storescu took: what the modality's side can do at most. storescp announces its largest maximum
// PDU (128 KiB; the gateway announces 256 KiB), since storescu's speed depends on it.
func gbSink(b *testing.B, dir string) time.Duration {
	addr := gbFreeAddr(b)
	_, port, _ := net.SplitHostPort(addr)
	scp := dcmtk("storescp", "--ignore", "--max-pdu", "131072", "--aetitle", "SINK", port)
	var out bytes.Buffer
	scp.Stdout, scp.Stderr = &out, &out
	if err := scp.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { scp.Process.Kill(); scp.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("storescp does not listen:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	host, _, _ := net.SplitHostPort(addr)
	b.StartTimer()
	start := time.Now()
	res, err := dcmtk("storescu", "-aet", "CT_ROOM1", "-aec", "SINK", "+sd", host, port, dir).CombinedOutput()
	el := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatalf("storescu to storescp: %v\n%s", err, tailString(string(res), 20))
	}
	return el
}

// gbSpooled counts the instances in a spool's objects/ folder (one .dcm each).
func gbSpooled(b *testing.B, objects string) int {
	des, err := os.ReadDir(objects)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, d := range des {
		if strings.HasSuffix(d.Name(), ".dcm") {
			n++
		}
	}
	return n
}

// perf records the gateway's CPU profile with perf(1) while it runs, when RENKEI_BENCH_GW_PERF names a folder
// (`perf report -i FILE` reads it); the returned func stops it.
func (e *gbEnv) perf(b *testing.B, pid int, encoding string) func() {
	if e.perfDir == "" {
		return func() {}
	}
	out := filepath.Join(e.perfDir, fmt.Sprintf("gateway-%d-%s.perf", e.runs, encoding))
	cmd := exec.Command("perf", "record", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", out)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Logf("perf: %v", err)
		return func() {}
	}
	time.Sleep(200 * time.Millisecond) // perf attaches
	return func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		b.Logf("gateway profile: %s", out)
	}
}

// gbShaper is a TCP proxy that limits each direction, over all its connections together, to rate bytes a second
// (a token bucket of 32 KiB: a line's bandwidth, not each connection's), and counts the bytes.
type gbShaper struct {
	addr     string
	target   string
	up, down *gbBucket
}

type gbBucket struct {
	rate  float64 // bytes a second
	burst time.Duration
	mu    sync.Mutex
	next  time.Time // when the line has sent everything granted so far
	bytes atomic.Int64
}

// take waits until n more bytes may pass.
func (k *gbBucket) take(n int) {
	k.mu.Lock()
	now := time.Now()
	if floor := now.Add(-k.burst); k.next.Before(floor) {
		k.next = floor // an idle line saves up at most the bucket's size
	}
	k.next = k.next.Add(time.Duration(float64(n) / k.rate * float64(time.Second)))
	until := k.next
	k.mu.Unlock()
	if d := time.Until(until); d > 0 {
		time.Sleep(d)
	}
	k.bytes.Add(int64(n))
}

func newGBShaper(b *testing.B, target string, rate float64) *gbShaper {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	burst := time.Duration(32 << 10 / rate * float64(time.Second))
	s := &gbShaper{addr: ln.Addr().String(), target: target, up: &gbBucket{rate: rate, burst: burst}, down: &gbBucket{rate: rate, burst: burst}}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns[c], conns[up] = true, true
			mu.Unlock()
			pipe := func(dst, src net.Conn, k *gbBucket) {
				defer func() {
					dst.Close()
					src.Close()
					mu.Lock()
					delete(conns, dst)
					delete(conns, src)
					mu.Unlock()
				}()
				buf := make([]byte, 16<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 {
						k.take(n)
						if _, werr := dst.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return // EOF or closed: the other direction's copy ends too, on dst's Close
					}
				}
			}
			go pipe(up, c, s.up)
			go pipe(c, up, s.down)
		}
	}()
	return s
}

func (s *gbShaper) reset() {
	s.up.bytes.Store(0)
	s.down.bytes.Store(0)
}
