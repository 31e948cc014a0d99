package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"renkei/internal/dicomtest"
)

// TestAdminVerify: `renkei admin verify` beside a running server finds the region whole, then names what an operator
// must act on: a blob nothing refers to (removed with --remove-orphans once past the grace period, kept before it),
// a blob whose bytes changed on disk (found by its SHA-256; --quick, which only looks, does not), a blob gone.
func TestAdminVerify(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	token := provisionToken(t, data)
	base, stop := serveForTest(t, "serve", "--data", data, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn")
	defer stop()
	client := &http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: time.Minute}
	var files [][]byte
	for i := range 4 {
		files = append(files, ctBytes(t, filepath.Join(dir, fmt.Sprintf("ct%d.dcm", i)), dicomtest.CTOptions{PatientID: "VER1", Rows: 64, Cols: 64, InstanceNumber: i + 1, Seed: 77}))
	}
	// A fifth from a sender whose names cannot be decoded (bytes of no declared character set): stored as received,
	// and flagged.
	garbled := ctBytes(t, filepath.Join(dir, "garbled.dcm"), dicomtest.CTOptions{PatientID: "VER2", PatientName: "PLACEHOLDR", Rows: 16, Cols: 16, InstanceNumber: 1, Seed: 78})
	garbled = bytes.Replace(garbled, []byte("PLACEHOLDR"), []byte("\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6"), 1)
	if err := stow(client, base+"/dicomweb/studies", files...); err != nil {
		t.Fatal(err)
	}
	// Stored with a warning (202: PS3.18 answers a stored instance with warnings so).
	if err := stow(client, base+"/dicomweb/studies", garbled); err == nil || !strings.Contains(err.Error(), "202") || strings.Contains(err.Error(), `"00081198":{"vr":"SQ","Value"`) {
		t.Fatalf("STOW-RS of the undecodable instance: %v, want 202 with a warning and no failure", err)
	}
	run := func(args ...string) (int, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append([]string{"admin", "verify", "--data", data}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	blobPath := func(b []byte) (string, string) {
		sum := sha256.Sum256(b)
		key := hex.EncodeToString(sum[:])
		return key, filepath.Join(data, "blobs", key[:3], key)
	}

	code, out := run()
	if code != 0 || !strings.Contains(out, "blobs the index refers to: 5") || !strings.Contains(out, "index and blobs agree") {
		t.Fatalf("a whole region: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "instances with text that could not be decoded (kept as received; register the sender with --charset): 1") ||
		!strings.Contains(out, "from STOW-RS") {
		t.Errorf("the undecodable instance is not listed:\n%s", out)
	}
	if !strings.Contains(out, "shares' grants: agree with the shares") {
		t.Errorf("the grants are not checked:\n%s", out)
	}

	// The table of what the shares grant gets a row no share owes (a defect, or a careless hand): verify says so
	// and fails; --rebuild-grants puts it right beside the running server.
	idx, err := sql.Open("sqlite", filepath.Join(data, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idx.Exec(`INSERT INTO study_grants (to_institution, to_user, study_pk, study_date, study_time, patient_pk, institution_pk, expires_at)
		SELECT 999, 0, pk, study_date, study_time, patient_pk, institution_pk, 99999999999999 FROM studies LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	idx.Close()
	if code, out := run(); code != 1 || !strings.Contains(out, "shares' grants: 1 rows out of step") || !strings.Contains(out, "--rebuild-grants") {
		t.Errorf("a grant no share owes: exit %d\n%s", code, out)
	}
	if code, out := run("--rebuild-grants"); code != 0 || !strings.Contains(out, "rebuilt from the shares") {
		t.Errorf("--rebuild-grants: exit %d\n%s", code, out)
	}
	if code, out := run(); code != 0 || !strings.Contains(out, "agree with the shares") {
		t.Errorf("after the rebuild: exit %d\n%s", code, out)
	}

	// Two blobs nothing refers to: one written two days ago, one just now (an instance being indexed, perhaps).
	oldOrphan, newOrphan := []byte("left by a crash two days ago"), []byte("being indexed right now")
	for _, o := range []struct {
		b   []byte
		age time.Duration
	}{{oldOrphan, 48 * time.Hour}, {newOrphan, 0}} {
		_, p := blobPath(o.b)
		os.MkdirAll(filepath.Dir(p), 0o750)
		if err := os.WriteFile(p, o.b, 0o640); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-o.age)
		os.Chtimes(p, at, at)
	}
	oldKey, oldPath := blobPath(oldOrphan)
	newKey, newPath := blobPath(newOrphan)
	code, out = run()
	if code != 0 || !strings.Contains(out, "not referred to: "+oldKey) || !strings.Contains(out, "not referred to: "+newKey) || !strings.Contains(out, "blobs nothing refers to: 2") {
		t.Errorf("orphans listed: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(oldPath); err != nil {
		t.Errorf("verify without --remove-orphans removed an orphan")
	}
	code, out = run("--remove-orphans")
	if code != 0 || !strings.Contains(out, "2, 1 removed") {
		t.Errorf("--remove-orphans: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(oldPath); err == nil {
		t.Errorf("the two-day-old orphan is still there")
	}
	if _, err := os.Stat(newPath); err != nil {
		t.Errorf("the orphan within the grace period was removed")
	}

	// A stored image's bytes change on disk (bit rot, a careless hand): the SHA-256 finds it, --quick does not.
	damagedKey, damagedPath := blobPath(files[1])
	b, err := os.ReadFile(damagedPath)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(damagedPath, b, 0o640); err != nil {
		t.Fatal(err)
	}
	code, out = run()
	if code != 1 || !strings.Contains(out, "damaged (its SHA-256 is not its name): "+damagedKey) {
		t.Errorf("a damaged blob: exit %d\n%s", code, out)
	}
	if code, out := run("--quick"); code != 0 {
		t.Errorf("--quick on a damaged blob of the right size: exit %d (it only looks)\n%s", code, out)
	}

	// A stored image's blob is gone.
	goneKey, gonePath := blobPath(files[2])
	if err := os.Remove(gonePath); err != nil {
		t.Fatal(err)
	}
	code, out = run("--quick")
	if code != 1 || !strings.Contains(out, "missing: "+goneKey) || !strings.Contains(out, "restore them from a backup") {
		t.Errorf("a missing blob: exit %d\n%s", code, out)
	}
}
