package dicomweb_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"renkei/archive"
	"renkei/internal/dicomtest"
)

// TestSenderCharsetInMetadata: an older modality sends Shift_JIS (CP932) names without declaring a character set,
// and its AE title is registered with --charset CP932. QIDO-RS shows the name decoded at ingest; WADO-RS metadata,
// which decodes the stored bytes again, must use the same sender's character set, not the server's default.
func TestSenderCharsetInMetadata(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, "sjis.dcm")
	if err := dicomtest.CT(path, dicomtest.CTOptions{PatientID: "SJIS1", PatientName: "PLACEHOLDR", Rows: 16, Cols: 16, InstanceNumber: 1, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("ISO_IR")) {
		t.Fatal("the test file declares a character set; the case is an undeclared one")
	}
	sjis := []byte("\x8e\x52\x93\x63\x5e\x91\xbe\x98\x59\x20") // 山田^太郎 in CP932, padded to an even length
	b = bytes.Replace(b, []byte("PLACEHOLDR"), sjis, 1)
	res := e.archive.Store(context.Background(), bytes.NewReader(b), archive.StoreRequest{Source: "C-STORE from OLDCT", Charset: "CP932"})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	code, _, body := e.get(e.url+"/studies?PatientID=SJIS1", "application/dicom+json")
	if code != 200 || !strings.Contains(string(body), "山田^太郎") {
		t.Fatalf("QIDO-RS: %d %s", code, body)
	}
	code, _, body = e.get(e.url+"/studies/"+res.StudyInstanceUID+"/metadata", "application/dicom+json")
	if code != 200 || !strings.Contains(string(body), "山田^太郎") {
		t.Errorf("WADO-RS metadata does not decode the name as its sender sent it: %d %.400s", code, body)
	}
}
