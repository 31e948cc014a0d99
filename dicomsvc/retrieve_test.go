package dicomsvc_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"renkei"
	"renkei/archive"
	"renkei/dicom"
	"renkei/dimse"
	"renkei/internal/dicomtest"
)

// selectSamples returns the samples of the studies named by their first sample's name prefix ("ct", "sc"…).
func selectSamples(files []dicomtest.Sample, prefixes ...string) (out []dicomtest.Sample, studies []string) {
	for _, s := range files {
		for _, p := range prefixes {
			if strings.HasPrefix(s.Name, p+"-") {
				out = append(out, s)
				if !strings.Contains(strings.Join(studies, `\`), s.StudyInstanceUID) {
					studies = append(studies, s.StudyInstanceUID)
				}
			}
		}
	}
	return out, studies
}

// checkReceived checks that every sample arrived: as stored, byte for byte, when it came in the stored transfer
// syntax; otherwise in wantTS with the same elements and the pixels the archive's decoders give (and, for lossless
// samples, the pixels of the uncompressed original).
func checkReceived(t *testing.T, e *env, files []dicomtest.Sample, got map[string]parsed, wantTS func(stored string) string) {
	t.Helper()
	if len(got) != len(files) {
		t.Errorf("received %d instances, want %d", len(got), len(files))
	}
	byName := map[string]dicomtest.Sample{}
	for _, s := range files {
		byName[s.Name] = s
	}
	for _, s := range files {
		r, ok := got[s.SOPInstanceUID]
		if !ok {
			t.Errorf("%s: not received", s.Name)
			continue
		}
		rec, stored := e.stored(s.SOPInstanceUID)
		ts := r.file.TransferSyntaxUID
		if want := wantTS(rec.TransferSyntaxUID); ts != want {
			t.Errorf("%s: received in %s, want %s (stored %s)", s.Name, ts, want, rec.TransferSyntaxUID)
			continue
		}
		if ts == rec.TransferSyntaxUID {
			if sum(r.dataSet) != sum(stored.dataSet) {
				t.Errorf("%s: received data set differs from the stored one", s.Name)
			}
			continue
		}
		recv := loadAllBytes(t, r.file.Meta, r.dataSet)
		orig := loadAllBytes(t, stored.file.Meta, stored.dataSet)
		skip := map[dicom.Tag]bool{dicom.PixelData: true, dicom.PhotometricInterpretation: true, dicom.PlanarConfiguration: true,
			dicom.LossyImageCompression: true, dicom.ExtendedOffsetTable: true, dicom.ExtendedOffsetTableLengths: true}
		compareDataSets(t, s.Name, orig, recv, skip)
		// The pixels are those the archive's decoders give…
		o, err := e.archive.Open(e.ctx(), rec, true, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		var pixels []byte
		for n := 1; n <= o.NumberOfFrames(); n++ {
			f, _, err := o.DecodedFrame(n)
			if err != nil {
				t.Fatalf("%s frame %d: %v", s.Name, n, err)
			}
			pixels = append(pixels, f...)
		}
		o.Close()
		if len(pixels)%2 == 1 {
			pixels = append(pixels, 0)
		}
		pd := recv.Get(dicom.PixelData)
		if pd == nil || !bytes.Equal(pd.Value, pixels) {
			t.Errorf("%s: received pixel data differs from the decoded stored pixels", s.Name)
			continue
		}
		// …and, for lossless compression, those of the uncompressed file it was made from.
		src, ok := byName[s.Source]
		if s.Lossy || !ok {
			continue
		}
		srcDS := loadAll(t, src.Path)
		if srcDS.String(dicom.PhotometricInterpretation) == recv.String(dicom.PhotometricInterpretation) &&
			srcDS.String(dicom.PlanarConfiguration) == recv.String(dicom.PlanarConfiguration) &&
			!bytes.Equal(srcDS.Get(dicom.PixelData).Value, pd.Value) {
			t.Errorf("%s: received pixel data differs from the original %s", s.Name, src.Name)
		}
	}
}

func uncompressed(explicit string) func(string) string {
	return func(stored string) string {
		if stored == dicom.ExplicitVRLittleEndian || stored == dicom.ImplicitVRLittleEndian || stored == dicom.ExplicitVRBigEndian {
			return stored
		}
		return explicit
	}
}

func TestMovescu(t *testing.T) {
	e, files := queryEnv(t)
	tests := []struct {
		name    string
		flags   []string // storescp's
		studies []string
		wantTS  func(stored string) string
	}{
		{"destination accepts every syntax: bytes as stored", []string{"+xa"}, []string{"ct", "mr"}, func(s string) string { return s }},
		{"destination accepts uncompressed only: decoded to Explicit VR Little Endian", nil, []string{"ct", "sc"}, uncompressed(dicom.ExplicitVRLittleEndian)},
		{"destination accepts Implicit VR Little Endian only", []string{"+xi"}, []string{"us", "sc-signed12", "cr"},
			func(string) string { return dicom.ImplicitVRLittleEndian }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			aet := "STORESCP" + strconv.Itoa(i)
			addr, dir := dicomtest.StartStorescp(t, aet, tc.flags...)
			_, port, _ := net.SplitHostPort(addr)
			p, _ := strconv.Atoi(port)
			e.register(renkei.AE{Title: aet, Host: "127.0.0.1", Port: p})
			want, studies := selectSamples(files, tc.studies...)
			run(t, "movescu", "-S", "-aec", "RENKEI", "-aem", aet, "-k", "QueryRetrieveLevel=STUDY",
				"-k", "StudyInstanceUID="+strings.Join(studies, `\`), e.host, e.port)
			checkReceived(t, e, want, receivedFiles(t, dir), tc.wantTS)
		})
	}

	t.Run("unregistered destination", func(t *testing.T) {
		e.register(renkei.AE{Title: "NOPORT", Host: "127.0.0.1"}) // registered, but not as a destination
		a, err := dimse.Dial(context.Background(), e.addr, "MOVESCU", "RENKEI", []dimse.PresentationContext{
			{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Release(context.Background())
		id := studyKeys(files[0].StudyInstanceUID)
		for _, dest := range []string{"NOWHERE", "NOPORT"} {
			res, _ := a.Move(context.Background(), dimse.StudyRootQueryRetrieveInformationModelMove, dest, id)
			if res.Status.Code != dimse.StatusMoveDestinationUnknown {
				t.Errorf("C-MOVE to %s: %v, want 0xA801", dest, res.Status)
			}
		}
		// A PatientID alone names two people here (P0001 of HOSP_A and of HOSP_B): refused, not both sent.
		e.register(renkei.AE{Title: "NOWHERE", Host: "127.0.0.1", Port: freePort(t)})
		pa, err := dimse.Dial(context.Background(), e.addr, "MOVESCU", "RENKEI", []dimse.PresentationContext{
			{AbstractSyntax: dimse.PatientRootQueryRetrieveInformationModelMove, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
		if err != nil {
			t.Fatal(err)
		}
		defer pa.Release(context.Background())
		patient := &dicom.DataSet{}
		patient.SetString(0x00080052, "CS", "PATIENT")
		patient.SetString(dicom.PatientID, "LO", "P0001")
		res, _ := pa.Move(context.Background(), dimse.PatientRootQueryRetrieveInformationModelMove, "NOWHERE", patient)
		if res.Status.Code != dimse.StatusDataSetDoesNotMatchSOPClass || !strings.Contains(res.Status.ErrorComment, "IssuerOfPatientID") {
			t.Errorf("C-MOVE of an ambiguous PatientID: %v, want 0xA900", res.Status)
		}
		// A retrieve without the unique key of its level is refused.
		bad := &dicom.DataSet{}
		bad.SetString(0x00080052, "CS", "SERIES")
		bad.SetString(dicom.StudyInstanceUID, "UI", files[0].StudyInstanceUID)
		res, _ = a.Move(context.Background(), dimse.StudyRootQueryRetrieveInformationModelMove, "NOWHERE", bad)
		if res.Status.Code != dimse.StatusDataSetDoesNotMatchSOPClass {
			t.Errorf("C-MOVE without SeriesInstanceUID: %v, want 0xA900", res.Status)
		}
	})
}

func TestGetscu(t *testing.T) {
	e, files := queryEnv(t)
	ct, _ := selectSamples(files, "ct")
	tests := []struct {
		name   string
		args   []string
		want   []dicomtest.Sample
		wantTS func(string) string
	}{
		{"SERIES, getscu's default syntaxes", []string{"-S", "-k", "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID=" + ct[0].StudyInstanceUID,
			"-k", "SeriesInstanceUID=" + ct[0].SeriesInstanceUID}, ct, func(string) string { return dicom.ExplicitVRLittleEndian }},
	}
	p3, _ := selectSamples(files, "sc-signed12")
	tests = append(tests, struct {
		name   string
		args   []string
		want   []dicomtest.Sample
		wantTS func(string) string
	}{"PATIENT level in Patient Root", []string{"-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=" + p3[0].PatientID},
		p3, func(string) string { return dicom.ExplicitVRLittleEndian }})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			run(t, "getscu", append(append([]string{"-aec", "RENKEI", "+B", "-od", dir}, tc.args...), e.host, e.port)...)
			checkReceived(t, e, tc.want, receivedFiles(t, dir), tc.wantTS)
		})
	}
}

// getStore keeps what a C-GET sends back, by SOP Instance UID.
type getStore struct {
	got map[string]parsed
}

func (g *getStore) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
	b, err := io.ReadAll(data)
	if err != nil {
		return dimse.Failure(dimse.StatusOutOfResources, err.Error())
	}
	meta := &dicom.DataSet{}
	meta.SetString(dicom.TransferSyntaxUID, "UI", req.TransferSyntaxUID)
	g.got[req.SOPInstanceUID] = parsed{file: &dicom.File{Meta: meta, TransferSyntaxUID: req.TransferSyntaxUID}, dataSet: b}
	return dimse.Success()
}

// A C-GET requestor that accepts only Implicit VR Little Endian, the syntax every application must take (PS3.5
// 10.1): getscu cannot be made to propose it alone, so renkei's own SCU does.
func TestGetImplicitOnly(t *testing.T) {
	e, files := queryEnv(t)
	want, studies := selectSamples(files, "ct", "cr", "us", "sc")
	pcs := []dimse.PresentationContext{{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}}}
	seen := map[string]bool{}
	for _, s := range want {
		if !seen[s.SOPClassUID] {
			seen[s.SOPClassUID] = true
			pcs = append(pcs, dimse.PresentationContext{AbstractSyntax: s.SOPClassUID, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}, SCPRole: true})
		}
	}
	a, err := dimse.Dial(context.Background(), e.addr, "GETSCU", "RENKEI", pcs)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(context.Background())
	id := studyKeys(strings.Join(studies, `\`))
	store := &getStore{got: map[string]parsed{}}
	res, err := a.Get(context.Background(), dimse.StudyRootQueryRetrieveInformationModelGet, id, store)
	if err != nil || !res.Status.IsSuccess() || int(res.SubOperations.Completed) != len(want) {
		t.Fatalf("C-GET: %v %+v %v", res.Status, res.SubOperations, err)
	}
	checkReceived(t, e, want, store.got, func(string) string { return dicom.ImplicitVRLittleEndian })
}

// An object whose syntax renkei cannot decode goes only to peers that accept that syntax: for others the
// sub-operation fails, and nothing is sent in its place.
func TestGetUndecodableSyntax(t *testing.T) {
	files := samples(t)
	e := newEnv(t)
	var src dicomtest.Sample
	for _, s := range files {
		if s.Name == "ct-jpeg-ls" {
			src = s
		}
	}
	// The JPEG-LS file relabelled as MPEG2 video (PS3.5 A.4.5), which renkei's codecs do not decode.
	const mpeg2 = "1.2.840.10008.1.2.4.100"
	f, err := os.Open(src.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parsedFile, err := dicom.Parse(f, dicom.DefaultReadOptions)
	if err != nil {
		t.Fatal(err)
	}
	parsedFile.Meta.SetString(dicom.TransferSyntaxUID, "UI", mpeg2)
	var buf bytes.Buffer
	if err := dicom.WriteFile(&buf, parsedFile.Meta, parsedFile.DataSet, f, nil); err != nil {
		t.Fatal(err)
	}
	if res := e.archive.Store(e.ctx(), &buf, archive.StoreRequest{Source: "test"}); res.Failure != 0 {
		t.Fatalf("store: %v", res.Err)
	}
	get := func(ts string) (dimse.RetrieveResult, *getStore) {
		a, err := dimse.Dial(context.Background(), e.addr, "GETSCU", "RENKEI", []dimse.PresentationContext{
			{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}},
			{AbstractSyntax: src.SOPClassUID, TransferSyntaxes: []string{ts}, SCPRole: true}})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Release(context.Background())
		id := &dicom.DataSet{}
		id.SetString(0x00080052, "CS", "IMAGE")
		id.SetString(dicom.StudyInstanceUID, "UI", src.StudyInstanceUID)
		id.SetString(dicom.SeriesInstanceUID, "UI", src.SeriesInstanceUID)
		id.SetString(dicom.SOPInstanceUID, "UI", src.SOPInstanceUID)
		store := &getStore{got: map[string]parsed{}}
		res, _ := a.Get(context.Background(), dimse.StudyRootQueryRetrieveInformationModelGet, id, store)
		return res, store
	}
	for _, ts := range []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian} {
		res, store := get(ts)
		if res.Status.Code != dimse.StatusOutOfResourcesSubOps || res.SubOperations.Failed != 1 || len(store.got) != 0 ||
			len(res.FailedSOPInstanceUIDs) != 1 || res.FailedSOPInstanceUIDs[0] != src.SOPInstanceUID {
			t.Errorf("C-GET in %s: %v %+v, failed %v, received %d", ts, res.Status, res.SubOperations, res.FailedSOPInstanceUIDs, len(store.got))
		}
	}
	res, store := get(mpeg2)
	_, stored := e.stored(src.SOPInstanceUID)
	if !res.Status.IsSuccess() || sum(store.got[src.SOPInstanceUID].dataSet) != sum(stored.dataSet) {
		t.Errorf("C-GET in the stored syntax: %v %+v", res.Status, res.SubOperations)
	}
}
