package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"renkei/dicom"
	"renkei/internal/dicomtest"
)

func ctFile(t *testing.T, o dicomtest.CTOptions) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ct.dcm")
	if err := dicomtest.CT(p, o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSpool: Put keeps the file byte for byte under its SHA-256 with the UIDs read from it, refuses what is not
// DICOM and leaves nothing behind, and a spool opened again (after a crash) sees what was put and drops the debris
// of an interrupted write.
func TestSpool(t *testing.T) {
	dir := t.TempDir()
	sp, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	file := ctFile(t, dicomtest.CTOptions{PatientID: "S1", Rows: 8, Cols: 8, Seed: 1})
	e, err := sp.Put(context.Background(), bytes.NewReader(file), Entry{CallingAETitle: "CT1"})
	if err != nil {
		t.Fatal(err)
	}
	if e.SOPInstanceUID == "" || e.StudyInstanceUID == "" || e.Size != int64(len(file)) || len(e.Key) != 64 {
		t.Errorf("entry %+v", e)
	}
	f, err := sp.OpenFile(e.Key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, file) {
		t.Error("the spooled file differs from what was received")
	}
	if _, err := sp.Put(context.Background(), strings.NewReader("not dicom at all"), Entry{}); err == nil {
		t.Error("a non-DICOM stream was spooled")
	}
	// Debris of a crash: a half-written temporary file and a sidecar whose file never got its name.
	os.WriteFile(filepath.Join(dir, "tmp", "put-123"), []byte("half"), 0o600)
	os.WriteFile(filepath.Join(dir, "objects", strings.Repeat("ab", 32)+".json"), []byte(`{}`), 0o600)
	sp2, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	list, err := sp2.List()
	if err != nil || len(list) != 1 || list[0].Key != e.Key || list[0].CallingAETitle != "CT1" {
		t.Fatalf("after reopening: %+v %v", list, err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("%d temporary files survived reopening", len(left))
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", strings.Repeat("ab", 32)+".json")); err == nil {
		t.Error("an orphan sidecar survived reopening")
	}
	// A power failure after the rename may lose the sidecar (it is not flushed on its own) or cut it short: it is
	// rebuilt from the file, with the calling AE from the file's meta.
	withMeta, err := dicom.ReceivedFileMeta("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", "1.2.840.10008.1.2.1", "CT_ROOM2")
	if err != nil {
		t.Fatal(err)
	}
	ds := ctFile(t, dicomtest.CTOptions{SOPInstanceUID: "1.2.3.4.5", Rows: 8, Cols: 8, Seed: 4})
	body, _ := dataSetAfterMeta(ds)
	e2, err := sp2.Put(context.Background(), bytes.NewReader(append(withMeta, body...)), Entry{CallingAETitle: "CT_ROOM2"})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "objects", e2.Key+".json"))
	os.WriteFile(filepath.Join(dir, "objects", e.Key+".json"), nil, 0o600) // cut short
	sp3, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	list, err = sp3.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("after losing sidecars: %+v %v", list, err)
	}
	for _, got := range list {
		want := e
		if got.Key == e2.Key {
			want = e2
		}
		if got.SOPInstanceUID != want.SOPInstanceUID || got.StudyInstanceUID != want.StudyInstanceUID || got.Size != want.Size {
			t.Errorf("rebuilt %+v, want %+v", got, want)
		}
		if got.Key == e2.Key && got.CallingAETitle != "CT_ROOM2" {
			t.Errorf("rebuilt calling AE %q", got.CallingAETitle)
		}
	}
	if err := sp2.RemoveAll([]string{e2.Key}); err != nil {
		t.Fatal(err)
	}
	if err := sp2.Remove(e.Key); err != nil {
		t.Fatal(err)
	}
	if list, _ := sp2.List(); len(list) != 0 {
		t.Errorf("after Remove: %+v", list)
	}
}

// dataSetAfterMeta returns the data set of a Part 10 file.
func dataSetAfterMeta(b []byte) ([]byte, error) {
	f, err := dicom.Parse(bytes.NewReader(b), dicom.DefaultReadOptions)
	if err != nil {
		return nil, err
	}
	return b[f.DataSetOffset:], nil
}

// TestSpoolConcurrentPuts: Puts from several associations at once share directory flushes and all land.
func TestSpoolConcurrentPuts(t *testing.T) {
	sp, err := Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var files [][]byte
	for i := range 16 {
		files = append(files, ctFile(t, dicomtest.CTOptions{Rows: 8, Cols: 8, Seed: int64(100 + i)}))
	}
	errs := make(chan error, len(files))
	for _, f := range files {
		go func() {
			_, err := sp.Put(context.Background(), bytes.NewReader(f), Entry{})
			errs <- err
		}()
	}
	for range files {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if list, err := sp.List(); err != nil || len(list) != len(files) {
		t.Errorf("%d spooled of %d: %v", len(list), len(files), err)
	}
}

// TestSpoolReserve: below the free-space reserve Put says ErrFull. (The free space is reported by a function here;
// the gateway test in cmd/renkei fills a real tmpfs.)
func TestSpoolReserve(t *testing.T) {
	sp, err := Open(t.TempDir(), 100<<20)
	if err != nil {
		t.Fatal(err)
	}
	free := int64(50 << 20)
	sp.FreeSpace = func(string) (int64, error) { return free, nil }
	file := ctFile(t, dicomtest.CTOptions{Rows: 8, Cols: 8, Seed: 2})
	if _, err := sp.Put(context.Background(), bytes.NewReader(file), Entry{}); !errors.Is(err, ErrFull) {
		t.Errorf("Put below the reserve: %v, want ErrFull", err)
	}
	free = 200 << 20
	if _, err := sp.Put(context.Background(), bytes.NewReader(file), Entry{}); err != nil {
		t.Errorf("Put with room: %v", err)
	}
}

// TestLedger: recorded instances are known after reopening; a line cut short by a crash is ignored (the instance is
// then still in the spool and sent again); days past the retention are removed.
func TestLedger(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLedger(dir, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Record([]Entry{{SOPInstanceUID: "1.2.3", SOPClassUID: "1.2.840.10008.5.1.4.1.1.2"}, {SOPInstanceUID: "1.2.4"}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	today := time.Now().Format(time.DateOnly)
	f, _ := os.OpenFile(filepath.Join(dir, today+".log"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("1.2.5 1.2.840") // no time, no newline: cut by a crash
	f.Close()
	old := time.Now().Add(-30 * 24 * time.Hour).Format(time.DateOnly)
	os.WriteFile(filepath.Join(dir, old+".log"), []byte("9.9.9 - 1\n"), 0o600)
	l, err = OpenLedger(dir, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if c, ok := l.Has("1.2.3"); !ok || c != "1.2.840.10008.5.1.4.1.1.2" {
		t.Errorf("1.2.3: %q %v", c, ok)
	}
	if c, ok := l.Has("1.2.4"); !ok || c != "-" {
		t.Errorf("1.2.4 (no class): %q %v", c, ok)
	}
	if _, ok := l.Has("1.2.5"); ok {
		t.Error("a line cut short counted as sent")
	}
	if _, ok := l.Has("9.9.9"); ok {
		t.Error("a day past the retention was read")
	}
	if _, err := os.Stat(filepath.Join(dir, old+".log")); err == nil {
		t.Error("a day past the retention was kept")
	}
}

func TestParseModalities(t *testing.T) {
	m, err := ParseModalities(" CT_ROOM1=192.168.10.21:104, MR1=mr.local:11112 ")
	if err != nil || m["CT_ROOM1"] != "192.168.10.21:104" || m["MR1"] != "mr.local:11112" {
		t.Errorf("%v %v", m, err)
	}
	for _, bad := range []string{"CT1", "CT1=host", "=host:104", "CT1=:104", "A_VERY_LONG_AE_TITLE=h:1", "CT1=h:port"} {
		if _, err := ParseModalities(bad); err == nil || !strings.Contains(err.Error(), "AE=host:port") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestRelabel: a shared instance gets the hospital's patient ID and issuer; the sender's are kept in
// OtherPatientIDsSequence; the pixel data are the same bytes.
func TestRelabel(t *testing.T) {
	file := ctFile(t, dicomtest.CTOptions{PatientID: "D0001", PatientName: "Yamada^Taro", Rows: 8, Cols: 8, Seed: 3})
	out, err := relabel(file, InboxItem{Issuer: "KITA", PatientID: "D0001", LocalIssuer: "CHUO", LocalPatientID: "H0001"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := dicom.Parse(bytes.NewReader(out), dicom.DefaultReadOptions)
	if err != nil {
		t.Fatal(err)
	}
	ds := f.DataSet
	if ds.String(dicom.PatientID) != "H0001" || ds.String(dicom.IssuerOfPatientID) != "CHUO" {
		t.Errorf("patient %q issuer %q", ds.String(dicom.PatientID), ds.String(dicom.IssuerOfPatientID))
	}
	other := ds.Get(tagOtherPatientIDsSequence)
	if other == nil || len(other.Items) != 1 || other.Items[0].String(dicom.PatientID) != "D0001" || other.Items[0].String(dicom.IssuerOfPatientID) != "KITA" {
		t.Errorf("OtherPatientIDsSequence: %+v", other)
	}
	orig, _ := dicom.Parse(bytes.NewReader(file), dicom.DefaultReadOptions)
	pix := func(b []byte, pd *dicom.Element) []byte { return b[pd.Offset : pd.Offset+int64(pd.Length)] }
	if !bytes.Equal(pix(out, f.PixelData), pix(file, orig.PixelData)) {
		t.Error("the pixel data changed")
	}
	if same, _ := relabel(file, InboxItem{Issuer: "KITA", PatientID: "D0001", LocalIssuer: "", LocalPatientID: "D0001"}); same == nil {
		t.Error("relabel to the same ID failed")
	}
}

// TestRelabelCompressed: a compressed instance (JPEG-LS, JPEG 2000, from pydicom's samples, which scripts/setup
// installs) keeps its transfer syntax and every fragment of its pixel data when it is relabelled, and dcmtk can read
// it back.
func TestRelabelCompressed(t *testing.T) {
	dir := "/usr/lib/python3/dist-packages/pydicom/data/test_files"
	for _, name := range []string{"MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"} {
		t.Run(name, func(t *testing.T) {
			file, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Skipf("pydicom's sample %s is missing (scripts/setup installs python3-pydicom): %v", name, err)
			}
			in, err := dicom.Parse(bytes.NewReader(file), dicom.DefaultReadOptions)
			if err != nil {
				t.Fatal(err)
			}
			out, err := relabel(file, InboxItem{Issuer: "KITA", PatientID: in.DataSet.String(dicom.PatientID), LocalIssuer: "CHUO", LocalPatientID: "H0001"})
			if err != nil {
				t.Fatal(err)
			}
			f, err := dicom.Parse(bytes.NewReader(out), dicom.DefaultReadOptions)
			if err != nil {
				t.Fatalf("the relabelled file cannot be read: %v", err)
			}
			if f.TransferSyntaxUID != in.TransferSyntaxUID || f.DataSet.String(dicom.PatientID) != "H0001" {
				t.Errorf("transfer syntax %s (was %s), patient %q", f.TransferSyntaxUID, in.TransferSyntaxUID, f.DataSet.String(dicom.PatientID))
			}
			frags := func(b []byte, pd *dicom.Element) [][]byte {
				var out [][]byte
				for _, fr := range pd.Fragments {
					if fr.Data != nil {
						out = append(out, fr.Data)
					} else {
						out = append(out, b[fr.Offset:fr.Offset+int64(fr.Length)])
					}
				}
				return out
			}
			a, b := frags(file, in.PixelData), frags(out, f.PixelData)
			if len(a) == 0 || len(a) != len(b) {
				t.Fatalf("%d fragments, was %d", len(b), len(a))
			}
			for i := range a {
				if !bytes.Equal(a[i], b[i]) {
					t.Errorf("fragment %d differs", i)
				}
			}
			if _, err := exec.LookPath("dcmdump"); err == nil {
				p := filepath.Join(t.TempDir(), "out.dcm")
				os.WriteFile(p, out, 0o600)
				if o, err := exec.Command("dcmdump", "+P", "0010,0020", p).CombinedOutput(); err != nil || !strings.Contains(string(o), "H0001") {
					t.Errorf("dcmdump: %v %s", err, o)
				}
			}
		})
	}
}
