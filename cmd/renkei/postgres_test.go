package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"renkei/internal/dicomtest"
	"renkei/sqlstore/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// serveLines runs `renkei serve` in this process with args until the test ends and gives each line it prints to
// line, up to and including the start-up line ("renkei is running …"), whose base URL (without /dicomweb) it
// returns.
func serveLines(t *testing.T, line func(string), args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, append([]string{"serve", "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn"}, args...), pw, &stderr)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d: %s", code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	br := bufio.NewReader(pr)
	running := regexp.MustCompile(`^renkei is running.*http://(\S+)/dicomweb`)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("no start-up line (%v): %s", err, stderr.String())
		}
		line(l)
		if m := running.FindStringSubmatch(l); m != nil {
			go io.Copy(io.Discard, br)
			return "http://" + m[1]
		}
	}
}

// startServe runs `renkei serve` with args until the test ends and returns its DICOMweb base URL.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	return serveLines(t, func(string) {}, args...) + "/dicomweb"
}

// TestServePostgres runs two `renkei serve --db postgres://…` nodes on one private PostgreSQL cluster (and one data
// folder, for the blobs and the audit key): instances stored over STOW-RS on one node are found over QIDO-RS and
// read back over WADO-RS, byte for byte, on the other; `renkei admin … --db` provisions the region and verifies
// the audit chain both nodes extended.
func TestServePostgres(t *testing.T) {
	db := pgtest.URL(t)
	data := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	for _, args := range [][]string{
		{"admin", "institution", "add", "test-clinic", "--name", "試験クリニック", "--kind", "clinic"},
		{"admin", "token", "add", "test-client", "--institution", "test-clinic", "--write"},
	} {
		out.Reset()
		if code := Main(context.Background(), append(args, "--data", data, "--db", db), &out, &out); code != 0 {
			t.Fatalf("%v: %s", args, out.String())
		}
	}
	m := regexp.MustCompile(`(?m)^(rk_\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("token add printed no token: %s", out.String())
	}
	client := &http.Client{Transport: bearer{m[1], http.DefaultTransport}, Timeout: time.Minute}
	nodeA := startServe(t, "--data", data, "--db", db)
	nodeB := startServe(t, "--data", data, "--db", db)

	gen := t.TempDir()
	study := dicomtest.UID("pg/study")
	series := dicomtest.UID("pg/series")
	sent := map[string][]byte{}
	var files [][]byte
	for i := range 3 {
		o := dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: dicomtest.UID(fmt.Sprint("pg/ct/", i)),
			PatientID: "PGTEST", Rows: 64, Cols: 64, Seed: int64(i), InstanceNumber: i + 1}
		path := filepath.Join(gen, fmt.Sprintf("%d.dcm", i))
		if err := dicomtest.CT(path, o); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sent[o.SOPInstanceUID] = b
		files = append(files, b)
	}
	if err := stow(client, nodeA+"/studies", files...); err != nil {
		t.Fatalf("node A: %v", err)
	}

	// QIDO-RS on node B: by PatientID, and by a wildcard.
	for _, q := range []string{"PatientID=PGTEST", "PatientID=PG*", "StudyInstanceUID=" + study} {
		resp, err := client.Get(nodeB + "/studies?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var found []map[string]struct{ Value []any }
		err = json.NewDecoder(resp.Body).Decode(&found)
		resp.Body.Close()
		if err != nil || len(found) != 1 {
			t.Fatalf("QIDO-RS %s on node B: %d studies, %v", q, len(found), err)
		}
		if n := found[0]["00201208"].Value; len(n) != 1 || fmt.Sprint(n[0]) != "3" {
			t.Errorf("QIDO-RS %s: NumberOfStudyRelatedInstances %v, want 3", q, n)
		}
	}
	// WADO-RS on node B gives back the bytes sent to node A.
	parts := getParts(t, client, nodeB+"/studies/"+study, `multipart/related; type="application/dicom"; transfer-syntax=*`)
	if len(parts) != 3 {
		t.Fatalf("WADO-RS on node B: %d parts, want 3", len(parts))
	}
	for _, p := range parts {
		var ok bool
		for _, s := range sent {
			ok = ok || bytes.Equal(p, s)
		}
		if !ok {
			t.Errorf("WADO-RS returned %d bytes that were not sent", len(p))
		}
	}
	// Both nodes extended one audit chain.
	out.Reset()
	if code := Main(context.Background(), []string{"admin", "audit", "verify", "--data", data, "--db", db}, &out, &out); code != 0 {
		t.Fatalf("audit verify: %s", out.String())
	}
	if !strings.Contains(out.String(), "the audit trail is intact") {
		t.Errorf("audit verify: %s", out.String())
	}

	// A --db that is not PostgreSQL is refused with a sentence.
	var errb bytes.Buffer
	if code := Main(context.Background(), []string{"serve", "--data", data, "--db", "mysql://x", "--http", "127.0.0.1:0", "--dimse", "off"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "want a postgres:// URL") {
		t.Errorf("serve --db mysql://x exited %d: %s", code, errb.String())
	}
}
