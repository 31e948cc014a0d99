package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/minio/minio-go/v7"

	"renkei/internal/dicomtest"
	"renkei/internal/s3test"
	"renkei/sqlstore"
	"renkei/sqlstore/pgtest"
)

// TestAdminMigrateKill moves a populated region (the demo's users, shares, referrals and audit chain, 150 more CT
// instances over STOW-RS, and 120 blobs no row names, as a consent document being written leaves) from SQLite and
// its blob folder to a private PostgreSQL and a real versitygw bucket with the real binary, and kills that process
// with SIGKILL five times at different moments: while it creates the target's tables (after the first schema
// migration is committed there), in the middle of the index copy, after blobs landed in the bucket beyond the last
// recorded position, in the copy of the unreferenced blobs, and during the final verification. Each run is started
// again with the same arguments and must continue rather than start over; the last ends verified, and the test
// checks the target itself: every instance once, every table's row count, the audit chain with its signed
// checkpoints, and every object's SHA-256 against its key.
func TestAdminMigrateKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary; skipped with -short")
	}
	work := t.TempDir()
	bin := buildRenkei(t, work)
	pg := pgtest.URL(t)
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	data := filepath.Join(work, "data")
	index := filepath.Join(data, "index.db")
	blobs := srv.BlobsURL(bucket, "region-a")

	// The region: the demo, then instances sent over STOW-RS in batches.
	token := provisionToken(t, data)
	base, stop := serveForTest(t, "serve", "--demo", "--data", data, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn")
	client := &http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: time.Minute}
	gen := t.TempDir()
	const studies, perStudy = 10, 15
	for s := range studies {
		var batch [][]byte
		for i := range perStudy {
			batch = append(batch, ctBytes(t, filepath.Join(gen, fmt.Sprintf("%d-%d.dcm", s, i)), dicomtest.CTOptions{StudyInstanceUID: dicomtest.UID(fmt.Sprintf("mkill/study/%d", s)),
				SeriesInstanceUID: dicomtest.UID(fmt.Sprintf("mkill/series/%d", s)), SOPInstanceUID: dicomtest.UID(fmt.Sprintf("mkill/sop/%d/%d", s, i)),
				PatientID: fmt.Sprintf("MK%d", s), PatientName: "Migrate^Kill", Rows: 32, Cols: 32, InstanceNumber: i + 1, Seed: int64(s*perStudy + i)}))
		}
		if err := stow(client, base+"/dicomweb/studies", batch...); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	// Blobs that no row names, beside the referenced ones: migrate copies them after those (its second cursor).
	const orphans = 120
	for i := range orphans {
		b := []byte(fmt.Sprintf("an unreferenced blob %d", i))
		sum := sha256.Sum256(b)
		key := hex.EncodeToString(sum[:])
		if err := os.MkdirAll(filepath.Join(data, "blobs", key[:3]), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "blobs", key[:3], key), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	source := map[string]bool{} // every blob of the source folder
	filepath.WalkDir(filepath.Join(data, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && len(d.Name()) == 64 {
			source[d.Name()] = true
		}
		return nil
	})
	src, err := sqlstore.Open(context.Background(), index)
	if err != nil {
		t.Fatal(err)
	}
	referenced := 0
	for after := ""; ; {
		keys, err := src.BlobKeys(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		referenced += len(keys)
		if len(keys) < 1000 {
			break
		}
		after = keys[len(keys)-1]
	}
	src.Close()
	if want := studies*perStudy + orphans; referenced < studies*perStudy || len(source) < want {
		t.Fatalf("the source holds %d blobs (%d referenced), want at least %d", len(source), referenced, want)
	}
	t.Logf("source: %d blobs, %d of them referenced by the index", len(source), referenced)

	m := &migrateKill{t: t, bin: bin, args: []string{"admin", "migrate", "--from", "sqlite://" + index, "--to", pg, "--blobs-to", blobs,
		"--batch", "5", "--progress", "1ns"},
		env: append(os.Environ(), srv.Env(filepath.Join(work, "no-such-file"))...)}
	indexLine := regexp.MustCompile(`^index: table \d+/\d+ \(\w+\), (\d+)/(\d+) rows$`)
	blobLine := regexp.MustCompile(`^blobs: (\d+) copied`)
	number := func(re *regexp.Regexp, l string) int {
		s := re.FindStringSubmatch(l)
		if s == nil {
			return -1
		}
		n, _ := strconv.Atoi(s[1])
		return n
	}
	first := func(lines []string, re *regexp.Regexp) int {
		for _, l := range lines {
			if n := number(re, l); n >= 0 {
				return n
			}
		}
		return -1
	}
	last := func(lines []string, re *regexp.Regexp) int {
		for i := len(lines) - 1; i >= 0; i-- {
			if n := number(re, lines[i]); n >= 0 {
				return n
			}
		}
		return -1
	}

	// 1. While it creates the target's tables: as soon as the first schema migration has been committed there.
	pgdb, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer pgdb.Close()
	applied := func() int {
		var n int
		if pgdb.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n) != nil {
			return 0
		}
		return n
	}
	m.poll = func() bool { return applied() > 0 }
	m.run("creating the target's tables", nil)
	m.poll = nil
	t.Logf("schema migrations on the target after the kill: %d", applied())

	// 2. In the middle of the index copy; the next run goes on from the last batch committed.
	lines := m.run("index copy", func(l string) bool { return number(indexLine, l) >= 150 })
	killedAt := last(lines, indexLine)

	// 3. After blobs landed in the bucket beyond the position recorded every 64 (at 64 and 128: 100 have landed).
	lines = m.run("referenced blobs", func(l string) bool { return number(blobLine, l) >= 100 })
	// (Its first line is for the first table, done before the kill, with every row committed before it.)
	if n := first(lines, indexLine); n < killedAt {
		t.Errorf("the run after the kill at %d rows copied started its index again at %d rows", killedAt, n)
	}
	if n := first(lines, blobLine); n != 1 {
		t.Errorf("the first run to copy blobs began at blob %d, want 1", n)
	}
	if landed := m.objects(srv, bucket); landed < 100 {
		t.Errorf("%d objects in the bucket after the run killed at 100 blobs", landed)
	}

	// 4. In the copy of the blobs no row names (recorded at 64 of them, and at the end).
	lines = m.run("unreferenced blobs", func(l string) bool { return number(blobLine, l) >= referenced+70 })
	if n := first(lines, blobLine); n < 65 || (n-1)%blobsPerRecord != 0 {
		t.Errorf("the run after the kill at 100 blobs began at blob %d, want the one after a recorded position (65 or 129)", n)
	}

	// 5. During the verification, after everything was copied.
	lines = m.run("verification", func(l string) bool { return strings.HasPrefix(l, "verifying blobs: 50,") })
	if n := first(lines, blobLine); n == -1 {
		t.Logf("the kill in the unreferenced blobs landed after their copy had ended")
	} else if n != referenced+blobsPerRecord+1 {
		t.Errorf("the run after the kill in the unreferenced blobs began at blob %d, want %d (after the position recorded at %d)", n, referenced+blobsPerRecord+1, referenced+blobsPerRecord)
	}

	// The last run: nothing left to copy, and verified.
	out, lines := m.finish()
	for _, want := range []string{"row counts equal", "audit chain intact on the target", "every blob on the target has its SHA-256", "migration verified"} {
		if !strings.Contains(out, want) {
			t.Errorf("the last run does not say %q:\n%s", want, out)
		}
	}
	if n := last(lines, blobLine); n != -1 {
		t.Errorf("the run after the kill during verification copied blobs again (up to %d)", n)
	}

	// The target itself.
	ctx := context.Background()
	src, err = sqlstore.Open(ctx, index)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := sqlstore.Open(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	counts, err := sqlstore.CompareTables(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range counts {
		if c.Source != c.Target {
			t.Errorf("table %s: %d rows on the source, %d on the target", c.Table, c.Source, c.Target)
		}
	}
	sops := func(db *sql.DB) map[string]int {
		rows, err := db.Query(`SELECT sop_uid, count(*) FROM instances GROUP BY sop_uid`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]int{}
		for rows.Next() {
			var uid string
			var n int
			if err := rows.Scan(&uid, &n); err != nil {
				t.Fatal(err)
			}
			out[uid] = n
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	lite, err := sql.Open("sqlite", "file:"+index+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	want, got := sops(lite), sops(pgdb)
	if len(want) < studies*perStudy {
		t.Fatalf("the source holds %d instances", len(want))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("instances (SOP Instance UID → rows) on PostgreSQL differ from SQLite (-source +target):\n%s", d)
	}
	key, err := readAuditKey(filepath.Join(data, auditKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{key.ID: key.Private.Public().(ed25519.PublicKey)}
	srep, err := src.VerifyAudit(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	drep, err := dst.VerifyAudit(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(drep.Problems) > 0 || drep.Events != srep.Events || drep.Checkpoints != srep.Checkpoints {
		t.Errorf("audit chain on the target: %d events, %d checkpoints, problems %v; on the source %d events, %d checkpoints",
			drep.Events, drep.Checkpoints, drep.Problems, srep.Events, srep.Checkpoints)
	}
	// Every object in the bucket holds the bytes its key names, and the bucket holds every blob of the source.
	inBucket := map[string]bool{}
	for obj := range srv.Client().ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: "region-a", Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		k := path.Base(obj.Key)
		o, err := srv.Client().GetObject(ctx, bucket, obj.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, o)
		o.Close()
		if err != nil {
			t.Fatalf("read %s: %v", obj.Key, err)
		}
		if s := hex.EncodeToString(h.Sum(nil)); s != k {
			t.Errorf("object %s holds bytes with SHA-256 %s", obj.Key, s)
		}
		inBucket[k] = true
	}
	for k := range source {
		if !inBucket[k] {
			t.Errorf("blob %s of the source is not in the bucket", k)
		}
	}
	for k := range inBucket {
		if !source[k] {
			t.Errorf("object %s in the bucket is no blob of the source", k)
		}
	}
	t.Logf("target: %d instances, %d objects, %d audit events, %d tables", len(got), len(inBucket), drep.Events, len(counts))
}

// migrateKill runs `renkei admin migrate` as a process, again and again with the same arguments.
type migrateKill struct {
	t    *testing.T
	bin  string
	args []string
	env  []string
	runs int
	poll func() bool // if set, asked every few milliseconds whether to kill the run now
}

// run starts migrate and kills it with SIGKILL as soon as kill says yes to a line it wrote to stderr (its
// progress), or m.poll says yes. The kill must land: a run that ends first fails the test. It returns the stderr
// lines.
func (m *migrateKill) run(moment string, kill func(line string) bool) []string {
	t := m.t
	t.Helper()
	lines, out, err, killed := m.start(kill)
	var ee *exec.ExitError
	if !killed || !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("run %d, to be killed %s: it ended first (%v)\n%s%s", m.runs, moment, err, out, strings.Join(lines, "\n"))
	}
	if strings.Contains(out, "migration verified") {
		t.Fatalf("run %d, killed %s, says it was verified:\n%s", m.runs, moment, out)
	}
	t.Logf("run %d killed %s, after: %s", m.runs, moment, lastLine(lines))
	return lines
}

// finish runs migrate to its end and returns its stdout and stderr lines; it must succeed.
func (m *migrateKill) finish() (string, []string) {
	t := m.t
	t.Helper()
	lines, out, err, _ := m.start(nil)
	if err != nil {
		t.Fatalf("run %d: %v\n%s%s", m.runs, err, out, strings.Join(lines, "\n"))
	}
	t.Logf("run %d ended:\n%s", m.runs, out)
	return out, lines
}

func (m *migrateKill) start(kill func(string) bool) (lines []string, out string, err error, killed bool) {
	t := m.t
	m.runs++
	cmd := exec.Command(m.bin, m.args...)
	cmd.Env = m.env
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var polled chan bool
	if m.poll != nil {
		polled = make(chan bool, 1)
		go func() {
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					if m.poll() {
						polled <- cmd.Process.Signal(syscall.SIGKILL) == nil
						return
					}
				case <-done:
					polled <- false
					return
				}
			}
		}()
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		l := sc.Text()
		lines = append(lines, l)
		if kill != nil && !killed && kill(l) {
			killed = cmd.Process.Signal(syscall.SIGKILL) == nil
		}
	}
	err = cmd.Wait()
	close(done)
	if polled != nil {
		killed = <-polled || killed
	}
	return lines, stdout.String(), err, killed
}

// objects counts the objects in the bucket.
func (m *migrateKill) objects(srv *s3test.Server, bucket string) int {
	n := 0
	for obj := range srv.Client().ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: "region-a", Recursive: true}) {
		if obj.Err != nil {
			m.t.Fatal(obj.Err)
		}
		n++
	}
	return n
}

func lastLine(lines []string) string {
	if len(lines) == 0 {
		return "(no output)"
	}
	return lines[len(lines)-1]
}
