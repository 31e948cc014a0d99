package dimse_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"renkei/dicom"
	"renkei/dimse"
	"renkei/internal/dicomtest"
)

// Tests against dcmtk's tools, the DICOM peers of DESIGN.md. They are skipped when dcmtk is not installed.

var (
	startStorescp = dicomtest.StartStorescp
	needTools     = dicomtest.NeedTools
	run           = dicomtest.Run
	runErr        = dicomtest.RunErr
)

func hostPort(t testing.TB, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// sample is a DICOM file written for the tests, with the bytes of its data set (after the File Meta Information).
type sample struct {
	path, sopClass, sopInstance, ts string
	dataSet                         []byte
}

func readSample(t testing.TB, path string) sample {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := dicom.Parse(bytes.NewReader(b), dicom.DefaultReadOptions)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return sample{path: path, sopClass: f.Meta.String(dicom.MediaStorageSOPClassUID), sopInstance: f.Meta.String(dicom.MediaStorageSOPInstanceUID),
		ts: f.TransferSyntaxUID, dataSet: b[f.DataSetOffset:]}
}

// samples writes CT files with dicomtest.CT and converts some with dcmtk and GDCM: each has its own SOP instance.
func samples(t testing.TB) map[string]sample {
	t.Helper()
	needTools(t, "dcmcjpeg", "dcmcjpls", "dcmcrle", "dcmconv")
	dir := t.TempDir()
	ct := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := dicomtest.CT(p, dicomtest.CTOptions{Rows: 64, Cols: 64, InstanceNumber: n, Seed: 7}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	out := map[string]sample{}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("explicit%d", i)
		out[name] = readSample(t, ct(name+".dcm", i))
	}
	convert := func(name string, n int, tool string, args ...string) {
		src := ct(name+"-src.dcm", n)
		dst := filepath.Join(dir, name+".dcm")
		run(t, tool, append(append(args, src), dst)...)
		out[name] = readSample(t, dst)
	}
	convert("jpeg-lossless", 10, "dcmcjpeg") // process 14 SV1 (1.2.840.10008.1.2.4.70), dcmcjpeg's default
	convert("jpeg-ls", 11, "dcmcjpls")
	convert("rle", 12, "dcmcrle")
	convert("implicit", 13, "dcmconv", "+ti")
	if _, err := exec.LookPath("gdcmconv"); err == nil {
		convert("j2k", 14, "gdcmconv", "--j2k")
	}
	return out
}

func TestDcmtkEchoscu(t *testing.T) {
	needTools(t, "echoscu")
	addr := serve(t, &dimse.Server{AETitle: "RENKEI"})
	h, p := hostPort(t, addr)
	run(t, "echoscu", "-aet", "ECHOSCU", "-aec", "RENKEI", h, p)
	run(t, "echoscu", "--repeat", "5", "-aec", "RENKEI", h, p)
	// A wrong called AE title is rejected; echoscu reports it and fails.
	cmd := exec.Command("echoscu", "-aec", "WRONG", h, p)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "Called AE Title Not Recognized") {
		t.Errorf("echoscu to a wrong AE title: %v\n%s", err, out)
	}
}

func TestDcmtkStorescu(t *testing.T) {
	needTools(t, "storescu")
	files := samples(t)
	tests := []struct {
		name  string
		flags []string
		files []string
	}{
		{"uncompressed, several files", nil, []string{"explicit1", "explicit2", "explicit3"}},
		{"JPEG lossless proposed (-xs)", []string{"-xs"}, []string{"jpeg-lossless", "explicit1"}},
		{"JPEG-LS proposed (-xt)", []string{"-xt"}, []string{"jpeg-ls"}},
		{"RLE proposed (-xr)", []string{"-xr"}, []string{"rle", "explicit2"}},
		{"implicit only (-xi)", []string{"-xi"}, []string{"implicit"}},
		{"JPEG 2000 lossless proposed (-xv)", []string{"-xv"}, []string{"j2k"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := newMemStore()
			addr := serve(t, &dimse.Server{AETitle: "RENKEI", Handlers: dimse.Handlers{Store: store}})
			h, p := hostPort(t, addr)
			args := append([]string{"-aet", "STORESCU", "-aec", "RENKEI"}, tc.flags...)
			args = append(args, h, p)
			for _, name := range tc.files {
				s, ok := files[name]
				if !ok {
					t.Skipf("no %s sample (gdcmconv missing?)", name)
				}
				args = append(args, s.path)
			}
			run(t, "storescu", args...)
			for _, name := range tc.files {
				s := files[name]
				got := store.get(s.sopInstance)
				if !bytes.Equal(got, s.dataSet) {
					t.Errorf("%s: stored %d bytes, the file's data set has %d (or they differ)", name, len(got), len(s.dataSet))
				}
				if ts := store.syntax(s.sopInstance); ts != s.ts {
					t.Errorf("%s: received in %s, the file is %s", name, ts, s.ts)
				}
			}
		})
	}
}

// storescu's sending of a large object: 8 MB through 16 KiB PDUs, one association.
func TestDcmtkStorescuLarge(t *testing.T) {
	needTools(t, "storescu")
	p := filepath.Join(t.TempDir(), "mf.dcm")
	if err := dicomtest.MultiFrame(p, dicomtest.CTOptions{Rows: 512, Cols: 512, Frames: 16, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	s := readSample(t, p)
	store := newMemStore()
	addr := serve(t, &dimse.Server{Handlers: dimse.Handlers{Store: store}, MaxPDULength: 16384})
	h, port := hostPort(t, addr)
	run(t, "storescu", "-aec", "RENKEI", h, port, p)
	if !bytes.Equal(store.get(s.sopInstance), s.dataSet) {
		t.Errorf("stored %d bytes, want %d", len(store.get(s.sopInstance)), len(s.dataSet))
	}
}

func TestDcmtkFindscu(t *testing.T) {
	needTools(t, "findscu")
	addr := serve(t, &dimse.Server{AETitle: "RENKEI", Handlers: dimse.Handlers{Find: studyFind(2)}})
	h, p := hostPort(t, addr)
	dir := t.TempDir()
	run(t, "findscu", "-S", "-aec", "RENKEI", "-X", "-od", dir,
		"-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName", "-k", "StudyInstanceUID", h, p)
	got, err := filepath.Glob(filepath.Join(dir, "rsp*.dcm"))
	if err != nil || len(got) != 2 {
		t.Fatalf("%d responses (%v), want 2", len(got), err)
	}
	for _, path := range got {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		file, err := dicom.Parse(f, dicom.DefaultReadOptions)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if file.DataSet.String(dicom.PatientName) != "Yamada^Taro" || !strings.HasPrefix(file.DataSet.String(dicom.StudyInstanceUID), "1.2.3.") {
			t.Errorf("%s: %q %q", path, file.DataSet.String(dicom.PatientName), file.DataSet.String(dicom.StudyInstanceUID))
		}
	}
	// Implicit VR Little Endian only, and the Patient Root model.
	run(t, "findscu", "-P", "-xi", "-aec", "RENKEI", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=X", h, p)
}

// received reads the files storescp wrote, by SOP instance UID.
func received(t testing.TB, dir string) map[string]sample {
	t.Helper()
	out := map[string]sample{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		s := readSample(t, filepath.Join(dir, e.Name()))
		out[s.sopInstance] = s
	}
	return out
}

func TestClientAgainstStorescp(t *testing.T) {
	files := samples(t)
	addr, dir := startStorescp(t, "STORESCP", "+xa") // accept all supported transfer syntaxes
	var pcs []dimse.PresentationContext
	pcs = append(pcs, dimse.PresentationContext{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()})
	names := []string{"explicit1", "explicit2", "jpeg-lossless", "jpeg-ls", "rle", "implicit"}
	for _, name := range names {
		s := files[name]
		pcs = append(pcs, dimse.PresentationContext{AbstractSyntax: s.sopClass, TransferSyntaxes: []string{s.ts}})
	}
	d := dimse.Dialer{Logger: testLogger(), MaxPDULength: 16384}
	a, err := d.Dial(context.Background(), addr, "RENKEI", "STORESCP", pcs)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if st, err := a.Echo(ctx); err != nil || !st.IsSuccess() {
		t.Fatalf("echo: %v %v", st, err)
	}
	for _, name := range names {
		s := files[name]
		f, err := os.Open(s.path)
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.Store(ctx, s.sopClass, s.sopInstance, s.ts, io.NewSectionReader(f, int64(len(mustRead(t, s.path))-len(s.dataSet)), int64(len(s.dataSet))))
		f.Close()
		if err != nil || !st.IsSuccess() {
			t.Fatalf("%s: %v %v", name, st, err)
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	got := received(t, dir)
	for _, name := range names {
		s := files[name]
		r, ok := got[s.sopInstance]
		if !ok {
			t.Errorf("%s: not received", name)
			continue
		}
		if r.ts != s.ts || !bytes.Equal(r.dataSet, s.dataSet) {
			t.Errorf("%s: received in %s, %d bytes; sent %s, %d bytes (or the bytes differ)", name, r.ts, len(r.dataSet), s.ts, len(s.dataSet))
		}
	}
}

// C-ECHO with a storescp that has only Verification (no storage context proposed).
func TestClientEchoStorescp(t *testing.T) {
	addr, _ := startStorescp(t, "STORESCP")
	a, err := dimse.Dial(context.Background(), addr, "RENKEI", "STORESCP",
		[]dimse.PresentationContext{{AbstractSyntax: dimse.Verification, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if st, err := a.Echo(context.Background()); err != nil || !st.IsSuccess() {
			t.Fatalf("echo %d: %v %v", i, st, err)
		}
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t testing.TB, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSampleSyntaxes(t *testing.T) {
	want := map[string]string{"explicit1": dicom.ExplicitVRLittleEndian, "jpeg-lossless": dicom.JPEGLosslessSV1,
		"jpeg-ls": dicom.JPEGLSLossless, "rle": dicom.RLELossless, "implicit": dicom.ImplicitVRLittleEndian, "j2k": dicom.JPEG2000Lossless}
	for name, s := range samples(t) {
		if w, ok := want[name]; ok && s.ts != w {
			t.Errorf("%s is in %s, want %s", name, s.ts, w)
		}
	}
}
