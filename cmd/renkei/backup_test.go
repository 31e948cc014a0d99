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
	// The generation holds what its manifest names and nothing of the snapshot's own opening (a -wal, -shm, or the
	// audit journal's lock and files).
	entries, _ := os.ReadDir(filepath.Join(bk, gens[0]))
	for _, e := range entries {
		if n := e.Name(); strings.Contains(n, "-wal") || strings.Contains(n, "-shm") || strings.Contains(n, "-audit-journal") {
			t.Errorf("the generation holds %s, a left-over of opening its snapshot", n)
		}
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

// TestAdminBackupPrune takes three backups with --keep 2 of a region that `renkei serve` keeps filling, with blobs
// that only some generations hold (blobs written before a snapshot but named by no row, removed from the region
// later as the orphan sweep does): two generations are left, the blobs only the oldest held are gone, those a kept
// generation still lists are not, the folders of a run and a pruning that did not finish are removed with the blobs
// only they had, and both kept generations restore with every SHA-256 and the audit chain checked. A kept
// generation whose blobs.txt does not match its manifest stops the pruning with nothing removed, and a second backup
// into a folder where one is running is refused.
func TestAdminBackupPrune(t *testing.T) {
	dir := t.TempDir()
	data, bk := filepath.Join(dir, "data"), filepath.Join(dir, "backup")
	token := provisionToken(t, data)
	base, stop := serveForTest(t, "serve", "--data", data, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn")
	defer stop()
	client := &http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: time.Minute}
	gen := t.TempDir()
	n := 0
	storeSome := func(count int) {
		t.Helper()
		var files [][]byte
		for range count {
			n++
			files = append(files, ctBytes(t, filepath.Join(gen, fmt.Sprintf("%d.dcm", n)), dicomtest.CTOptions{StudyInstanceUID: dicomtest.UID(fmt.Sprintf("prune/study/%d", n%2)),
				SeriesInstanceUID: dicomtest.UID(fmt.Sprintf("prune/series/%d", n%2)), SOPInstanceUID: dicomtest.UID(fmt.Sprintf("prune/sop/%d", n)),
				PatientID: "PR1", PatientName: "Prune^Test", Rows: 32, Cols: 32, InstanceNumber: n, Seed: int64(n)}))
		}
		if err := stow(client, base+"/dicomweb/studies", files...); err != nil {
			t.Fatal(err)
		}
	}
	// orphan writes a blob no row names into a blob folder, backdated so that a backup starting now counts it as
	// written before its snapshot.
	orphan := func(root, content string) string {
		t.Helper()
		s := sha256.Sum256([]byte(content))
		k := hex.EncodeToString(s[:])
		p := blobPath(root, k)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Minute)
		os.Chtimes(p, old, old)
		return k
	}
	inBackup := func(k string) bool {
		_, err := os.Stat(blobPath(filepath.Join(bk, "blobs"), k))
		return err == nil
	}
	backup := func(wantCode int, args ...string) string {
		t.Helper()
		time.Sleep(time.Second) // generations are named to the second
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append([]string{"admin", "backup", "--data", data, "--to", bk}, args...), &out, &errOut)
		if (code == 0) != (wantCode == 0) {
			t.Fatalf("backup %v: exit %d, want %d\n%s%s", args, code, wantCode, out.String(), errOut.String())
		}
		t.Logf("backup %v:\n%s%s", args, out.String(), errOut.String())
		return out.String() + errOut.String()
	}

	// Generation 1 holds orphans A and B; A is removed from the region before generation 2, B before generation 3.
	storeSome(3)
	a := orphan(filepath.Join(data, "blobs"), "orphan A, only in the first generation")
	b := orphan(filepath.Join(data, "blobs"), "orphan B, in the first two generations")
	backup(0, "--keep", "2")
	os.Remove(blobPath(filepath.Join(data, "blobs"), a))
	storeSome(2)
	backup(0, "--keep", "2")
	os.Remove(blobPath(filepath.Join(data, "blobs"), b))
	storeSome(2)
	gens, err := backupGenerations(bk)
	if err != nil || len(gens) != 2 {
		t.Fatalf("generations after two backups: %v %v", gens, err)
	}
	// What a crashed backup leaves (a NAME.partial with a blob it copied), and a crashed pruning (NAME.pruning, a
	// whole generation renamed): removed by the next run, with the blob only the crashed run had.
	crashed := filepath.Join(bk, "20000101T000000Z.partial")
	if err := os.MkdirAll(crashed, 0o700); err != nil {
		t.Fatal(err)
	}
	c := orphan(filepath.Join(bk, "blobs"), "copied by a backup that crashed")
	if err := os.WriteFile(filepath.Join(crashed, blobListFile), []byte(c+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(bk, gens[0]), filepath.Join(bk, gens[0]+".pruning")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(bk, gens[0]), 0o700); err != nil { // the copy of generation 1 stays whole
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(bk, gens[0]), os.DirFS(filepath.Join(bk, gens[0]+".pruning"))); err != nil {
		t.Fatal(err)
	}
	if !inBackup(a) || !inBackup(b) || !inBackup(c) {
		t.Fatal("the orphans are not in the backup")
	}

	out := backup(0, "--keep", "2")
	gens3, err := backupGenerations(bk)
	if err != nil || len(gens3) != 2 || gens3[0] != gens[1] {
		t.Fatalf("generations after three backups with --keep 2: %v %v (the first two were %v)", gens3, err, gens)
	}
	for _, want := range []string{"removed 1 old generation(s), keeping 2: " + gens[0], "removed 2 blob(s)",
		"removed 20000101T000000Z.partial", "removed " + gens[0] + ".pruning"} {
		if !strings.Contains(out, want) {
			t.Errorf("the third backup does not say %q", want)
		}
	}
	ents, _ := os.ReadDir(bk)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".partial") || strings.HasSuffix(e.Name(), ".pruning") || e.Name() == gens[0] {
			t.Errorf("%s is left in the backup folder", e.Name())
		}
	}
	if inBackup(a) {
		t.Errorf("blob A, which only the removed generation listed, is still in the backup")
	}
	if inBackup(c) {
		t.Errorf("blob C, which only a crashed run had copied, is still in the backup")
	}
	if !inBackup(b) {
		t.Errorf("blob B, which the kept generation %s lists, was removed", gens3[0])
	}
	// Every kept generation restores whole: every blob read back and its SHA-256 checked, the audit chain intact.
	for i, g := range gens3 {
		into := filepath.Join(dir, fmt.Sprintf("restored-%d", i))
		var rout, rerr bytes.Buffer
		if code := Main(context.Background(), []string{"admin", "restore", "--from", bk, "--generation", g, "--data", into}, &rout, &rerr); code != 0 {
			t.Fatalf("restore %s: exit %d\n%s%s", g, code, rout.String(), rerr.String())
		}
		for _, want := range []string{"restored backup " + g, "SHA-256 checked", "audit chain intact"} {
			if !strings.Contains(rout.String(), want) {
				t.Errorf("restore of %s does not say %q:\n%s", g, want, rout.String())
			}
		}
	}

	// A kept generation whose blob list no longer matches its manifest: the backup is written, but nothing is
	// pruned, not even a blob no generation lists.
	list := filepath.Join(bk, gens3[1], blobListFile)
	lb, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(list, lb[:len(lb)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	d := orphan(filepath.Join(bk, "blobs"), "in no generation")
	out = backup(1, "--keep", "2")
	if !strings.Contains(out, "generation "+gens3[1]+": blobs.txt is damaged") || !strings.Contains(out, "nothing was removed") {
		t.Errorf("the backup with a damaged kept generation does not say why it pruned nothing")
	}
	if gens4, _ := backupGenerations(bk); len(gens4) != 3 || !inBackup(d) {
		t.Errorf("after a pruning that could not read a kept generation: generations %v, blob D kept %v; want 3 and true", gens4, inBackup(d))
	}

	// One backup at a time in a folder.
	f, err := lockBackupDir(bk)
	if err != nil {
		t.Fatal(err)
	}
	out = backup(1)
	f.Close()
	if !strings.Contains(out, "another renkei admin backup is writing to") {
		t.Errorf("a backup while another one runs: %s", out)
	}
}
