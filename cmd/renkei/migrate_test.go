package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"renkei/internal/s3test"
	"renkei/sqlstore/pgtest"
)

// TestAdminMigrate moves a demo region, filled by `renkei serve --demo` through the real archive (studies, users,
// shares, referrals, consents, the audit chain), from SQLite and its blob folder to a private PostgreSQL and a real
// versitygw bucket: refused while serve runs; cut by Ctrl-C after a few batches and resumed to a verified end; run a
// third time as a verified no-op; then `renkei serve --db … --blobs s3://…` lets the demo users log in, finds the
// same studies and returns every instance byte for byte as stored on the source.
func TestAdminMigrate(t *testing.T) {
	pg := pgtest.URL(t)
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	srv.Setenv(t, filepath.Join(dir, "no-such-file"))
	blobs := srv.BlobsURL(bucket, "region-a")
	index := filepath.Join(data, "index.db")
	args := []string{"admin", "migrate", "--from", "sqlite://" + index, "--to", pg, "--blobs-to", blobs, "--batch", "7", "--progress", "1ns"}

	base, stop := serveForTest(t, "serve", "--demo", "--data", data, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn")
	accounts := demoAccounts(t, data)
	// An audited read, so that the chain holds a user's events too. (Not by the user who logs in on the target
	// below: an authenticator code is accepted once, and the copied users remember the last one.)
	c := login(t, base, "demo-suzuki@chuo-hospital", accounts["demo-suzuki@chuo-hospital"][0], accounts["demo-suzuki@chuo-hospital"][1])
	var studies []map[string]any
	c.getJSON(t, "/dicomweb/studies", &studies)
	stop()
	// While another process has the index open (here Python's sqlite3, standing in for a renkei serve left
	// running), migrate refuses to start.
	var out, errOut bytes.Buffer
	if py, err := exec.LookPath("python3"); err == nil {
		holder := exec.Command(py, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM institutions').fetchall(); print('open', flush=True); sys.stdin.read()", index)
		stdin, _ := holder.StdinPipe()
		stdout, _ := holder.StdoutPipe()
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		if l, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || l != "open\n" {
			t.Fatalf("python3 did not open the index: %q %v", l, err)
		}
		code := Main(context.Background(), args, &out, &errOut)
		stdin.Close()
		holder.Wait()
		if code == 0 || !strings.Contains(errOut.String(), "in use by process") {
			t.Fatalf("migrate while another process has the index open: exit %d, %s%s", code, out.String(), errOut.String())
		}
	}

	// What the source holds: the blob keys are the SHA-256 of the stored instances.
	stored := map[string]bool{}
	filepath.WalkDir(filepath.Join(data, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && len(d.Name()) == 64 {
			stored[d.Name()] = true
		}
		return nil
	})
	if len(stored) < 3 {
		t.Fatalf("the demo stored %d blobs", len(stored))
	}

	// Ctrl-C after a few batches: it stops, and says the target is not complete.
	ctx, cancel := context.WithCancel(context.Background())
	cw := &cancelAfter{n: 4, cancel: cancel}
	out.Reset()
	if code := Main(ctx, args, &out, cw); code == 0 || strings.Contains(out.String(), "verified") {
		t.Fatalf("interrupted migrate: exit %d, %s%s", code, out.String(), cw.String())
	}
	cancel()
	if !strings.Contains(cw.String(), "run the same command again") {
		t.Errorf("the interrupted run does not say how to continue: %s", cw.String())
	}

	// Resumed: it ends verified.
	out.Reset()
	errOut.Reset()
	if code := Main(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("resumed migrate: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"row counts equal", "audit chain intact on the target", "every blob on the target has its SHA-256", "migration verified"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the resumed run does not say %q:\n%s", want, out.String())
		}
	}
	if !regexp.MustCompile(`index: table \d+/\d+ \(\w+\), \d+/\d+ rows`).MatchString(errOut.String()) || !strings.Contains(errOut.String(), "blobs: ") {
		t.Errorf("no progress lines: %s", errOut.String())
	}
	// Again on the complete target: nothing to copy, verified.
	out.Reset()
	errOut.Reset()
	if code := Main(context.Background(), args, &out, &errOut); code != 0 || !strings.Contains(out.String(), "migration verified") {
		t.Fatalf("migrate on a complete target: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if regexp.MustCompile(`(?m)^blobs: `).MatchString(errOut.String()) {
		t.Errorf("the run on a complete target copied blobs again: %s", errOut.String())
	}

	// Served from PostgreSQL and S3 alone (the SQLite file and blob folder out of the way).
	if err := os.Rename(filepath.Join(data, "blobs"), filepath.Join(dir, "old-blobs")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"index.db", "index.db-wal", "index.db-shm"} {
		os.Rename(filepath.Join(data, f), filepath.Join(dir, f))
	}
	base, stop = serveForTest(t, "serve", "--demo", "--data", data, "--db", pg, "--blobs", blobs, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn")
	defer stop()
	c = login(t, base, "demo-tanaka@chuo-hospital", accounts["demo-tanaka@chuo-hospital"][0], accounts["demo-tanaka@chuo-hospital"][1])
	var all []map[string]any
	c.getJSON(t, "/dicomweb/studies?PatientName=山田*", &all)
	if len(all) != 2 {
		t.Fatalf("on PostgreSQL the physician finds %d studies of 山田, want 2 (as on SQLite)", len(all))
	}
	c.getJSON(t, "/dicomweb/studies", &all)
	// The list walks the grants (study_grants, copied with the rest): it shows the studies that asking patient by
	// patient finds (there the scope's rule over the shares answers), the clinic's referred patient among them.
	str := func(s map[string]any, tag string) string {
		v, _ := s[tag].(map[string]any)["Value"].([]any)
		if len(v) == 0 {
			return ""
		}
		x, _ := v[0].(string)
		return x
	}
	listed, byPatient := map[string]string{}, map[string]string{}
	for _, s := range all {
		listed[str(s, "0020000D")] = str(s, "00100020")
	}
	for _, id := range []string{"D0001", "D0002", "D0003", "D0004", "H0001"} {
		var found []map[string]any
		if code := c.do(t, "GET", "/dicomweb/studies?PatientID="+id, nil, &found); code != http.StatusOK && code != http.StatusNoContent {
			t.Fatalf("QIDO-RS PatientID=%s: %d", id, code)
		}
		for _, s := range found {
			byPatient[str(s, "0020000D")] = str(s, "00100020")
		}
	}
	if !maps.Equal(listed, byPatient) || !slices.Contains(slices.Collect(maps.Values(listed)), "D0001") {
		t.Errorf("on PostgreSQL the physician's study list (study UID: patient) is %v; patient by patient %v, with the clinic's D0001", listed, byPatient)
	}
	parts := 0
	for _, s := range all {
		uid := s["0020000D"].(map[string]any)["Value"].([]any)[0].(string)
		req, _ := http.NewRequest("GET", base+"/dicomweb/studies/"+uid, nil)
		req.Header.Set("Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
		req.Header.Set("Cookie", "renkei_session="+c.cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if resp.StatusCode != http.StatusOK || params["boundary"] == "" {
			t.Fatalf("WADO-RS study %s: %s %s", uid, resp.Status, resp.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(resp.Body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			io.Copy(h, p)
			if k := hex.EncodeToString(h.Sum(nil)); !stored[k] {
				t.Errorf("study %s: an instance (SHA-256 %s) is not byte for byte one stored on the source", uid, k)
			}
			parts++
		}
		resp.Body.Close()
	}
	if parts < 3 {
		t.Errorf("WADO-RS returned %d instances", parts)
	}
	for _, u := range []string{"demo-yamada", "demo-admin@region"} {
		login(t, base, u, accounts[u][0], accounts[u][1])
	}
}

// serveForTest runs Main with args until stop is called, and returns the HTTP base URL.
func serveForTest(t *testing.T, args ...string) (base string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- Main(ctx, args, pw, &stderr)
		pw.Close()
	}()
	br := bufio.NewReader(pr)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			cancel()
			t.Fatalf("no start-up line (%v): %s", err, stderr.String())
		}
		if m := regexp.MustCompile(`http://(\S+)/dicomweb`).FindStringSubmatch(l); m != nil && strings.HasPrefix(l, "renkei is running") {
			base = "http://" + m[1]
			break
		}
	}
	go io.Copy(io.Discard, pr)
	var once sync.Once
	return base, func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("serve did not stop")
			}
		})
	}
}

// demoAccounts reads the demo logins, passwords and authenticator keys that serve --demo keeps in the data folder.
func demoAccounts(t *testing.T, data string) map[string][2]string {
	b, err := os.ReadFile(filepath.Join(data, demoAccountsFile))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, "\t"); len(f) == 3 && !strings.HasPrefix(l, "#") {
			out[f[0]] = [2]string{f[1], f[2]}
		}
	}
	return out
}

// cancelAfter is a stderr that cancels the run (as Ctrl-C does) after n progress lines of the index copy.
type cancelAfter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.HasPrefix(p, []byte("index: ")) {
		if w.n--; w.n == 0 {
			w.cancel()
		}
	}
	return w.buf.Write(p)
}

func (w *cancelAfter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
