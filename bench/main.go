// Command bench measures renkei against Orthanc (with its DICOMweb plugin) on the same machine in the same run:
// STOW-RS ingest against the disk's own limits, peak memory, QIDO-RS latency (also at 100,000 studies), WADO-RS
// metadata, whole-study retrieval and single-frame retrieval. It prints a table of ratios against the targets and
// writes it to docs/benchmarks.md. Run it with `bash bench/run.sh` (add --quick for a small run); it is never part
// of the test suite.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

type config struct {
	Repo, Out, Docs string
	Quick           bool
	PerStudy        int // CT instances per study (5 studies)
	Frames          int
	QIDOStudies     int // synthetic studies indexed into renkei for QIDO at scale
	OrthancStudies  int // small studies sent to Orthanc by STOW-RS for QIDO at scale
	Reps            int // repetitions of latency measurements
	Perf, Keep      bool
	DIMSE           bool
	FindStudies     int // with -dimse: synthetic studies indexed into renkei for C-FIND at scale
	PerfTrace       bool
	Command         string
}

func main() {
	var c config
	flag.StringVar(&c.Repo, "repo", ".", "renkei work tree (module root)")
	flag.StringVar(&c.Out, "out", "", "output folder: data set, server data, logs, profiles (default REPO/bench/out)")
	flag.StringVar(&c.Docs, "docs", "", "markdown file to update with the results (default REPO/docs/benchmarks.md for a full run, none for --quick); none for none")
	flag.BoolVar(&c.Quick, "quick", false, "small run: 200 CT instances, 10,000 synthetic studies, fewer repetitions")
	flag.IntVar(&c.QIDOStudies, "qido-studies", 0, "synthetic studies indexed into renkei for QIDO at scale (default 100000, quick 10000)")
	flag.IntVar(&c.OrthancStudies, "orthanc-studies", -1, "small studies sent to Orthanc by STOW-RS for QIDO at scale (default 100000, quick 0)")
	flag.BoolVar(&c.Perf, "perf", false, "record CPU profiles and system-call times of renkei with perf during each phase (figures then carry perf's overhead, so docs are not updated)")
	flag.BoolVar(&c.PerfTrace, "perf-trace", false, "with --perf, also sum system-call times with perf trace -s")
	flag.BoolVar(&c.DIMSE, "dimse", false, "run only the DIMSE phase (storescu ingest, C-ECHO, C-FIND, C-MOVE, C-GET) on the same data set; results go between the bench-dimse markers of the docs")
	flag.IntVar(&c.FindStudies, "dimse-find-studies", -1, "with -dimse: synthetic studies indexed into renkei for C-FIND at scale, 0 to skip (default 100000, quick 10000)")
	flag.BoolVar(&c.Keep, "keep", false, "keep the servers' data folders after the run")
	flag.Parse()
	c.Command = "bash bench/run.sh"
	for i := 1; i < len(os.Args); i++ {
		if os.Args[i] == "-repo" || os.Args[i] == "--repo" {
			i++
			continue
		}
		c.Command += " " + os.Args[i]
	}

	var err error
	if c.Repo, err = filepath.Abs(c.Repo); err != nil {
		fatal(err)
	}
	if c.Out == "" {
		c.Out = filepath.Join(c.Repo, "bench", "out")
	}
	c.PerStudy, c.Frames, c.Reps = 396, 200, 200
	def := func(v *int, unset, full, quick int) {
		if *v == unset {
			*v = full
			if c.Quick {
				*v = quick
			}
		}
	}
	def(&c.QIDOStudies, 0, 100000, 10000)
	def(&c.OrthancStudies, -1, 100000, 0)
	def(&c.FindStudies, -1, 100000, 10000)
	if c.Quick {
		c.PerStudy, c.Reps = 40, 50
	}
	if c.Docs == "" && !c.Quick && !c.Perf {
		c.Docs = filepath.Join(c.Repo, "docs", "benchmarks.md")
	}
	if c.Docs == "none" {
		c.Docs = ""
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		logf("%v: stopping servers", s)
		cleanup()
		os.Exit(130)
	}()
	defer cleanup()
	runner := run
	if c.DIMSE {
		runner = runDIMSE
	}
	if err := runner(&c); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	cleanup()
	os.Exit(1)
}

var t0 = time.Now()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// serverResults is everything measured on one server.
type serverResults struct {
	Stow          rate
	StowCPU       float64 // server CPU seconds during STOW-RS
	HWMAfterStow  int64   // kB
	HWM           int64   // kB, peak over the main run
	QIDO          qidoSet
	QIDOScale     *qidoSet
	ScaleLoad     time.Duration // how long indexing the scale studies took
	ScaleLoadHow  string
	Metadata      timed
	Retrieve      rate
	RetrieveAcc   string
	Frames        timed
	HWMScalePhase int64
}

type results struct {
	Machine         machineInfo
	Date            time.Time
	Instances       int
	Bytes           int64
	StudyFiles      int
	StudyBytes      int64
	Plain           rate
	Fsync1, Fsync4  rate
	Blob4           rate // fsync + rename + folder fsync per file, as blob/disk commits
	Renkei, Orthanc serverResults
	Elapsed         time.Duration
}

func run(c *config) error {
	// Bulky data goes under _data, which the go command's ./... patterns skip.
	for _, d := range []string{c.Out, filepath.Join(c.Out, "bin"), filepath.Join(c.Out, "logs"), filepath.Join(c.Out, "_data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	res := &results{Date: time.Now().UTC(), Machine: describeMachine(c.Repo, c.Out)}
	prof := &profiler{dir: filepath.Join(c.Out, "logs"), on: c.Perf, trace: c.PerfTrace}

	bin := filepath.Join(c.Out, "bin", "renkei")
	logf("building renkei")
	if err := buildRenkei(c.Repo, bin); err != nil {
		return err
	}
	dsName := "dataset"
	if c.Quick {
		dsName = "dataset-quick"
	}
	ds, err := makeDataset(filepath.Join(c.Out, "_data", dsName), c.PerStudy, c.Frames)
	if err != nil {
		return err
	}
	if err := ds.warm(); err != nil {
		return err
	}
	res.Instances, res.Bytes = len(ds.Files), ds.bytes()
	res.StudyFiles, res.StudyBytes = ds.study(ds.RetrieveStudy)

	var synth []synthStudy
	if c.QIDOStudies > 0 || c.OrthancStudies > 0 {
		synth = synthStudies(max(c.QIDOStudies, c.OrthancStudies))
	}

	// Both servers run side by side (each idle while the other is measured), so that every phase can alternate
	// between them and the disk's drift during the run falls on both alike.
	rdata, odir := filepath.Join(c.Out, "_data", "renkei-data"), filepath.Join(c.Out, "_data", "orthanc")
	cleanDir(rdata)
	cleanDir(odir)
	if !c.Keep { // deferred first, so run after the servers have stopped
		defer cleanDir(rdata)
		defer cleanDir(odir)
	}
	rs, err := startRenkei(bin, rdata, filepath.Join(c.Out, "logs", "renkei.log"))
	if err != nil {
		return err
	}
	defer func() { rs.stop() }()
	os2, err := startOrthanc(odir, filepath.Join(c.Out, "logs", "orthanc.log"))
	if err != nil {
		return err
	}
	defer os2.stop()

	if err := ingest(c, ds, rs, os2, res, prof); err != nil {
		return err
	}
	if err := queries(c, ds, rs, os2, res, prof); err != nil {
		return err
	}

	// QIDO-RS at scale: renkei's index is filled directly, Orthanc's by STOW-RS of small instances.
	if c.QIDOStudies > 0 {
		rs.stop()
		logf("renkei: indexing %d synthetic studies through sqlstore.DB.Insert", c.QIDOStudies)
		d, err := insertSynthetic(filepath.Join(rdata, "index.db"), synth[:c.QIDOStudies])
		if err != nil {
			return fmt.Errorf("synthetic studies: %w", err)
		}
		R := &res.Renkei
		R.ScaleLoad, R.ScaleLoadHow = d, fmt.Sprintf("%d synthetic studies inserted with sqlstore.DB.Insert (no blobs) in %.0f s", c.QIDOStudies, d.Seconds())
		logf("renkei: %s", R.ScaleLoadHow)
		if rs, err = startRenkei(bin, rdata, filepath.Join(c.Out, "logs", "renkei-scale.log")); err != nil {
			return err
		}
		var q qidoSet
		err = prof.around("renkei-qido-scale", rs.pid(), func() error {
			q, err = measureQIDO(rs, c.QIDOStudies+7, 10, c.Reps, "Ka*")
			return err
		})
		if err != nil {
			return err
		}
		R.QIDOScale, R.HWMScalePhase = &q, procStatusKB(rs.pid(), "VmHWM")
	}
	if c.OrthancStudies > 0 {
		if err := orthancScale(c, os2, synth[:c.OrthancStudies], &res.Orthanc); err != nil {
			return err
		}
	}
	res.Elapsed = time.Since(t0)

	table := report(c, res)
	fmt.Println(table)
	if c.Docs != "" {
		if err := writeDocs(c.Docs, table); err != nil {
			return err
		}
		logf("results written to %s", c.Docs)
	}
	return os.WriteFile(filepath.Join(c.Out, "results.md"), []byte(table), 0o644)
}

// ingest measures the disk's copy rates and both servers' STOW-RS on the same slices of the data set, in turns: each
// slice is copied and sent to each server before the next slice, and the order rotates from slice to slice.
func ingest(c *config, ds *dataset, rs, os2 *server, res *results, prof *profiler) error {
	slices := ingestSlices(c)
	cp := filepath.Join(c.Out, "_data", "copy")
	cleanDir(cp)
	type method struct {
		name string
		dst  *rate
		run  func(files []file, k int) (rate, error)
	}
	add := func(dst *rate, r rate) { dst.Files += r.Files; dst.Bytes += r.Bytes; dst.Seconds += r.Seconds }
	cpu0r, cpu0o := cpuSeconds(rs.pid()), cpuSeconds(os2.pid())
	methods := []method{
		{"plain copy + sync", &res.Plain, func(f []file, _ int) (rate, error) { return copyPlain(f, cp) }},
		{"fsync-each-file copy, 1 writer", &res.Fsync1, func(f []file, _ int) (rate, error) { return copyFsync(f, cp, 1) }},
		{"fsync-each-file copy, 4 writers", &res.Fsync4, func(f []file, _ int) (rate, error) { return copyFsync(f, cp, 4) }},
		{"blob-commit copy (fsync, rename, fsync folder), 4 writers", &res.Blob4, func(f []file, _ int) (rate, error) { return copyDurable(f, cp, 4, true) }},
		{"renkei STOW-RS", &res.Renkei.Stow, func(f []file, k int) (rate, error) {
			var r rate
			err := prof.around(fmt.Sprintf("renkei-stow-%d", k+1), rs.pid(), func() error {
				var err error
				r, err = stow(rs, f, 4, 10)
				return err
			})
			return r, err
		}},
		{"Orthanc STOW-RS", &res.Orthanc.Stow, func(f []file, _ int) (rate, error) { return stow(os2, f, 4, 10) }},
	}
	per := (len(ds.Files) + slices - 1) / slices
	per = (per + 9) / 10 * 10 // whole requests of 10
	for k := 0; k*per < len(ds.Files); k++ {
		part := ds.Files[k*per : min((k+1)*per, len(ds.Files))]
		for m := range methods {
			mt := methods[(m+k)%len(methods)]
			syscallSyncPause()
			r, err := mt.run(part, k)
			if err != nil {
				return fmt.Errorf("%s: %w", mt.name, err)
			}
			add(mt.dst, r)
			logf("slice %d/%d, %s: %v", k+1, slices, mt.name, r)
		}
	}
	syscallSyncPause()
	R, O := &res.Renkei, &res.Orthanc
	R.StowCPU, O.StowCPU = cpuSeconds(rs.pid())-cpu0r, cpuSeconds(os2.pid())-cpu0o
	R.HWMAfterStow, O.HWMAfterStow = procStatusKB(rs.pid(), "VmHWM"), procStatusKB(os2.pid(), "VmHWM")
	for _, x := range []struct {
		name string
		r    rate
	}{{"plain copy + sync", res.Plain}, {"fsync each file, 1 writer", res.Fsync1}, {"fsync each file, 4 writers", res.Fsync4},
		{"blob commit, 4 writers", res.Blob4}, {"renkei STOW-RS", R.Stow}, {"Orthanc STOW-RS", O.Stow}} {
		logf("ingest total, %s: %v", x.name, x.r)
	}
	logf("server CPU during ingest: renkei %.1f s, Orthanc %.1f s; VmHWM renkei %.0f MiB, Orthanc %.0f MiB",
		R.StowCPU, O.StowCPU, mib(R.HWMAfterStow), mib(O.HWMAfterStow))
	return nil
}

func ingestSlices(c *config) int {
	if c.Quick {
		return 2
	}
	return 4
}

// queries runs the read phases, each on renkei and then on Orthanc before the next phase.
func queries(c *config, ds *dataset, rs, os2 *server, res *results, prof *profiler) error {
	both := []struct {
		s *server
		r *serverResults
		p *profiler
	}{{rs, &res.Renkei, prof}, {os2, &res.Orthanc, &profiler{}}}
	metaReps := 20
	if c.Quick {
		metaReps = 5
	}
	phases := []struct {
		name string
		fn   func(s *server, r *serverResults) error
	}{
		{"qido", func(s *server, r *serverResults) (err error) {
			r.QIDO, err = measureQIDO(s, 7, 10, c.Reps, "")
			return err
		}},
		{"metadata", func(s *server, r *serverResults) (err error) {
			r.Metadata, err = repeat(s.Base+"/studies/"+ds.RetrieveStudy+"/metadata", "application/dicom+json", true, 1, metaReps)
			if err == nil && r.Metadata.Items != ds.countStudy() {
				err = fmt.Errorf("%s metadata: %d objects for a study of %d instances", s.Name, r.Metadata.Items, ds.countStudy())
			}
			logf("%s WADO-RS metadata (%d instances, %.1f MB JSON): p50 %.0f ms, p95 %.0f ms", s.Name, r.Metadata.Items, mb(r.Metadata.Bytes), r.Metadata.p50(), r.Metadata.p95())
			return err
		}},
		{"retrieve", func(s *server, r *serverResults) (err error) {
			r.Retrieve, r.RetrieveAcc, err = measureRetrieve(s, ds.RetrieveStudy, ds.countStudy(), 5)
			if err == nil && r.Retrieve.Bytes < res.StudyBytes {
				err = fmt.Errorf("%s retrieve: %d bytes for a study of %d bytes", s.Name, r.Retrieve.Bytes, res.StudyBytes)
			}
			logf("%s whole-study retrieve (%s): %.0f MB/s (%.0f MB in %.2f s)", s.Name, r.RetrieveAcc, r.Retrieve.mbPerSec(), mb(r.Retrieve.Bytes), r.Retrieve.Seconds)
			return err
		}},
		{"frames", func(s *server, r *serverResults) (err error) {
			r.Frames, err = measureFrames(s, ds.MultiFrame, 3, c.Reps, time.Minute)
			logf("%s one frame of %d: p50 %.1f ms, p95 %.1f ms", s.Name, ds.MultiFrame.Frames, r.Frames.p50(), r.Frames.p95())
			return err
		}},
	}
	for _, ph := range phases {
		for _, b := range both {
			err := b.p.around(b.s.Name+"-"+ph.name, b.s.pid(), func() error { return ph.fn(b.s, b.r) })
			if err != nil {
				return err
			}
		}
	}
	for _, b := range both {
		b.r.HWM = procStatusKB(b.s.pid(), "VmHWM")
		logf("%s VmHWM %.0f MiB", b.s.Name, mib(b.r.HWM))
	}
	return nil
}

func (d *dataset) countStudy() int { n, _ := d.study(d.RetrieveStudy); return n }

// syscallSyncPause flushes dirty pages after ingest so that the next phases do not compete with write-back.
func syscallSyncPause() {
	syscall.Sync()
	time.Sleep(time.Second)
}

// orthancScale sends one small instance per synthetic study to Orthanc by STOW-RS, then measures QIDO-RS again.
func orthancScale(c *config, s *server, synth []synthStudy, r *serverResults) error {
	dir := filepath.Join(c.Out, "_data", fmt.Sprintf("small-%d", len(synth)))
	logf("Orthanc: writing %d small (8×8) instances into %s", len(synth), dir)
	files, err := smallFiles(dir, synth)
	if err != nil {
		return err
	}
	logf("Orthanc: STOW-RS of %d small instances, 8 clients × 50 per request", len(files))
	st, err := stow(s, files, 8, 50)
	if err != nil {
		return err
	}
	r.ScaleLoad = time.Duration(st.Seconds * float64(time.Second))
	r.ScaleLoadHow = fmt.Sprintf("%d small (8×8) studies sent by STOW-RS in %.0f s (%.0f instances/s)", len(files), st.Seconds, st.filesPerSec())
	logf("Orthanc: %s", r.ScaleLoadHow)
	q, err := measureQIDO(s, len(synth)+7, 10, c.Reps, "Ka*")
	if err != nil {
		return err
	}
	r.QIDOScale = &q
	r.HWMScalePhase = procStatusKB(s.pid(), "VmHWM")
	return nil
}
