package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"renkei/internal/dicomtest"
)

// TestAdminBackupRestore backs up a region that `renkei serve` is filling over STOW-RS, while a client keeps
// storing instances; restores the backup into an empty folder (refusing a non-empty one); checks every restored
// blob's SHA-256; serves the restored folder with `renkei serve`, which returns every instance acknowledged before
// the backup began byte for byte over WADO-RS (and none acknowledged after it ended); verifies the restored audit
// chain; and takes a second backup, which copies exactly the blobs that arrived since the first.
func TestAdminBackupRestore(t *testing.T) {
	dir := t.TempDir()
	data, bk, restored := filepath.Join(dir, "data"), filepath.Join(dir, "backup"), filepath.Join(dir, "restored")
	marker := filepath.Join(dir, "backup-ok")
	token := provisionToken(t, data)
	base, stop := serveForTest(t, "serve", "--data", data, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn")
	defer stop()
	client := &http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: time.Minute}

	type sent struct {
		study, series, sop string
		bytes              []byte
		acked              time.Time
	}
	var (
		mu   sync.Mutex
		all  []sent
		seq  int
		errs []error
	)
	gen := t.TempDir()
	store := func(study int) error {
		mu.Lock()
		seq++
		n := seq
		mu.Unlock()
		in := sent{
			study:  dicomtest.UID(fmt.Sprintf("backup/study/%d", study)),
			series: dicomtest.UID(fmt.Sprintf("backup/series/%d", study)),
			sop:    dicomtest.UID(fmt.Sprintf("backup/sop/%d", n)),
		}
		path := filepath.Join(gen, fmt.Sprintf("%d.dcm", n))
		err := dicomtest.CT(path, dicomtest.CTOptions{StudyInstanceUID: in.study, SeriesInstanceUID: in.series, SOPInstanceUID: in.sop,
			PatientID: fmt.Sprintf("BK%d", study), PatientName: "Backup^Test", Rows: 64, Cols: 64, InstanceNumber: n, Seed: int64(n)})
		if err != nil {
			return err
		}
		if in.bytes, err = os.ReadFile(path); err != nil {
			return err
		}
		if err := stow(client, base+"/dicomweb/studies", in.bytes); err != nil {
			return err
		}
		in.acked = time.Now()
		mu.Lock()
		all = append(all, in)
		mu.Unlock()
		return nil
	}
	// A populated region: three studies of three instances.
	for i := range 9 {
		if err := store(i % 3); err != nil {
			t.Fatal(err)
		}
	}
	// A client that keeps storing, into a fourth study, during the backup.
	ctx, stopClient := context.WithCancel(context.Background())
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		for ctx.Err() == nil {
			if err := store(3); err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(all) }
	for count() < 12 {
		time.Sleep(10 * time.Millisecond)
	}

	// 1. The backup, during ingest.
	began := time.Now()
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"admin", "backup", "--data", data, "--to", bk, "--backup-marker", marker}, &out, &errOut); code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	ended := time.Now()
	t.Logf("backup:\n%s", out.String())
	for n := count() + 5; count() < n; {
		time.Sleep(10 * time.Millisecond)
	}
	stopClient()
	<-clientDone
	if len(errs) > 0 {
		t.Fatalf("storing during the backup: %v", errs)
	}
	if info, err := os.Stat(marker); err != nil || info.ModTime().Before(began.Add(-time.Second)) {
		t.Errorf("the backup marker was not touched: %v", err)
	}
	gens, err := backupGenerations(bk)
	if err != nil || len(gens) != 1 {
		t.Fatalf("generations after one backup: %v %v", gens, err)
	}
	var m backupManifest
	mb, _ := os.ReadFile(filepath.Join(bk, gens[0], manifestFile))
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	if m.Index == "" || m.AuditHead == 0 || m.Counts.Instances < 12 || m.Blobs < m.Counts.Instances || m.Files[auditKeyFile] == "" {
		t.Errorf("manifest: %s", mb)
	}

	// 2. Restore: refused into a folder that holds something, done into an empty one.
	out.Reset()
	errOut.Reset()
	if code := Main(context.Background(), []string{"admin", "restore", "--from", bk, "--data", data}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "not empty") {
		t.Fatalf("restore into the live data folder: exit %d, %s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := Main(context.Background(), []string{"admin", "restore", "--from", bk, "--data", restored}, &out, &errOut); code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	t.Logf("restore:\n%s", out.String())
	for _, want := range []string{"restored backup " + gens[0], fmt.Sprintf("%d instances", m.Counts.Instances), "SHA-256 checked", "audit chain intact", auditKeyFile} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("restore does not say %q", want)
		}
	}
	// Every blob in the restored folder holds the bytes its name says.
	var blobs int64
	filepath.WalkDir(filepath.Join(restored, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || len(d.Name()) != 64 {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != d.Name() {
			t.Errorf("restored blob %s has SHA-256 %x", d.Name(), s)
		}
		blobs++
		return nil
	})
	if blobs != m.Blobs {
		t.Errorf("%d blobs restored, the manifest lists %d", blobs, m.Blobs)
	}

	// 3. The restored region serves what the snapshot held, byte for byte.
	rbase, rstop := serveForTest(t, "serve", "--data", restored, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn")
	mu.Lock()
	sentAll := append([]sent(nil), all...)
	mu.Unlock()
	inSnapshot := map[string]bool{}
	for _, study := range []int{0, 1, 2, 3} {
		uid := dicomtest.UID(fmt.Sprintf("backup/study/%d", study))
		for _, p := range getParts(t, client, rbase+"/dicomweb/studies/"+uid, `multipart/related; type="application/dicom"; transfer-syntax=*`) {
			s := sha256.Sum256(p)
			inSnapshot[hex.EncodeToString(s[:])] = true
		}
	}
	var before, after int
	for _, in := range sentAll {
		s := sha256.Sum256(in.bytes)
		got := inSnapshot[hex.EncodeToString(s[:])]
		switch {
		case in.acked.Before(began):
			before++
			if !got {
				t.Errorf("instance %s, acknowledged before the backup began, is not served byte for byte by the restored region", in.sop)
			}
		case in.acked.After(ended):
			after++
			if got {
				t.Errorf("instance %s, acknowledged after the backup ended, is in the restored region", in.sop)
			}
		}
	}
	if int64(len(inSnapshot)) != m.Counts.Instances {
		t.Errorf("the restored region serves %d instances, the manifest counts %d", len(inSnapshot), m.Counts.Instances)
	}
	t.Logf("instances acknowledged before the backup: %d, during it: %d, after it: %d", before, len(sentAll)-before-after, after)
	if before < 12 || after < 5 {
		t.Errorf("%d instances acknowledged before the backup, %d after it: the test did not store during it", before, after)
	}
	rstop()
	out.Reset()
	errOut.Reset()
	if code := Main(context.Background(), []string{"admin", "audit", "verify", "--data", restored}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "intact") {
		t.Errorf("audit verify on the restored region: exit %d\n%s%s", code, out.String(), errOut.String())
	}

	// 4. A second backup copies only the blobs that arrived since the first (the server stopped, so that nothing
	// arrives meanwhile).
	stop()
	had := map[string]bool{}
	filepath.WalkDir(filepath.Join(bk, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && len(d.Name()) == 64 {
			had[d.Name()] = true
		}
		return nil
	})
	var fresh int
	filepath.WalkDir(filepath.Join(data, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && len(d.Name()) == 64 && !had[d.Name()] {
			fresh++
		}
		return nil
	})
	time.Sleep(time.Second) // generations are named to the second
	out.Reset()
	errOut.Reset()
	if code := Main(context.Background(), []string{"admin", "backup", "--data", data, "--to", bk}, &out, &errOut); code != 0 {
		t.Fatalf("second backup: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	t.Logf("second backup:\n%s", out.String())
	mc := regexp.MustCompile(`(\d+) copied now, (\d+) already in the backup`).FindStringSubmatch(out.String())
	if mc == nil {
		t.Fatalf("second backup does not say what it copied: %s", out.String())
	}
	if copied, _ := strconv.Atoi(mc[1]); fresh == 0 || copied != fresh {
		t.Errorf("second backup copied %d blobs, want the %d new ones", copied, fresh)
	}
	if kept, _ := strconv.Atoi(mc[2]); kept != len(had) {
		t.Errorf("second backup found %d blobs in the backup already, want %d", kept, len(had))
	}
	if gens, _ := backupGenerations(bk); len(gens) != 2 {
		t.Errorf("generations after two backups: %v", gens)
	}

	// 5. A blob damaged in the backup is found by restore, which stops and says so.
	var victim string
	for k := range had {
		victim = k
		break
	}
	p := blobPath(filepath.Join(bk, "blobs"), victim)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := Main(context.Background(), []string{"admin", "restore", "--from", bk, "--data", filepath.Join(dir, "restored-2")}, &out, &errOut); code == 0 ||
		!strings.Contains(errOut.String(), "blob "+victim+" is damaged") || !strings.Contains(errOut.String(), "restore is not complete") {
		t.Errorf("restore of a backup with a damaged blob: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
