package dicomsvc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
	"renkei/dicom/charset"
	"renkei/dicomsvc"
	"renkei/dimse"
	"renkei/internal/dicomtest"
)

// queryEnv is an archive holding the whole dataset. The H.3.2 MR goes first so that the patient keeps the H.3.1 name
// (the index shows the name of the last object stored), which has romaji, kanji and hiragana.
func queryEnv(t *testing.T, configure ...func(*dicomsvc.Service)) (*env, []dicomtest.Sample) {
	files := samples(t)
	e := newEnv(t, configure...)
	var first, rest []dicomtest.Sample
	for _, s := range files {
		if strings.HasPrefix(s.Name, "mr-") {
			first = append(first, s)
		} else {
			rest = append(rest, s)
		}
	}
	e.store(first...)
	e.store(rest...)
	return e, files
}

// findscu runs dcmtk's findscu with the query keys (and a query file when not empty) and returns the identifiers of
// the responses in the order they came, as findscu wrote them (--extract).
func (e *env) findscu(t *testing.T, model, queryFile string, keys ...string) []*dicom.DataSet {
	t.Helper()
	dir := t.TempDir()
	args := []string{model, "-aec", "RENKEI", "-X", "-od", dir}
	for _, k := range keys {
		args = append(args, "-k", k)
	}
	args = append(args, e.host, e.port)
	if queryFile != "" {
		args = append(args, queryFile)
	}
	run(t, "findscu", args...)
	paths, err := filepath.Glob(filepath.Join(dir, "rsp*.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	var out []*dicom.DataSet
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := dicom.Parse(bytes.NewReader(b), allValues)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, f.DataSet)
	}
	return out
}

// queryFile writes a C-FIND identifier with dcmtk's dump2dcm from dump lines, whose values may hold raw bytes
// (escape sequences, JIS X 0201 katakana) exactly as a Japanese workstation sends them.
func queryFile(t *testing.T, lines ...string) string {
	t.Helper()
	dir := t.TempDir()
	dump := filepath.Join(dir, "q.dump")
	if err := os.WriteFile(dump, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "q.dcm")
	run(t, "dump2dcm", dump, out)
	return out
}

// tags lists the tags of a response, group 0002 aside.
func tags(ds *dicom.DataSet) []string {
	var out []string
	for _, e := range ds.Elements {
		out = append(out, dicom.Keyword(e.Tag))
	}
	return out
}

// text decodes a response value with the response's SpecificCharacterSet.
func text(ds *dicom.DataSet, t dicom.Tag, vr string) string {
	s, _ := charset.New(ds.Strings(dicom.SpecificCharacterSet), "").Decode(ds.Raw(t), vr)
	return strings.TrimSpace(s)
}

// column returns one value of every response, sorted.
func column(rsps []*dicom.DataSet, t dicom.Tag, vr string) []string {
	var out []string
	for _, ds := range rsps {
		out = append(out, text(ds, t, vr))
	}
	sort.Strings(out)
	return out
}

func studyUIDs(files []dicomtest.Sample, match func(dicomtest.Sample) bool) []string {
	var out []string
	for _, s := range files {
		if match(s) && !slices.Contains(out, s.StudyInstanceUID) {
			out = append(out, s.StudyInstanceUID)
		}
	}
	sort.Strings(out)
	return out
}

func TestFindscuLevels(t *testing.T) {
	e, files := queryEnv(t)
	ct := files[0]
	if ct.Name != "ct-explicit-le" {
		t.Fatalf("first sample is %s", ct.Name)
	}
	ctSeries := 0
	for _, s := range files {
		if s.SeriesInstanceUID == ct.SeriesInstanceUID {
			ctSeries++
		}
	}
	p0001 := studyUIDs(files, func(s dicomtest.Sample) bool { return s.PatientID == "P0001" })
	hospA := studyUIDs(files, func(s dicomtest.Sample) bool { return s.IssuerOfPatientID == "HOSP_A" })
	var crUS []string
	seen := map[string]bool{}
	for _, s := range files {
		if (s.Modality == "CR" || s.Modality == "US") && !seen[s.SeriesInstanceUID] {
			seen[s.SeriesInstanceUID] = true
			crUS = append(crUS, s.Modality)
		}
	}
	in2024 := studyUIDs(files, func(s dicomtest.Sample) bool { return s.PatientID != "P0002" && s.PatientID != "P0003" })

	t.Run("PATIENT level groups studies by issuer and patient ID", func(t *testing.T) {
		rsps := e.findscu(t, "-P", "", "QueryRetrieveLevel=PATIENT", "PatientName", "PatientID", "IssuerOfPatientID",
			"NumberOfPatientRelatedStudies", "NumberOfPatientRelatedInstances")
		var got []string
		for _, ds := range rsps {
			got = append(got, fmt.Sprintf("%s/%s: %s studies, %s instances, %s", ds.String(dicom.IssuerOfPatientID), ds.String(dicom.PatientID),
				ds.String(dicom.NewTag(0x0020, 0x1200)), ds.String(dicom.NewTag(0x0020, 0x1204)), text(ds, dicom.PatientName, "PN")))
		}
		sort.Strings(got)
		want := []string{
			"CLINIC_X/P0002: 1 studies, 8 instances, Buc^Jérôme",
			"CLINIC_X/P0003: 1 studies, 4 instances, Tanaka^Yuki",
			"HOSP_A/P0001: 2 studies, 12 instances, Yamada^Tarou=山田^太郎=やまだ^たろう",
			"HOSP_B/P0001: 1 studies, 9 instances, Takahashi^Hanako=髙橋^花子=たかはし^はなこ",
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("patients (-want +got):\n%s", d)
		}
		// Exactly the keys asked for, plus the level; the request had no character set and the names are not ASCII.
		wantTags := []string{"SpecificCharacterSet", "QueryRetrieveLevel", "PatientName", "PatientID", "IssuerOfPatientID",
			"NumberOfPatientRelatedStudies", "NumberOfPatientRelatedInstances"}
		for _, ds := range rsps {
			wantTags := wantTags
			wantSCS := "ISO_IR 192"
			if ds.String(dicom.PatientID) == "P0003" {
				wantSCS = "" // Tanaka^Yuki is ASCII: no character set to declare
				wantTags = wantTags[1:]
			}
			if d := cmp.Diff(wantTags, tags(ds)); d != "" {
				t.Errorf("keys (-want +got):\n%s", d)
			}
			if ds.String(dicom.SpecificCharacterSet) != wantSCS {
				t.Errorf("SpecificCharacterSet %q, want %q", ds.String(dicom.SpecificCharacterSet), wantSCS)
			}
		}
	})

	tests := []struct {
		name  string
		model string
		keys  []string
		col   dicom.Tag
		want  []string
	}{
		{"STUDY by PatientID", "-S", []string{"QueryRetrieveLevel=STUDY", "PatientID=P0001"}, dicom.StudyInstanceUID, p0001},
		{"STUDY by PatientID and IssuerOfPatientID", "-S", []string{"QueryRetrieveLevel=STUDY", "PatientID=P0001", "IssuerOfPatientID=HOSP_A"},
			dicom.StudyInstanceUID, hospA},
		{"STUDY with wildcard and date range", "-S", []string{"QueryRetrieveLevel=STUDY", "PatientID=P00?1*", "StudyDate=20240101-20241231"},
			dicom.StudyInstanceUID, p0001},
		{"STUDY open date range", "-S", []string{"QueryRetrieveLevel=STUDY", "StudyDate=20240101-"}, dicom.StudyInstanceUID,
			append(slices.Clone(in2024), studyUIDs(files, func(s dicomtest.Sample) bool { return s.PatientID == "P0003" })...)},
		{"STUDY in Patient Root", "-P", []string{"QueryRetrieveLevel=STUDY", "PatientID=P0002", "ModalitiesInStudy"}, dicom.ModalitiesInStudy, []string{"OT"}},
		{"STUDY by name wildcard, case folded", "-S", []string{"QueryRetrieveLevel=STUDY", "PatientName=tana*", "AccessionNumber"}, dicom.AccessionNumber, []string{"C0000123"}},
		{"STUDY by accession number", "-S", []string{"QueryRetrieveLevel=STUDY", "AccessionNumber=A240412001", "StudyDescription"},
			dicom.StudyDescription, []string{"胸部CT"}},
		{"SERIES of a study", "-S", []string{"QueryRetrieveLevel=SERIES", "StudyInstanceUID=" + ct.StudyInstanceUID, "Modality",
			"NumberOfSeriesRelatedInstances"}, dicom.NumberOfSeriesRelatedInstances, []string{fmt.Sprint(ctSeries)}},
		{"SERIES by modality list", "-S", []string{"QueryRetrieveLevel=SERIES", "Modality=CR\\US"}, dicom.Modality, crUS},
		{"SERIES attribute from the stored header", "-S", []string{"QueryRetrieveLevel=SERIES", "SeriesInstanceUID=" + ct.SeriesInstanceUID,
			"StationName"}, dicom.NewTag(0x0008, 0x1010), []string{"CT01"}},
		{"IMAGE of a series", "-P", []string{"QueryRetrieveLevel=IMAGE", "PatientID=P0001", "SeriesInstanceUID=" + ct.SeriesInstanceUID,
			"SOPClassUID=1.2.840.10008.5.1.4.1.1.2"}, dicom.SOPClassUID, slices.Repeat([]string{"1.2.840.10008.5.1.4.1.1.2"}, ctSeries)},
		{"IMAGE by UID", "-S", []string{"QueryRetrieveLevel=IMAGE", "SOPInstanceUID=" + ct.SOPInstanceUID, "PatientPosition"},
			dicom.NewTag(0x0018, 0x5100), []string{"HFS"}},
		{"nothing matches", "-S", []string{"QueryRetrieveLevel=STUDY", "PatientID=NOBODY"}, dicom.StudyInstanceUID, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rsps := e.findscu(t, tc.model, "", tc.keys...)
			got := column(rsps, tc.col, dicom.VR(tc.col))
			want := slices.Clone(tc.want)
			sort.Strings(want)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}

	t.Run("IMAGE responses carry exactly the keys asked for and the UIDs of the level", func(t *testing.T) {
		rsps := e.findscu(t, "-S", "", "QueryRetrieveLevel=IMAGE", "SeriesInstanceUID="+ct.SeriesInstanceUID, "InstanceNumber", "Rows", "(0018,0060)")
		if len(rsps) != ctSeries {
			t.Fatalf("%d responses, want %d", len(rsps), ctSeries)
		}
		want := []string{"QueryRetrieveLevel", "KVP", "StudyInstanceUID", "SeriesInstanceUID", "InstanceNumber", "SOPInstanceUID", "Rows"}
		sort.Strings(want)
		for _, ds := range rsps {
			got := tags(ds)
			sort.Strings(got)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("keys (-want +got):\n%s", d)
			}
			if rows, _ := ds.Int(dicom.Rows); rows != 128 || ds.String(dicom.NewTag(0x0018, 0x0060)) != "120" || ds.String(dicom.StudyInstanceUID) != ct.StudyInstanceUID {
				t.Errorf("Rows %d, KVP %q, study %s", rows, ds.String(dicom.NewTag(0x0018, 0x0060)), ds.String(dicom.StudyInstanceUID))
			}
		}
	})
}

// Japanese names in the request's character set (PS3.5 Annex H), answered in that set when the values fit in it.
func TestFindscuJapanese(t *testing.T) {
	e, files := queryEnv(t)
	yamada := studyUIDs(files, func(s dicomtest.Sample) bool { return s.IssuerOfPatientID == "HOSP_A" })
	takahashi := studyUIDs(files, func(s dicomtest.Sample) bool { return s.IssuerOfPatientID == "HOSP_B" })
	const (
		h31 = "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B" // PS3.5 H.3.1
		h32 = "Yamada^Tarou=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J" // the same name under H.3.2's sets
	)
	tests := []struct {
		name    string
		lines   []string
		studies []string
		scs     string            // SpecificCharacterSet of every response
		raw     string            // PatientName bytes of every response, when not empty
		byStudy map[string]string // SpecificCharacterSet of the response of a study, when it differs
	}{
		{"ISO 2022 IR 87, kanji with wildcard", []string{`(0008,0005) CS [\ISO 2022 IR 87]`, "(0010,0010) PN [\x1b$B;3ED\x1b(B*]"},
			yamada, `\ISO 2022 IR 87`, h31, nil},
		{"ISO 2022 IR 87, hiragana group", []string{`(0008,0005) CS [\ISO 2022 IR 87]`, "(0010,0010) PN [\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B]"},
			yamada, `\ISO 2022 IR 87`, h31, nil},
		// PS3.5 6.2.1.2: a workstation that asks again with the whole name of an earlier response sends its three
		// component groups; an empty group is universal.
		{"ISO 2022 IR 87, whole name with its component groups", []string{`(0008,0005) CS [\ISO 2022 IR 87]`, "(0010,0010) PN [" + h31 + "]"},
			yamada, `\ISO 2022 IR 87`, h31, nil},
		{"ISO 2022 IR 87, ideographic group only", []string{`(0008,0005) CS [\ISO 2022 IR 87]`, "(0010,0010) PN [=\x1b$B;3ED\x1b(B*]"},
			yamada, `\ISO 2022 IR 87`, h31, nil},
		{"ISO 2022 IR 87, groups that belong to two people", []string{`(0008,0005) CS [\ISO 2022 IR 87]`, "(0010,0010) PN [Takahashi*=\x1b$B;3ED\x1b(B*]"},
			nil, `\ISO 2022 IR 87`, "", nil},
		{"ISO 2022 IR 13\\ISO 2022 IR 87, half-width katakana", []string{`(0008,0005) CS [ISO 2022 IR 13\ISO 2022 IR 87]`, "(0010,0010) PN [\xd4\xcf\xc0\xde*]"},
			yamada, `ISO 2022 IR 13\ISO 2022 IR 87`, h32, nil},
		{"ISO_IR 192, variant kanji folded", []string{`(0008,0005) CS [ISO_IR 192]`, "(0010,0010) PN [高橋*]"},
			takahashi, "ISO_IR 192", "Takahashi^Hanako=髙橋^花子=たかはし^はなこ", nil},
		{"ISO 2022 IR 87 asked, 髙 is not in JIS X 0208: ISO_IR 192", []string{`(0008,0005) CS [\ISO 2022 IR 87]`, "(0010,0020) LO [P0001]",
			"(0010,0021) LO [HOSP_B]", "(0010,0010) PN []"}, takahashi, "ISO_IR 192", "Takahashi^Hanako=髙橋^花子=たかはし^はなこ", nil},
		{"ISO_IR 100", []string{`(0008,0005) CS [ISO_IR 100]`, "(0010,0010) PN [buc*]"},
			studyUIDs(files, func(s dicomtest.Sample) bool { return s.PatientID == "P0002" }), "ISO_IR 100", "Buc^J\xe9r\xf4me", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := queryFile(t, append([]string{"(0008,0052) CS [STUDY]", "(0020,000d) UI []"}, tc.lines...)...)
			rsps := e.findscu(t, "-S", q)
			if d := cmp.Diff(tc.studies, column(rsps, dicom.StudyInstanceUID, "UI")); d != "" {
				t.Errorf("studies (-want +got):\n%s", d)
			}
			for _, ds := range rsps {
				if got := string(dicom.TrimPadding(ds.Raw(dicom.SpecificCharacterSet), "CS")); got != tc.scs {
					t.Errorf("SpecificCharacterSet %q, want %q", got, tc.scs)
				}
				if got := string(ds.Raw(dicom.PatientName)); tc.raw != "" && got != tc.raw {
					t.Errorf("PatientName %q, want %q", got, tc.raw)
				}
			}
		})
	}

	// The H.3.2 study's referring physician is in half-width katakana, which "\ISO 2022 IR 87" cannot write: that
	// response comes in ISO_IR 192, the other in the request's set.
	t.Run("per response fallback", func(t *testing.T) {
		q := queryFile(t, "(0008,0052) CS [STUDY]", `(0008,0005) CS [\ISO 2022 IR 87]`, "(0010,0020) LO [P0001]", "(0010,0021) LO [HOSP_A]",
			"(0008,0090) PN []", "(0008,1030) LO []")
		rsps := e.findscu(t, "-S", q)
		got := map[string]string{}
		for _, ds := range rsps {
			got[text(ds, dicom.StudyDescription, "LO")+": "+text(ds, dicom.ReferringPhysicianName, "PN")] =
				string(dicom.TrimPadding(ds.Raw(dicom.SpecificCharacterSet), "CS"))
		}
		want := map[string]string{
			"胸部CT: Suzuki^Ichiro=鈴木^一郎=すずき^いちろう": `\ISO 2022 IR 87`,
			"頭部MRI: ｽｽﾞｷ^ｲﾁﾛｳ=鈴木^一郎=すずき^いちろう":    "ISO_IR 192",
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
	})
}

// Failures, read with renkei's own SCU to see the status codes.
func TestFindFailures(t *testing.T) {
	e, _ := queryEnv(t)
	a, err := dimse.Dial(context.Background(), e.addr, "GOSCU", "RENKEI", []dimse.PresentationContext{
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}},
		{AbstractSyntax: dimse.PatientRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{dicom.ImplicitVRLittleEndian}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(context.Background())
	tests := []struct {
		name  string
		model string
		keys  map[dicom.Tag]string
		want  uint16
	}{
		{"PATIENT level in Study Root", dimse.StudyRootQueryRetrieveInformationModelFind, map[dicom.Tag]string{0x00080052: "PATIENT"}, 0xA900},
		{"unknown level", dimse.PatientRootQueryRetrieveInformationModelFind, map[dicom.Tag]string{0x00080052: "FRAME"}, 0xA900},
		{"invalid date", dimse.StudyRootQueryRetrieveInformationModelFind, map[dicom.Tag]string{0x00080052: "STUDY", dicom.StudyDate: "20241345"}, 0xA900},
		{"invalid UID", dimse.StudyRootQueryRetrieveInformationModelFind, map[dicom.Tag]string{0x00080052: "STUDY", dicom.StudyInstanceUID: "1.2.x"}, 0xA900},
		{"valid", dimse.PatientRootQueryRetrieveInformationModelFind, map[dicom.Tag]string{0x00080052: "STUDY", dicom.PatientID: "P0003"}, 0x0000},
	}
	t.Run("C-CANCEL after the first match", func(t *testing.T) {
		id := &dicom.DataSet{}
		id.SetString(0x00080052, "CS", "IMAGE")
		id.SetString(dicom.SOPInstanceUID, "UI", "")
		n := 0
		for _, err := range a.Find(context.Background(), dimse.StudyRootQueryRetrieveInformationModelFind, id) {
			if err != nil {
				t.Fatal(err)
			}
			n++
			break // sends C-CANCEL-RQ and waits for the final response
		}
		if n != 1 {
			t.Errorf("%d matches", n)
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := &dicom.DataSet{}
			for tag, v := range tc.keys {
				id.SetString(tag, dicom.VR(tag), v)
			}
			n := 0
			var code uint16
			for _, err := range a.Find(context.Background(), tc.model, id) {
				var se *dimse.StatusError
				switch {
				case errors.As(err, &se):
					code = se.Status.Code
				case err != nil:
					t.Fatal(err)
				default:
					n++
				}
			}
			if code != tc.want || (code == 0 && n != 1) {
				t.Errorf("status %#04x after %d matches, want %#04x", code, n, tc.want)
			}
		})
	}
}
