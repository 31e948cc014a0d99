package dicomweb_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"renkei/internal/dicomtest"
)

// TestStowQidoWado is the README's promise in one test: a file stored with STOW-RS is found by QIDO-RS and comes
// back byte-identical by WADO-RS.
func TestStowQidoWado(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "ct.dcm")
	if err := dicomtest.CT(path, dicomtest.CTOptions{StudyInstanceUID: dicomtest.UID("smoke-study"), PatientID: "P1", PatientName: "Yamada^Taro=山田^太郎=ヤマダ^タロウ", Rows: 64, Cols: 64, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(path)
	status, body := e.stow(orig)
	if status != 200 {
		t.Fatalf("STOW-RS status %d: %s", status, body)
	}
	for _, q := range []string{"PatientName=山田*", "PatientName=ヤマダ*", "PatientName=yamada*", "PatientID=P1"} {
		st, _, b := e.get(e.url+"/studies?"+q, "application/dicom+json")
		if st != 200 || !bytes.Contains(b, []byte(`"P1"`)) {
			t.Errorf("QIDO %s: status %d, body %s", q, st, b)
		}
	}
	st, ct, b := e.get(e.url+"/studies/"+dicomtest.UID("smoke-study"), `multipart/related; type="application/dicom"; transfer-syntax=*`)
	if st != 200 {
		t.Fatalf("WADO-RS status %d: %s", st, b)
	}
	got, _ := parts(t, ct, b)
	if len(got) != 1 || sha256.Sum256(got[0]) != sha256.Sum256(orig) {
		t.Fatalf("WADO-RS returned %d parts; want the stored bytes back unchanged", len(got))
	}
}
