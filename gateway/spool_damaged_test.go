package gateway

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"renkei/internal/dicomtest"
)

// TestSpoolDamagedFile: a spooled file that lost its sidecar and no longer reads as DICOM (damaged on disk, or put
// there by hand) does not keep the gateway from starting: Open moves it to damaged/ for a person to look at and
// serves the rest; a read-only look at the spool (`renkei gateway status`) leaves it out without moving it.
func TestSpoolDamagedFile(t *testing.T) {
	dir := t.TempDir()
	sp, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := 1; i <= 2; i++ {
		e, err := sp.Put(context.Background(), bytes.NewReader(ctFile(t, dicomtest.CTOptions{PatientID: "DMG", Rows: 8, Cols: 8, Seed: 5, InstanceNumber: i})), Entry{})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, e.Key)
	}
	bad := keys[0]
	os.Remove(sp.jpath(bad))
	if err := os.WriteFile(sp.path(bad), []byte("no longer DICOM"), 0o600); err != nil {
		t.Fatal(err)
	}

	// A read-only look: the damaged file is left out and left in place.
	all, err := (&Spool{Dir: dir}).List()
	if err != nil || len(all) != 1 || all[0].Key != keys[1] {
		t.Fatalf("status look: %+v, %v", all, err)
	}
	if _, err := os.Stat(sp.path(bad)); err != nil {
		t.Fatalf("a read-only look moved the damaged file: %v", err)
	}

	// A restart: the gateway starts, with the damaged file set aside.
	sp, err = Open(dir, 0)
	if err != nil {
		t.Fatalf("the spool does not open with one damaged file: %v", err)
	}
	all, err = sp.List()
	if err != nil || len(all) != 1 || all[0].Key != keys[1] {
		t.Errorf("after Open: %+v, %v", all, err)
	}
	if b, err := os.ReadFile(filepath.Join(filepath.Join(dir, "damaged"), bad+".dcm")); err != nil || string(b) != "no longer DICOM" {
		t.Errorf("the damaged file in damaged/: %q, %v", b, err)
	}
	if _, err := os.Stat(sp.path(bad)); err == nil {
		t.Error("the damaged file is still in objects/")
	}
}
