package dicomsvc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"renkei"
	"renkei/dicom"
	"renkei/dimse"
	"renkei/internal/dicomtest"
)

// storescuFlags makes storescu propose each file's own transfer syntax, so that every file goes as stored.
var storescuFlags = map[string]string{
	dicom.ImplicitVRLittleEndian:         "-xi",
	dicom.ExplicitVRBigEndian:            "-xb",
	dicom.DeflatedExplicitVRLittleEndian: "-xd",
	dicom.JPEGLosslessSV1:                "-xs",
	dicom.JPEGLSLossless:                 "-xt",
	dicom.RLELossless:                    "-xr",
	dicom.JPEG2000Lossless:               "-xv",
	dicom.JPEGBaseline8Bit:               "-xy",
	dicom.JPEGExtended12Bit:              "-xx",
	dicom.ExplicitVRLittleEndian:         "",
}

// TestStorescuEveryTransferSyntax sends the whole dataset with dcmtk's storescu, one association per transfer
// syntax (several files each), and reads every instance back through the archive: the stored data set is the
// file's, byte for byte, behind a File Meta Information that names the sender.
func TestStorescuEveryTransferSyntax(t *testing.T) {
	files := samples(t)
	e := newEnv(t)
	byTS := map[string][]string{}
	for _, s := range files {
		byTS[s.TransferSyntaxUID] = append(byTS[s.TransferSyntaxUID], s.Path)
	}
	for ts, paths := range byTS {
		flag, ok := storescuFlags[ts]
		if !ok {
			t.Fatalf("no storescu flag for %s", ts)
		}
		args := []string{"-aec", "RENKEI"}
		if flag != "" {
			args = append(args, flag)
		}
		run(t, "storescu", append(append(args, e.host, e.port), paths...)...)
	}
	for _, s := range files {
		rec, got := e.stored(s.SOPInstanceUID)
		want := readFile(t, s.Path)
		if rec.TransferSyntaxUID != s.TransferSyntaxUID {
			t.Errorf("%s: stored as %s, sent as %s", s.Name, rec.TransferSyntaxUID, s.TransferSyntaxUID)
		}
		if sum(got.dataSet) != sum(want.dataSet) {
			t.Errorf("%s: stored data set (%d bytes) differs from the file's (%d bytes)", s.Name, len(got.dataSet), len(want.dataSet))
		}
		meta := got.file.Meta
		for tag, v := range map[dicom.Tag]string{dicom.SourceApplicationEntityTitle: "STORESCU", dicom.MediaStorageSOPInstanceUID: s.SOPInstanceUID,
			dicom.MediaStorageSOPClassUID: s.SOPClassUID, dicom.TransferSyntaxUID: s.TransferSyntaxUID,
			dicom.ImplementationClassUID: dicom.RenkeiImplementationClassUID} {
			if g := meta.String(tag); g != v {
				t.Errorf("%s: meta %s = %q, want %q", s.Name, tag, g, v)
			}
		}
		// The issuer of patient IDs comes from the object, else from the sender's registry entry.
		wantIssuer := s.IssuerOfPatientID
		if wantIssuer == "" {
			wantIssuer = "ISSUER_STORESCU"
		}
		if rec.Series.Study.Patient.Issuer != wantIssuer {
			t.Errorf("%s: patient issuer %q, want %q", s.Name, rec.Series.Study.Patient.Issuer, wantIssuer)
		}
	}

	// Sending everything again is a duplicate of identical bytes: success, nothing changes.
	var all []string
	for _, s := range files {
		if s.TransferSyntaxUID == dicom.ExplicitVRLittleEndian {
			all = append(all, s.Path)
		}
	}
	run(t, "storescu", append([]string{"-aec", "RENKEI", e.host, e.port}, all...)...)
}

// Without a flag that proposes the file's syntax, storescu sends Implicit VR files as they are and converts Big
// Endian ones to the Explicit VR Little Endian that renkei prefers: the archive stores what arrived, which holds the
// file's elements.
func TestStorescuConverted(t *testing.T) {
	files := samples(t)
	e := newEnv(t)
	var sent []dicomtest.Sample
	var args []string
	for _, s := range files {
		if s.TransferSyntaxUID == dicom.ImplicitVRLittleEndian || s.TransferSyntaxUID == dicom.ExplicitVRBigEndian {
			sent = append(sent, s)
			args = append(args, s.Path)
		}
	}
	run(t, "storescu", append([]string{"-aec", "RENKEI", e.host, e.port}, args...)...)
	for _, s := range sent {
		rec, got := e.stored(s.SOPInstanceUID)
		if rec.TransferSyntaxUID == s.TransferSyntaxUID {
			if sum(got.dataSet) != sum(readFile(t, s.Path).dataSet) {
				t.Errorf("%s: stored as sent, but the bytes differ", s.Name)
			}
			continue
		}
		if rec.TransferSyntaxUID != dicom.ExplicitVRLittleEndian {
			t.Errorf("%s: stored as %s", s.Name, rec.TransferSyntaxUID)
		}
		compareDataSets(t, s.Name, loadAll(t, s.Path), loadAllBytes(t, got.file.Meta, got.dataSet), nil)
	}
}

// C-STORE statuses, sent with renkei's own SCU so that the status codes can be read.
func TestStoreStatuses(t *testing.T) {
	e := newEnv(t)
	ct := sample(t, "ct-explicit-le")
	f := readFile(t, ct.Path)
	private := "1.3.6.1.4.1.99999.7.1" // a private storage SOP class renkei does not know
	privateDS := withString(t, f.dataSet, dicom.SOPClassUID, private)
	privateDS = withString(t, privateDS, dicom.SOPInstanceUID, dicomtest.UID("private/instance"))
	other := dicomtest.UID("other/instance")
	// The same study UID under another patient: the index refuses it whole (PS3.4 B.2.3 0xA900).
	otherPatient := dicomtest.UID("otherpatient/instance")
	otherPatientDS := withString(t, withString(t, f.dataSet, dicom.PatientID, "SOMEONE-ELSE"), dicom.SOPInstanceUID, otherPatient)
	otherStudy := dicomtest.UID("otherstudy/instance")
	otherStudyDS := withString(t, withString(t, f.dataSet, dicom.StudyInstanceUID, dicomtest.UID("otherstudy")), dicom.SOPInstanceUID, otherStudy)
	changed := bytes.Clone(f.dataSet)
	changed[len(changed)-1] ^= 0xFF // same UIDs, other pixels

	send := func(t *testing.T, calling, class, instance string, ds []byte) dimse.Status {
		t.Helper()
		a, err := dimse.Dial(context.Background(), e.addr, calling, "RENKEI", []dimse.PresentationContext{
			{AbstractSyntax: ct.SOPClassUID, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}},
			{AbstractSyntax: private, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Release(context.Background())
		st, err := a.Store(context.Background(), class, instance, dicom.ExplicitVRLittleEndian, bytes.NewReader(ds))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	tests := []struct {
		name            string
		calling         string
		class, instance string
		ds              []byte
		want            uint16
		comment         string
	}{
		{"new instance", "GOSCU", ct.SOPClassUID, ct.SOPInstanceUID, f.dataSet, 0x0000, ""},
		{"same bytes again", "GOSCU", ct.SOPClassUID, ct.SOPInstanceUID, f.dataSet, 0x0000, ""},
		{"same data set from another AE (other meta information)", "STORESCU", ct.SOPClassUID, ct.SOPInstanceUID, f.dataSet, 0x0000, ""},
		{"same UID, other content", "GOSCU", ct.SOPClassUID, ct.SOPInstanceUID, changed, 0xA900, "different content"},
		{"command names another instance", "GOSCU", ct.SOPClassUID, other, f.dataSet, 0xA900, "SOP Instance UID"},
		{"command names another SOP class", "GOSCU", private, ct.SOPInstanceUID, f.dataSet, 0xA900, "SOP Class UID"},
		{"study UID of another patient", "GOSCU", ct.SOPClassUID, otherPatient, otherPatientDS, 0xA900, "another patient"},
		{"series UID of another study", "GOSCU", ct.SOPClassUID, otherStudy, otherStudyDS, 0xA900, "another study"},
		{"not a data set", "GOSCU", ct.SOPClassUID, other, []byte("\x08\x00\x16\x00UI\x04\x00garbage that is no DICOM"), 0xC000, ""},
		{"unknown (private) SOP class", "GOSCU", private, dicomtest.UID("private/instance"), privateDS, 0x0000, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := send(t, tc.calling, tc.class, tc.instance, tc.ds)
			if st.Code != tc.want || !strings.Contains(st.ErrorComment, tc.comment) {
				t.Errorf("status %v, want %#04x with a comment about %q", st, tc.want, tc.comment)
			}
		})
	}
	// The refused copies left nothing behind: the first copy is the one stored.
	_, got := e.stored(ct.SOPInstanceUID)
	if sum(got.dataSet) != sum(f.dataSet) {
		t.Error("the stored copy changed")
	}
	for _, uid := range []string{other, otherPatient, otherStudy} {
		if _, err := e.archive.Instances(e.ctx(), "", "", uid); renkei.ErrorKind(err) != renkei.NotFound {
			t.Errorf("refused instance %s: %v", uid, err)
		}
	}
	rec, got := e.stored(dicomtest.UID("private/instance"))
	if rec.SOPClassUID != private || sum(got.dataSet) != sum(privateDS) {
		t.Errorf("private SOP class stored as %s", rec.SOPClassUID)
	}
}

// withString returns an Explicit VR Little Endian data set with a top-level UI/text element's value replaced.
func withString(t *testing.T, ds []byte, tag dicom.Tag, v string) []byte {
	t.Helper()
	if len(v)%2 == 1 {
		v += "\x00"
	}
	off := 0
	for off+8 <= len(ds) {
		g, el := binary.LittleEndian.Uint16(ds[off:]), binary.LittleEndian.Uint16(ds[off+2:])
		vr := string(ds[off+4 : off+6])
		hdr, n := 8, int(binary.LittleEndian.Uint16(ds[off+6:]))
		switch vr {
		case "OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV":
			hdr, n = 12, int(binary.LittleEndian.Uint32(ds[off+8:]))
		}
		if dicom.NewTag(g, el) == tag {
			out := append([]byte(nil), ds[:off+6]...)
			out = binary.LittleEndian.AppendUint16(out, uint16(len(v)))
			out = append(out, v...)
			return append(out, ds[off+hdr+n:]...)
		}
		off += hdr + n
	}
	t.Fatalf("%s not found", tag)
	return nil
}

// loadAll parses a file with every value loaded.
func loadAll(t *testing.T, path string) *dicom.DataSet {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := dicom.Parse(bytes.NewReader(b), allValues)
	if err != nil {
		t.Fatal(err)
	}
	return f.DataSet
}

var allValues = dicom.ReadOptions{BulkThreshold: 1 << 30, MaxDepth: 16, MaxHeaderBytes: 1 << 30, MaxInflated: 1 << 30}

// loadAllBytes parses a data set in the transfer syntax its meta information names, with every value loaded.
func loadAllBytes(t *testing.T, meta *dicom.DataSet, ds []byte) *dicom.DataSet {
	t.Helper()
	d, err := dicom.ParseDataSet(bytes.NewReader(ds), meta.String(dicom.TransferSyntaxUID), allValues)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// compareDataSets checks that two data sets hold the same elements with the same values, group lengths and the tags
// in skip aside.
func compareDataSets(t *testing.T, name string, want, got *dicom.DataSet, skip map[dicom.Tag]bool) {
	t.Helper()
	index := func(ds *dicom.DataSet) map[dicom.Tag]*dicom.Element {
		m := map[dicom.Tag]*dicom.Element{}
		for _, e := range ds.Elements {
			if e.Tag.Element() != 0 && !skip[e.Tag] {
				m[e.Tag] = e
			}
		}
		return m
	}
	w, g := index(want), index(got)
	for tag, we := range w {
		ge, ok := g[tag]
		switch {
		case !ok:
			t.Errorf("%s: %s missing", name, tag)
		case len(we.Items) != len(ge.Items):
			t.Errorf("%s: %s has %d items, want %d", name, tag, len(ge.Items), len(we.Items))
		case we.Items != nil:
			for i := range we.Items {
				compareDataSets(t, name+"/"+tag.String(), we.Items[i], ge.Items[i], skip)
			}
		case !bytes.Equal(dicom.TrimPadding(we.Value, we.VR), dicom.TrimPadding(ge.Value, we.VR)):
			t.Errorf("%s: %s = %d bytes %.40q, want %d bytes %.40q", name, tag, len(ge.Value), ge.Value, len(we.Value), we.Value)
		}
	}
	for tag := range g {
		if _, ok := w[tag]; !ok {
			t.Errorf("%s: unexpected %s", name, tag)
		}
	}
}

// A large object streams through C-STORE into the blob store: the server's heap does not grow with its size.
func TestStoreLargeBoundedMemory(t *testing.T) {
	needTools(t, "storescu")
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "mf.dcm")
	if err := dicomtest.MultiFrame(path, dicomtest.CTOptions{Rows: 512, Cols: 512, Frames: 96, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	want := readFile(t, path)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		var m runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	run(t, "storescu", "-aec", "RENKEI", e.host, e.port, path)
	close(done)
	if _, got := e.stored(want.file.DataSet.String(dicom.SOPInstanceUID)); sum(got.dataSet) != sum(want.dataSet) {
		t.Fatal("stored data set differs")
	}
	size := uint64(len(want.dataSet))
	grew := peak.Load() - min(peak.Load(), base.HeapInuse)
	t.Logf("heap grew by %d KB storing %d MB", grew>>10, size>>20)
	if grew > size/4 {
		t.Errorf("heap grew by %d MB while storing a %d MB object", grew>>20, size>>20)
	}
}

// blockingReader yields its bytes, then blocks until release is closed and fails.
type blockingReader struct {
	r       io.Reader
	release chan struct{}
}

func (b *blockingReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 || err != io.EOF {
		return n, err
	}
	<-b.release
	return 0, errors.New("the modality went away")
}

// TestStoreAbortedAtElementBoundary: a modality's association is aborted in the middle of a C-STORE, after P-DATA
// fragments that happen to end exactly after a whole element, so what arrived parses as a complete data set. The last
// fragment never came (PS3.8 E.2), so nothing may be stored: the modality was never told it was.
func TestStoreAbortedAtElementBoundary(t *testing.T) {
	e := newEnv(t)
	ct := sample(t, "ct-explicit-le")
	f := readFile(t, ct.Path)
	// renkei announces a maximum PDU of 256 KiB: the SCU sends its first P-DATA-TF PDUs once it has read four
	// fragments of 262138 bytes and one byte more (dimse.Association.sendStream). The data set plus a trailing
	// padding element (FFFC,FFFC) fills those four fragments exactly.
	const batch = 4 * (dimse.DefaultMaxPDULength - 6)
	pad := batch - len(f.dataSet) - 12
	if pad < 0 {
		t.Fatalf("the sample's data set has %d bytes, more than one batch", len(f.dataSet))
	}
	ds := append(bytes.Clone(f.dataSet), 0xFC, 0xFF, 0xFC, 0xFF, 'O', 'B', 0, 0, byte(pad), byte(pad>>8), byte(pad>>16), byte(pad>>24))
	ds = append(ds, make([]byte, pad)...)
	ds = append(ds, 0x08) // the start of an element that never comes
	ctx := context.Background()
	a, err := dimse.Dial(ctx, e.addr, "GOSCU", "RENKEI", []dimse.PresentationContext{
		{AbstractSyntax: ct.SOPClassUID, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
	if err != nil {
		t.Fatal(err)
	}
	r := &blockingReader{r: bytes.NewReader(ds), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := a.Store(ctx, ct.SOPClassUID, ct.SOPInstanceUID, dicom.ExplicitVRLittleEndian, r)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the four fragments reach renkei
	a.Abort()
	close(r.release)
	if err := <-done; err == nil {
		t.Fatal("the aborted C-STORE returned a status")
	}
	time.Sleep(300 * time.Millisecond) // were renkei to store it, it would have by now
	if _, err := e.archive.Instances(e.ctx(), "", "", ct.SOPInstanceUID); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("an instance whose last fragment never came was stored: %v", err)
	}
	// Nothing half-written is left in the blob store either.
	filepath.WalkDir(filepath.Join(e.dir, "blobs"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("left in the blob store: %s", path)
		}
		return nil
	})
}
