package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"renkei"
	"renkei/archive"
	"renkei/internal/dicomtest"
	"renkei/internal/s3test"
	"renkei/sqlstore"
	"renkei/sqlstore/pgtest"
)

// Benchmarks of issue 9's "Speed" section: what predicts how a region scales out on PostgreSQL and S3
// (docs/benchmarks.md, "PostgreSQL + S3 against SQLite + files"). Both are skipped unless RENKEI_BENCH_SCALE=1, so
// that `go test -bench .` over the tree does not start them by accident:
//
//	RENKEI_BENCH_SCALE=1 go test ./cmd/renkei -run '^$' -bench ScaleIngest -benchtime 2x -v
//	RENKEI_BENCH_SCALE=1 go test ./cmd/renkei -run '^$' -bench ScaleQIDO -benchtime 1x -timeout 30m -v
//
// BenchmarkScaleIngest: one `renkei serve` on PostgreSQL + S3 (versitygw) against the same binary on SQLite +
// files, STOW-RS of 512×512 CT studies in batches of 20 with 4 requests in flight, alternating; CPU time per
// instance of renkei, of PostgreSQL's processes and of versitygw, and PostgreSQL round trips per instance counted
// by a proxy in the benchmark between renkei and PostgreSQL. RENKEI_BENCH_SCALE_INGEST (default 200) instances per
// node and iteration. RENKEI_BENCH_SCALE_PIN=1 puts each renkei serve on CPU 0 and everything else on CPU 1 (see
// pinTree's caller).
//
// BenchmarkScaleQIDO: a twentieth of RENKEI_BENCH_SCALE_INSTANCES (default 1,000,000) synthetic instances (no
// blobs) inserted through sqlstore.DB.Insert, then copied inside PostgreSQL (INSERT … SELECT) to 4× and 20× that
// seed, stopping early after RENKEI_BENCH_SCALE_FILL seconds (default 240); study-level searches measured through
// `renkei serve` with a token at 4× (a fifth) and at the end.

func scaleGuard(b *testing.B) {
	if os.Getenv("RENKEI_BENCH_SCALE") != "1" {
		b.Skip("set RENKEI_BENCH_SCALE=1 to run issue 9's scale benchmarks")
	}
}

// pgTuneDurable turns the test cluster's shortcuts (fsync=off, synchronous_commit=off, full_page_writes=off:
// pgtest's settings for fast tests) back to PostgreSQL's defaults, so that an acknowledged instance is on disk in
// both the SQLite and the PostgreSQL run. The cluster is this test binary's own.
func pgTuneDurable(b *testing.B, dbURL string) {
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, s := range []string{`ALTER SYSTEM SET fsync = on`, `ALTER SYSTEM SET synchronous_commit = on`,
		`ALTER SYSTEM SET full_page_writes = on`, `SELECT pg_reload_conf()`} {
		if _, err := db.Exec(s); err != nil {
			b.Fatalf("%s: %v", s, err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the postmaster signals its children
}

// pgPostmaster finds the PID of the postgres server listening on port (its command line has -p PORT).
func pgPostmaster(port string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cl), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "postgres" && slices.Contains(args, "-D") {
			if i := slices.Index(args, "-p"); i >= 0 && i+1 < len(args) && args[i+1] == port {
				return pid
			}
		}
	}
	return 0
}

// procTreeCPU is the CPU time of a process, of its reaped children (cutime, cstime) and of its live children:
// for the postmaster, every backend, checkpointer and WAL writer there are or were.
// pinTree sets the CPU affinity of a process, every thread of it and its direct children (PostgreSQL's backends),
// with taskset(1).
func pinTree(b *testing.B, pid int, cpus string) {
	pids := []int{pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cpid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		_, after, _ := bytes.Cut(st, []byte(") "))
		if f := strings.Fields(string(after)); len(f) > 2 && f[1] == strconv.Itoa(pid) {
			pids = append(pids, cpid)
		}
	}
	for _, p := range pids {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(p)).CombinedOutput(); err != nil {
			b.Fatalf("taskset %s %d: %v\n%s", cpus, p, err, out)
		}
	}
}

func procTreeCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, after, _ := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(after))
	var t int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseInt(f[i], 10, 64)
		t += v
	}
	total := time.Duration(t) * time.Second / 100
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cpid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		_, after, _ := bytes.Cut(b, []byte(") "))
		f := strings.Fields(string(after))
		if len(f) > 2 && f[1] == strconv.Itoa(pid) {
			total += gbCPU(cpid)
		}
	}
	return total
}

// pidByArg finds a process whose command line holds arg (versitygw by its folder).
func pidByArg(arg string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if slices.Contains(strings.Split(string(cl), "\x00"), arg) {
			return pid
		}
	}
	return 0
}

// pgProxy passes PostgreSQL connections through and counts round trips: frontend messages after which the client
// waits for the server, Sync ('S', the end of an extended-protocol exchange) and Query ('Q', a simple query).
// PS3 of PostgreSQL's protocol, 55.7: a message is a type byte and an int32 length that counts itself; the first
// message of a connection (startup, or an SSL/GSS request) has no type byte.
type pgProxy struct {
	ln         net.Listener
	target     string
	roundTrips atomic.Int64
	statements atomic.Int64 // Bind ('B') and Query messages: statements run
	commits    atomic.Int64 // Query messages that are COMMIT
}

func newPGProxy(b *testing.B, target string) *pgProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *pgProxy) serve(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() { io.Copy(c, s); c.Close() }()
	r := io.TeeReader(c, s)
	var hdr [5]byte
	// Untyped messages until the startup message (SSLRequest 80877103 and GSSENCRequest 80877104 come before it;
	// sslmode=disable sends neither).
	for {
		if _, err := io.ReadFull(r, hdr[:4]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		body := make([]byte, n-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		if n == 8 && (binary.BigEndian.Uint32(body) == 80877103 || binary.BigEndian.Uint32(body) == 80877104) {
			continue
		}
		break
	}
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[1:]))
		body := make([]byte, n-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		switch hdr[0] {
		case 'S':
			p.roundTrips.Add(1)
		case 'Q':
			p.roundTrips.Add(1)
			p.statements.Add(1)
			if bytes.HasPrefix(bytes.ToLower(bytes.TrimSpace(body)), []byte("commit")) {
				p.commits.Add(1)
			}
		case 'B':
			p.statements.Add(1)
		}
	}
}

// scaleNode is one `renkei serve` process.
type scaleNode struct {
	gbEnv
	name string
}

func startScaleNode(b *testing.B, bin, name, data string, env []string, args ...string) *scaleNode {
	n := &scaleNode{name: name}
	var admin []string // the admin commands take --db, not --blobs
	if i := slices.Index(args, "--db"); i >= 0 {
		admin = args[i : i+2]
	}
	startBenchServe(b, &n.gbEnv, bin, name, data, admin, env, append([]string{"--dimse", "off"}, args...)...)
	return n
}

func scaleBuild(b *testing.B, dir string) string {
	bin := filepath.Join(dir, "renkei")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// BenchmarkScaleIngest: see the top of this file.
func BenchmarkScaleIngest(b *testing.B) {
	scaleGuard(b)
	n := gbEnvInt(b, "RENKEI_BENCH_SCALE_INGEST", 200)
	dir := b.TempDir()
	bin := scaleBuild(b, dir)

	dbURL := pgtest.URL(b)
	pgTuneDurable(b, dbURL)
	u, err := url.Parse(dbURL)
	if err != nil {
		b.Fatal(err)
	}
	postmaster := pgPostmaster(u.Port())
	if postmaster == 0 {
		b.Fatal("cannot find the postgres server's process")
	}
	proxy := newPGProxy(b, u.Host)
	viaProxy := *u
	viaProxy.Host = proxy.ln.Addr().String()

	srv := s3test.Start(b)
	bucket := srv.Bucket(b)
	gw := pidByArg(srv.Dir)
	if gw == 0 {
		b.Fatal("cannot find versitygw's process")
	}
	blobs := srv.BlobsURL(bucket, "")
	awsEnv := srv.Env(filepath.Join(dir, "none"))
	srv.Setenv(b, filepath.Join(dir, "none"))

	local := startScaleNode(b, bin, "sqlite-files", filepath.Join(dir, "data-local"), nil)
	scaled := startScaleNode(b, bin, "postgres-s3", filepath.Join(dir, "data-pg"), awsEnv, "--db", viaProxy.String(), "--blobs", blobs)
	if os.Getenv("RENKEI_BENCH_SCALE_PIN") == "1" {
		// The node on one core, what it talks to on the other: each renkei serve on CPU 0; PostgreSQL (with its
		// backends, which fork from the postmaster and inherit it), versitygw, and this process (the clients and the
		// round-trip counting proxy) on CPU 1. It models a node whose database and object store run elsewhere, as
		// in a deployment, instead of three servers competing for the same two cores.
		pinTree(b, os.Getpid(), "1")
		pinTree(b, postmaster, "1")
		pinTree(b, gw, "1")
		pinTree(b, local.renkeiPID, "0")
		pinTree(b, scaled.renkeiPID, "0")
		b.Cleanup(func() { exec.Command("taskset", "-a", "-p", "-c", "0-1", strconv.Itoa(os.Getpid())).Run() })
		b.Log("pinned: renkei serve on CPU 0; PostgreSQL, versitygw and the clients on CPU 1")
	}

	type total struct {
		el                       time.Duration
		renkei, pg, gw           time.Duration
		roundTrips, commits, ins int64 // ins: statements
	}
	var tot [2]total
	pgStats := func() (commits, statements int64) { return proxy.commits.Load(), proxy.statements.Load() }
	b.ResetTimer()
	for it := range b.N {
		for k := range 2 {
			i := (k + it) % 2 // alternate which node goes first
			node := []*scaleNode{local, scaled}[i]
			studyDir := filepath.Join(dir, fmt.Sprintf("study-%d-%d", it, i))
			b.StopTimer()
			gbStudy(b, studyDir, fmt.Sprintf("scale/%d/%d/%d", time.Now().UnixNano(), it, i), n, false)
			exec.Command("sync").Run()
			c0, t0 := pgStats()
			r0, p0, g0, rt0 := gbCPU(node.renkeiPID), procTreeCPU(postmaster), gbCPU(gw), proxy.roundTrips.Load()
			b.StartTimer()
			el := node.direct(b, studyDir)
			b.StopTimer()
			r1, p1, g1, rt1 := gbCPU(node.renkeiPID), procTreeCPU(postmaster), gbCPU(gw), proxy.roundTrips.Load()
			c1, t1 := pgStats()
			b.StartTimer()
			t := &tot[i]
			t.el += el
			t.renkei += r1 - r0
			if i == 1 {
				t.pg += p1 - p0
				t.gw += g1 - g0
				t.roundTrips += rt1 - rt0
				t.commits += c1 - c0
				t.ins += t1 - t0
			}
			b.Logf("iteration %d, %s: %d instances in %v (%.0f/s), renkei CPU %v", it+1, node.name, n, el.Round(time.Millisecond),
				float64(n)/el.Seconds(), (r1 - r0).Round(time.Millisecond))
			os.RemoveAll(studyDir)
		}
	}
	b.StopTimer()
	inst := float64(n * b.N)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / inst }
	rl, rs := inst/tot[0].el.Seconds(), inst/tot[1].el.Seconds()
	b.Logf("SQLite + files: %.0f instances/s; renkei CPU %.2f ms an instance", rl, ms(tot[0].renkei))
	b.Logf("PostgreSQL + S3: %.0f instances/s = %.0f%% of SQLite + files (target ≥ 60%%); CPU an instance: renkei %.2f ms, PostgreSQL %.2f ms, versitygw %.2f ms",
		rs, 100*rs/rl, ms(tot[1].renkei), ms(tot[1].pg), ms(tot[1].gw))
	b.Logf("PostgreSQL per instance: %.2f round trips (Sync/Query messages through the proxy), %.2f statements (Bind/Query), %.2f COMMITs",
		float64(tot[1].roundTrips)/inst, float64(tot[1].ins)/inst, float64(tot[1].commits)/inst)
	b.ReportMetric(100*rs/rl, "pg-s3-%-of-local")
	b.ReportMetric(float64(tot[1].roundTrips)/inst, "roundtrips/inst")
}

// Synthetic studies for the QIDO fill: several series per study and several instances per series, four studies a
// patient, names of kanji/romaji syllable pairs (no syllable spells Yamada or 山: the hits of the searches below
// are known).
var scaleSyllables = []struct{ romaji, kanji string }{
	{"ka", "加"}, {"ki", "木"}, {"ku", "久"}, {"ko", "小"}, {"sa", "佐"}, {"shi", "島"}, {"su", "鈴"}, {"se", "瀬"},
	{"ta", "多"}, {"chi", "千"}, {"to", "藤"}, {"na", "中"}, {"no", "野"}, {"ha", "林"}, {"hi", "平"}, {"mo", "森"},
	{"mu", "村"}, {"ma", "松"}, {"ri", "里"}, {"wa", "和"},
}

const (
	scaleSeriesPerStudy    = 4
	scaleInstancesPerSerie = 5 // 20 instances a study
	scaleStudiesPerPatient = 4
)

func scaleName(r *rand.Rand, parts int) (romaji, kanji string) {
	var a, k strings.Builder
	for i := range parts {
		s := scaleSyllables[r.IntN(len(scaleSyllables))]
		if i == 0 {
			a.WriteString(strings.ToUpper(s.romaji[:1]) + s.romaji[1:])
		} else {
			a.WriteString(s.romaji)
		}
		k.WriteString(s.kanji)
	}
	return a.String(), k.String()
}

// scaleFill inserts studies [from, to) through db.Insert from many goroutines (the committer groups them into
// shared transactions), stopping early at the deadline; it returns the number of studies fully inserted.
func scaleFill(b *testing.B, db *sqlstore.DB, owner int64, from, to int, deadline time.Time) int {
	ctx := context.Background()
	const per = scaleSeriesPerStudy * scaleInstancesPerSerie
	ch := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	now := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range ch {
				r := rand.New(rand.NewPCG(uint64(s/scaleStudiesPerPatient), 7))
				fr, fk := scaleName(r, 2+r.IntN(2))
				gr, gk := scaleName(r, 2)
				name := fr + "^" + gr + "=" + fk + "^" + gk
				keys := archive.NameKeys(name)
				pid := fmt.Sprintf("SC%08d", s/scaleStudiesPerPatient)
				sr := rand.New(rand.NewPCG(uint64(s), 11))
				date := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, sr.IntN(3650)).Format("20060102")
				study := dicomtest.UID(fmt.Sprint("scale/study/", s))
				for k := range per {
					se, in := k/scaleInstancesPerSerie+1, k%scaleInstancesPerSerie+1
					series := dicomtest.UID(fmt.Sprintf("scale/series/%d/%d", s, se))
					sop := dicomtest.UID(fmt.Sprintf("scale/sop/%d/%d", s, k))
					attrs := fmt.Appendf(nil, `{"00080016":{"vr":"UI","Value":["1.2.840.10008.5.1.4.1.1.2"]},"00080018":{"vr":"UI","Value":["%s"]},`+
						`"00080020":{"vr":"DA","Value":["%s"]},"00080060":{"vr":"CS","Value":["CT"]},"00100010":{"vr":"PN","Value":[{"Alphabetic":"%s"}]},`+
						`"00100020":{"vr":"LO","Value":["%s"]},"0020000D":{"vr":"UI","Value":["%s"]},"0020000E":{"vr":"UI","Value":["%s"]},`+
						`"00200013":{"vr":"IS","Value":[%d]},"00280010":{"vr":"US","Value":[512]},"00280011":{"vr":"US","Value":[512]},`+
						`"00280100":{"vr":"US","Value":[16]},"00281050":{"vr":"DS","Value":[40]},"00281051":{"vr":"DS","Value":[400]},`+
						`"00281052":{"vr":"DS","Value":[-1024]},"00281053":{"vr":"DS","Value":[1]},"00200032":{"vr":"DS","Value":[-179.6,-179.6,%d]},`+
						`"00200037":{"vr":"DS","Value":[1,0,0,0,1,0]},"00280030":{"vr":"DS","Value":[0.7,0.7]},"00180050":{"vr":"DS","Value":[1]}}`,
						sop, date, name, pid, study, series, in, in)
					inst := &renkei.Instance{
						Institution: owner, Patient: renkei.PatientKey{ID: pid}, PatientName: name, PatientNameKeys: keys,
						StudyInstanceUID: study, StudyDate: date, StudyTime: "120000", AccessionNumber: fmt.Sprintf("A%09d", s),
						StudyID: "1", StudyDescription: "CT 胸部", SeriesInstanceUID: series, Modality: "CT", SeriesNumber: &se,
						SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", InstanceNumber: &in,
						TransferSyntaxUID: "1.2.840.10008.1.2.1", Rows: 512, Columns: 512, NumberOfFrames: 1, BitsAllocated: 16,
						BlobKey: fmt.Sprintf("%032x%032x", s, k), Size: 525000, Attrs: attrs, ReceivedAt: now, Source: "bench synthetic",
					}
					if _, _, err := db.Insert(ctx, inst); err != nil {
						failed.CompareAndSwap(nil, err)
					}
				}
			}
		}()
	}
	done := from
	for s := from; s < to && time.Now().Before(deadline); s++ {
		ch <- s
		done = s + 1
	}
	close(ch)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("insert: %v", err)
	}
	return done
}

// BenchmarkScaleQIDO: see the top of this file.
func BenchmarkScaleQIDO(b *testing.B) {
	scaleGuard(b)
	target := gbEnvInt(b, "RENKEI_BENCH_SCALE_INSTANCES", 1_000_000)
	fillFor := time.Duration(gbEnvInt(b, "RENKEI_BENCH_SCALE_FILL", 240)) * time.Second
	const per = scaleSeriesPerStudy * scaleInstancesPerSerie
	studies := target / per
	dir := b.TempDir()
	bin := scaleBuild(b, dir)
	dbURL := pgtest.URL(b)
	node := startScaleNode(b, bin, "postgres", filepath.Join(dir, "data"), nil, "--db", dbURL)
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	owner, err := db.Institution(ctx, "bench-hospital")
	if err != nil {
		b.Fatal(err)
	}
	// Two known patients among the synthetic ones: a kanji/romaji name no synthetic name shares.
	pin := func(i int) {
		one := 1
		in := &renkei.Instance{Institution: owner.PK, Patient: renkei.PatientKey{ID: "YAMADA01"}, PatientName: "Yamada^Taro=山田^太郎",
			PatientNameKeys: archive.NameKeys("Yamada^Taro=山田^太郎"), StudyInstanceUID: dicomtest.UID(fmt.Sprint("scale/yamada/", i)),
			StudyDate: "20240115", StudyTime: "093000", SeriesInstanceUID: dicomtest.UID(fmt.Sprint("scale/yamada/se/", i)), Modality: "CT",
			SeriesNumber: &one, SOPInstanceUID: dicomtest.UID(fmt.Sprint("scale/yamada/sop/", i)), SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
			InstanceNumber: &one, TransferSyntaxUID: "1.2.840.10008.1.2.1", BlobKey: fmt.Sprintf("%064x", 1<<40+i), Size: 1,
			Attrs: []byte(`{}`), ReceivedAt: time.Now()}
		if _, _, err := db.Insert(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	pin(1)
	pin(2)

	queries := []struct{ name, path string }{
		{"PatientID", "/dicomweb/studies?PatientID=YAMADA01"},
		{"PatientName=Yamada* (romaji prefix)", "/dicomweb/studies?PatientName=Yamada*"},
		{"PatientName=山田* (kanji prefix)", "/dicomweb/studies?PatientName=" + url.QueryEscape("山田") + "*"},
		{"PatientName=Ka*&limit=100 (broad romaji prefix, first page)", "/dicomweb/studies?PatientName=Ka*&limit=100"},
		{"PatientName=加* &limit=100 (broad kanji prefix, first page)", "/dicomweb/studies?PatientName=" + url.QueryEscape("加") + "*&limit=100"},
		{"StudyDate=June 2020 &limit=100 (first page)", "/dicomweb/studies?StudyDate=20200601-20200630&limit=100"},
		{"study list page (/api/studies, newest 50)", "/api/studies"},
	}
	measure := func(indexed int) {
		pg, err := sql.Open("pgx", dbURL)
		if err != nil {
			b.Fatal(err)
		}
		var size string
		if _, err := pg.Exec(`ANALYZE`); err != nil {
			b.Fatal(err)
		}
		if err := pg.QueryRow(`SELECT pg_size_pretty(pg_database_size(current_database()))`).Scan(&size); err != nil {
			b.Fatal(err)
		}
		pg.Close()
		b.Logf("%d instances indexed, database %s (after ANALYZE)", indexed, size)
		for _, q := range queries {
			var lat []time.Duration
			var size int
			for i := range 110 {
				t0 := time.Now()
				resp, err := node.http.Get(node.renkeiURL + q.path)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %s: %.200s", q.path, resp.Status, body)
				}
				if i >= 10 {
					lat = append(lat, d)
				}
				size = len(body)
			}
			slices.Sort(lat)
			p := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.Logf("%d instances: %-58s p50 %6.1f ms  p95 %6.1f ms  (%d bytes)", indexed, q.name, p(0.5), p(0.95), size)
		}
	}
	b.ResetTimer()
	start := time.Now()
	deadline := start.Add(fillFor)
	seed := max(studies/scaleCopies, 1)
	done := scaleFill(b, db, owner.PK, 0, seed, deadline)
	b.Logf("seeded %d studies (%d instances) through sqlstore.DB.Insert in %v", done, done*per, time.Since(start).Round(time.Second))
	copies := 1
	grow := func(upTo int) {
		t := time.Now()
		for ; copies < upTo && time.Now().Before(deadline); copies++ {
			scaleCopy(b, dbURL, copies)
		}
		b.Logf("copied the seed to %d× in %v (%v since the start)", copies, time.Since(t).Round(time.Second), time.Since(start).Round(time.Second))
	}
	grow(scaleCopies / 5)
	measure(done*per*copies + 2)
	grow(scaleCopies)
	measure(done*per*copies + 2)
}

// scaleCopies is how many copies of the seed make the full index: the seed goes in through the real insert path,
// the copies by INSERT … SELECT inside PostgreSQL (about 20× faster than the insert path on this machine).
const scaleCopies = 20

// scaleCopy adds copy k of the seed's synthetic rows (patients SC…, their names, studies, series, instances): the
// same rows with primary keys moved past the seed's, UIDs and PatientIDs suffixed with .k / -k, and each study's
// date moved by k×53 days (within 2015–2025), so that the copies are new patients and studies with the seed's
// distribution of names, sizes and dates.
func scaleCopy(b *testing.B, dbURL string, k int) {
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	ks := strconv.Itoa(k)
	// Copy k's keys are the seed's plus k×10⁹ (the seed's keys are far below).
	o := strconv.Itoa(k) + "000000000"
	off := map[string]string{"patients": o, "studies": o, "series": o, "instances": o}
	seedPatients := `(SELECT pk FROM patients WHERE patient_id LIKE 'SC%' AND pk < 1000000000)`
	stmts := []struct {
		table string
		over  map[string]string
		where string
	}{
		{"patients", map[string]string{"pk": "pk + " + off["patients"], "patient_id": "patient_id || '-" + ks + "'"}, "patient_id LIKE 'SC%' AND pk < 1000000000"},
		{"patient_names", map[string]string{"patient_pk": "patient_pk + " + off["patients"]}, "patient_pk IN " + seedPatients},
		{"studies", map[string]string{"pk": "pk + " + off["studies"], "patient_pk": "patient_pk + " + off["patients"], "study_uid": "study_uid || '." + ks + "'",
			"study_date": fmt.Sprintf("to_char(date '2015-01-01' + ((to_date(study_date, 'YYYYMMDD') - date '2015-01-01' + %d) %% 3650), 'YYYYMMDD')", k*53),
			"accession":  "accession || '-" + ks + "'"}, "patient_pk IN " + seedPatients},
		{"series", map[string]string{"pk": "pk + " + off["series"], "study_pk": "study_pk + " + off["studies"], "series_uid": "series_uid || '." + ks + "'"},
			"study_pk IN (SELECT pk FROM studies WHERE patient_pk IN " + seedPatients + ")"},
		{"instances", map[string]string{"pk": "pk + " + off["instances"], "series_pk": "series_pk + " + off["series"], "sop_uid": "sop_uid || '." + ks + "'"},
			"series_pk IN (SELECT pk FROM series WHERE study_pk IN (SELECT pk FROM studies WHERE patient_pk IN " + seedPatients + "))"},
	}
	for _, st := range stmts {
		rows, err := tx.Query(`SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, st.table)
		if err != nil {
			b.Fatal(err)
		}
		var cols, exprs []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				b.Fatal(err)
			}
			cols = append(cols, c)
			if e, ok := st.over[c]; ok {
				exprs = append(exprs, e)
			} else {
				exprs = append(exprs, c)
			}
		}
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
		rows.Close()
		q := fmt.Sprintf(`INSERT INTO %s (%s) SELECT %s FROM %s WHERE %s`, st.table, strings.Join(cols, ", "), strings.Join(exprs, ", "), st.table, st.where)
		if _, err := tx.Exec(q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}
