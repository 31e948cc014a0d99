package dicomweb_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
	"renkei/internal/dicomtest"
)

// SOP classes of the corpus (PS3.4 Table B.5-1).
const (
	qidoCTClass = "1.2.840.10008.5.1.4.1.1.2"
	qidoMRClass = "1.2.840.10008.5.1.4.1.1.4"
)

// qidoAttr is one attribute of a DICOM JSON object (PS3.18 F.2).
type qidoAttr struct {
	VR    string `json:"vr"`
	Value []any  `json:"Value"`
}

// qidoObject is one object of a QIDO-RS answer, keyed by the tag's 8 hex digits.
type qidoObject map[string]qidoAttr

// text renders an attribute as DICOM writes it: values separated by '\', a person name's groups by '='; "" when
// the attribute is present without a value.
func (a qidoAttr) text() string {
	var vals []string
	for _, v := range a.Value {
		switch x := v.(type) {
		case string:
			vals = append(vals, x)
		case float64:
			vals = append(vals, strconv.FormatFloat(x, 'f', -1, 64))
		case map[string]any:
			var groups []string
			for _, g := range []string{"Alphabetic", "Ideographic", "Phonetic"} {
				s, _ := x[g].(string)
				groups = append(groups, s)
			}
			vals = append(vals, strings.TrimRight(strings.Join(groups, "="), "="))
		case nil:
			vals = append(vals, "")
		default:
			vals = append(vals, fmt.Sprint(x))
		}
	}
	return strings.Join(vals, `\`)
}

// qidoAnswer is a QIDO-RS response.
type qidoAnswer struct {
	status int
	header http.Header
	body   []byte
	objs   []qidoObject
}

// qidoGet runs a search (pathQuery is relative to the DICOMweb root, e.g. "/studies?PatientID=P1") and decodes the
// answer when it is 200.
func qidoGet(t *testing.T, e *env, pathQuery string) qidoAnswer {
	t.Helper()
	req, err := http.NewRequest("GET", e.url+pathQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := qidoAnswer{status: resp.StatusCode, header: resp.Header, body: body}
	if resp.StatusCode == http.StatusOK {
		if ct := resp.Header.Get("Content-Type"); ct != "application/dicom+json" {
			t.Errorf("GET %s: Content-Type %q, want application/dicom+json", pathQuery, ct)
		}
		if err := json.Unmarshal(body, &a.objs); err != nil {
			t.Fatalf("GET %s: answer is not a DICOM JSON array: %v\n%s", pathQuery, err, body)
		}
	}
	return a
}

// mustOK fails the test unless the search succeeded.
func (a qidoAnswer) mustOK(t *testing.T, pathQuery string) qidoAnswer {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200: %s", pathQuery, a.status, a.body)
	}
	return a
}

// qidoCorpus is a small archive of synthetic 64×64 CT files whose study, series and instance attributes vary so that
// each matching rule has something to tell apart. Labels name the objects: studies "A", series "A1", instances "A1-1".
type qidoCorpus struct {
	e     *env
	uid   map[string]string // label → UID
	label map[string]string // UID → label
	all   map[string][]string
}

// qidoSeries describes one series of the corpus; the study attributes repeat on each series of a study.
type qidoSeries struct {
	study, series                  string
	patientID, issuer, name        string
	date, time, accession, studyID string
	description, institution       string
	modality, sopClass             string
	number                         int
	seriesDescription              string
	instances                      int
}

var qidoCorpusSeries = []qidoSeries{
	{"A", "A1", "PA", "HOSP_A", "Suzuki^Ichiro", "20240105", "083000", "ACC-0001", "A-1", "Chest CT", "Central Hospital", "CT", "", 1, "Axial 5mm", 2},
	{"A", "A2", "PA", "HOSP_A", "Suzuki^Ichiro", "20240105", "083000", "ACC-0001", "A-1", "Chest CT", "Central Hospital", "MR", qidoMRClass, 2, "T1", 1},
	{"B", "B1", "PB", "HOSP_A", "Sato^Hanako", "20240120", "140000", "ACC-0002", "B-1", "Head CT", "", "CT", "", 1, "Axial 1mm", 1},
	{"C", "C1", "PC", "HOSP_A", "Tanaka^Yuki", "20240215", "235959", "ACC-0103", "C-1", "Abdomen US", "", "US", "", 3, "Liver", 1},
	{"D", "D1", "PD", "HOSP_A", "Ito^Jun", "", "", "XYZ-9", "D-1", "No date", "", "CT", "", 1, "Scout", 1},
	{"E", "E1", "PE", "HOSP_A", "Kato^Mai", "20231231", "120000", "ACC-0005", "E-1", "Chest CT", "", "CT", "", 1, "Axial 5mm", 1},
	// The same PatientID from two issuers: two people.
	{"SA", "SA1", "SAME", "HOSP_A", "Same^Hospa", "20240301", "100000", "", "SA-1", "Knee", "", "CT", "", 1, "Sagittal", 1},
	{"SB", "SB1", "SAME", "HOSP_B", "Other^Person", "20240302", "100000", "", "SB-1", "Hand", "", "CT", "", 1, "Coronal", 1},
}

// newQIDOCorpus writes the corpus with dicomtest.CT, sets the attributes CTOptions has no field for with dcmtk's
// dcmodify, and stores everything with one STOW-RS request.
func newQIDOCorpus(t *testing.T) *qidoCorpus {
	t.Helper()
	if _, err := exec.LookPath("dcmodify"); err != nil {
		t.Skip("dcmodify not found: install the Debian package dcmtk to run the QIDO-RS corpus tests")
	}
	c := &qidoCorpus{e: newEnv(t), uid: map[string]string{}, label: map[string]string{}, all: map[string][]string{}}
	add := func(level, label, uid string) {
		if _, ok := c.uid[label]; !ok {
			c.uid[label], c.label[uid] = uid, label
			c.all[level] = append(c.all[level], label)
		}
	}
	dir := t.TempDir()
	var files [][]byte
	for i, s := range qidoCorpusSeries {
		add("study", s.study, dicomtest.UID("qido/study/"+s.study))
		add("series", s.series, dicomtest.UID("qido/series/"+s.series))
		var paths []string
		for n := 1; n <= s.instances; n++ {
			label := fmt.Sprintf("%s-%d", s.series, n)
			add("instance", label, dicomtest.UID("qido/instance/"+label))
			p := filepath.Join(dir, label+".dcm")
			err := dicomtest.CT(p, dicomtest.CTOptions{
				StudyInstanceUID: c.uid[s.study], SeriesInstanceUID: c.uid[s.series], SOPInstanceUID: c.uid[label],
				PatientID: s.patientID, PatientName: s.name, AccessionNumber: s.accession,
				Rows: 64, Cols: 64, InstanceNumber: n, Seed: int64(i),
			})
			if err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
		mods := map[string]string{
			"0008,0020": s.date, "0008,0030": s.time, "0010,0021": s.issuer, "0020,0010": s.studyID,
			"0008,1030": s.description, "0008,0060": s.modality, "0020,0011": strconv.Itoa(s.number),
			"0008,103E": s.seriesDescription,
		}
		if s.sopClass != "" {
			mods["0008,0016"] = s.sopClass // dcmodify updates MediaStorageSOPClassUID to match
		}
		if s.institution != "" {
			mods["0008,0080"] = s.institution
		}
		args := []string{"-nb"}
		for tag, v := range mods {
			args = append(args, "-i", "("+tag+")="+v)
		}
		if out, err := exec.Command("dcmodify", append(args, paths...)...).CombinedOutput(); err != nil {
			t.Fatalf("dcmodify: %v\n%s", err, out)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, b)
		}
	}
	if status, body := c.e.stow(files...); status != http.StatusOK {
		t.Fatalf("STOW-RS of the corpus: status %d: %s", status, body)
	}
	return c
}

// labels names the objects of an answer by their most specific UID.
func (c *qidoCorpus) labels(t *testing.T, objs []qidoObject) []string {
	t.Helper()
	var out []string
	for _, o := range objs {
		uid := ""
		for _, tag := range []string{"00080018", "0020000E", "0020000D"} {
			if a, ok := o[tag]; ok {
				uid = a.text()
				break
			}
		}
		l, ok := c.label[uid]
		if !ok {
			t.Errorf("answer holds an object the corpus does not have (UID %q)", uid)
		}
		out = append(out, l)
	}
	return out
}

// sub replaces {X} in s with the UID of label X.
func (c *qidoCorpus) sub(s string) string {
	for l, u := range c.uid {
		s = strings.ReplaceAll(s, "{"+l+"}", u)
	}
	return s
}

// sortedValues sorts the values of a multi-valued attribute written with '\'.
func sortedValues(s string) string {
	return strings.Join(sorted(strings.Split(s, `\`)), `\`)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestQIDO searches one archive of synthetic CT files the way a viewer or a RIS does. The archive is built once
// (each archive is a real SQLite file and HTTP server) and the parts run as subtests.
func TestQIDO(t *testing.T) {
	c := newQIDOCorpus(t)
	t.Run("matching", func(t *testing.T) { testQIDOMatching(t, c) })
	t.Run("return attributes", func(t *testing.T) { testQIDOReturnAttributes(t, c) })
	t.Run("ignored attributes", func(t *testing.T) { testQIDOIgnoredAttributes(t, c) })
	t.Run("paging", func(t *testing.T) { testQIDOPaging(t, c) })
	t.Run("bad parameters", func(t *testing.T) { testQIDOBadParameters(t, c) })
}

// testQIDOMatching runs each matching rule of PS3.4 C.2.2.2 at each QIDO-RS resource.
func testQIDOMatching(t *testing.T, c *qidoCorpus) {
	allStudies := []string{"A", "B", "C", "D", "E", "SA", "SB"}
	allSeries := []string{"A1", "A2", "B1", "C1", "D1", "E1", "SA1", "SB1"}
	allInstances := []string{"A1-1", "A1-2", "A2-1", "B1-1", "C1-1", "D1-1", "E1-1", "SA1-1", "SB1-1"}
	cases := []struct {
		name, path string
		want       []string
	}{
		// Studies.
		{"all studies", "/studies", allStudies},
		{"study date", "/studies?StudyDate=20240105", []string{"A"}},
		{"study date by tag", "/studies?00080020=20240105", []string{"A"}},
		{"study date, retired form", "/studies?StudyDate=2024.01.05", []string{"A"}},
		{"study date range", "/studies?StudyDate=20240101-20240131", []string{"A", "B"}},
		{"study date range open start, empty date not matched", "/studies?StudyDate=-20240131", []string{"A", "B", "E"}},
		{"study date range open end", "/studies?StudyDate=20240101-", []string{"A", "B", "C", "SA", "SB"}},
		{"study date range of one day", "/studies?StudyDate=20240120-20240120", []string{"B"}},
		{"study time to the minute", "/studies?StudyTime=0830", []string{"A"}},
		{"study time to the second", "/studies?StudyTime=235959", []string{"C"}},
		{"study time range, end includes its minute", "/studies?StudyTime=0800-1200", []string{"A", "E", "SA", "SB"}},
		{"study time range open start", "/studies?StudyTime=-0900", []string{"A"}},
		{"study time range open end", "/studies?StudyTime=1400-", []string{"B", "C"}},
		{"date and time", "/studies?StudyDate=20240101-20240131&StudyTime=1200-", []string{"B"}},
		{"study UID", "/studies?StudyInstanceUID={A}", []string{"A"}},
		{"study UID list with comma", "/studies?StudyInstanceUID={A},{B}", []string{"A", "B"}},
		{"study UID list with backslash", "/studies?StudyInstanceUID={A}%5C{C}", []string{"A", "C"}},
		{"study UID repeated parameter", "/studies?StudyInstanceUID={A}&StudyInstanceUID={SB}", []string{"A", "SB"}},
		{"accession", "/studies?AccessionNumber=ACC-0002", []string{"B"}},
		{"accession wildcard star", "/studies?AccessionNumber=ACC-*", []string{"A", "B", "C", "E"}},
		{"accession wildcard question mark", "/studies?AccessionNumber=ACC-000%3F", []string{"A", "B", "E"}},
		{"accession wildcard inside", "/studies?AccessionNumber=ACC-01%3F3", []string{"C"}},
		{"accession is case sensitive", "/studies?AccessionNumber=acc-0002", nil},
		{"patient ID", "/studies?PatientID=PA", []string{"A"}},
		{"patient ID wildcard", "/studies?PatientID=P%3F", []string{"A", "B", "C", "D", "E"}},
		{"issuer", "/studies?IssuerOfPatientID=HOSP_B", []string{"SB"}},
		{"same patient ID, two issuers", "/studies?PatientID=SAME", []string{"SA", "SB"}},
		{"same patient ID, one issuer", "/studies?PatientID=SAME&IssuerOfPatientID=HOSP_A", []string{"SA"}},
		{"modalities in study", "/studies?ModalitiesInStudy=MR", []string{"A"}},
		{"modalities in study, CT", "/studies?ModalitiesInStudy=CT", []string{"A", "B", "D", "E", "SA", "SB"}},
		{"modalities in study list", "/studies?ModalitiesInStudy=MR,US", []string{"A", "C"}},
		{"modalities in study list with backslash", "/studies?ModalitiesInStudy=MR%5CUS", []string{"A", "C"}},
		{"study description wildcard", "/studies?StudyDescription=Chest*", []string{"A", "E"}},
		{"patient name wildcard, any case", "/studies?PatientName=suzuki*", []string{"A"}},
		{"patient name exact", "/studies?PatientName=Sato%5EHanako", []string{"B"}},
		{"study ID", "/studies?StudyID=C-1", []string{"C"}},
		{"universal: empty date", "/studies?StudyDate=", allStudies},
		{"universal: empty name", "/studies?PatientName=", allStudies},
		{"universal: lone star", "/studies?AccessionNumber=*", allStudies},
		{"combination", "/studies?ModalitiesInStudy=CT&StudyDate=20240101-20240131&AccessionNumber=ACC-*", []string{"A", "B"}},
		{"combination matching nothing", "/studies?PatientID=PA&StudyDate=20240120", nil},
		{"no match", "/studies?AccessionNumber=NOPE", nil},

		// Series.
		{"all series", "/series", allSeries},
		{"modality", "/series?Modality=MR", []string{"A2"}},
		{"modality list", "/series?Modality=MR%5CUS", []string{"A2", "C1"}},
		{"series number", "/series?SeriesNumber=2", []string{"A2"}},
		{"series number 3", "/series?SeriesNumber=3", []string{"C1"}},
		{"series UID list", "/series?SeriesInstanceUID={A1},{C1}", []string{"A1", "C1"}},
		{"series UID list with backslash", "/series?SeriesInstanceUID={A2}%5C{B1}", []string{"A2", "B1"}},
		{"series description", "/series?SeriesDescription=T1", []string{"A2"}},
		{"series description wildcard", "/series?SeriesDescription=Axial*", []string{"A1", "B1", "E1"}},
		{"study attribute at series level", "/series?StudyDate=20240101-20240131", []string{"A1", "A2", "B1"}},
		{"patient attribute at series level", "/series?PatientName=suzuki*", []string{"A1", "A2"}},
		{"accession at series level", "/series?AccessionNumber=ACC-0001", []string{"A1", "A2"}},
		{"issuer at series level", "/series?IssuerOfPatientID=HOSP_B", []string{"SB1"}},
		{"series combination", "/series?Modality=CT&StudyDate=20240105", []string{"A1"}},
		{"series of a study", "/studies/{A}/series", []string{"A1", "A2"}},
		{"series of a study by modality", "/studies/{A}/series?Modality=CT", []string{"A1"}},
		{"series of a study by number", "/studies/{A}/series?SeriesNumber=2", []string{"A2"}},
		{"series of a study, other study's modality", "/studies/{B}/series?Modality=MR", nil},
		{"series of a study that does not exist", "/studies/1.2.3.4.5/series", nil},
		{"series of a study by date range", "/studies/{A}/series?StudyDate=-20240131", []string{"A1", "A2"}},
		{"series of a study by UID list", "/studies/{A}/series?SeriesInstanceUID={A1}%5C{B1}", []string{"A1"}},
		{"series of a study by description wildcard", "/studies/{A}/series?SeriesDescription=%3F1", []string{"A2"}},

		// Instances.
		{"all instances", "/instances", allInstances},
		{"SOP class", "/instances?SOPClassUID=" + qidoMRClass, []string{"A2-1"}},
		{"SOP class list", "/instances?SOPClassUID=" + qidoMRClass + ",1.2.3", []string{"A2-1"}},
		{"SOP instance UID list", "/instances?SOPInstanceUID={A1-2}%5C{E1-1}", []string{"A1-2", "E1-1"}},
		{"instance number", "/instances?InstanceNumber=2", []string{"A1-2"}},
		{"series attribute at instance level", "/instances?Modality=US", []string{"C1-1"}},
		{"series number at instance level", "/instances?SeriesNumber=2", []string{"A2-1"}},
		{"study attributes at instance level", "/instances?StudyDate=20240105&InstanceNumber=1", []string{"A1-1", "A2-1"}},
		{"issuer at instance level", "/instances?PatientID=SAME&IssuerOfPatientID=HOSP_A", []string{"SA1-1"}},
		{"date range at instance level", "/instances?StudyDate=20240101-20240131", []string{"A1-1", "A1-2", "A2-1", "B1-1"}},
		{"time range at instance level", "/instances?StudyTime=1400-", []string{"B1-1", "C1-1"}},
		{"wildcard at instance level", "/instances?AccessionNumber=ACC-000%3F", []string{"A1-1", "A1-2", "A2-1", "B1-1", "E1-1"}},
		{"series UID list at instance level", "/instances?SeriesInstanceUID={A2},{B1}", []string{"A2-1", "B1-1"}},
		{"instances of a study", "/studies/{A}/instances", []string{"A1-1", "A1-2", "A2-1"}},
		{"instances of a study by SOP class", "/studies/{A}/instances?SOPClassUID=" + qidoCTClass, []string{"A1-1", "A1-2"}},
		{"instances of a series", "/studies/{A}/series/{A1}/instances", []string{"A1-1", "A1-2"}},
		{"instances of a series by number", "/studies/{A}/series/{A1}/instances?InstanceNumber=1", []string{"A1-1"}},
		{"instances of a series by UID", "/studies/{A}/series/{A1}/instances?SOPInstanceUID={A1-2}", []string{"A1-2"}},
		{"instances of a series, other SOP class", "/studies/{A}/series/{A2}/instances?SOPClassUID=" + qidoCTClass, nil},
		{"instances of a series of another study", "/studies/{B}/series/{A1}/instances", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := c.sub(tc.path)
			a := qidoGet(t, c.e, path).mustOK(t, path)
			if d := cmp.Diff(sorted(tc.want), sorted(c.labels(t, a.objs))); d != "" {
				t.Errorf("GET %s (-want +got):\n%s", tc.path, d)
			}
			if w := a.header.Values("Warning"); len(w) > 0 {
				t.Errorf("GET %s: Warning %q; every key here can be matched", tc.path, w)
			}
		})
	}

	t.Run("studies newest first, undated last", func(t *testing.T) {
		a := qidoGet(t, c.e, "/studies").mustOK(t, "/studies")
		if d := cmp.Diff([]string{"SB", "SA", "C", "B", "A", "E", "D"}, c.labels(t, a.objs)); d != "" {
			t.Errorf("order (-want +got):\n%s", d)
		}
	})
}

// testQIDOReturnAttributes checks the default return attributes of PS3.18 Tables 10.6.3-3 (study), -4 (series) and
// -5 (instance), with the counts the archive computes, and includefield.
func testQIDOReturnAttributes(t *testing.T, c *qidoCorpus) {
	base := c.e.url
	studyA := map[string]string{
		"00080005": "ISO_IR 192",
		"00080020": "20240105",
		"00080030": "083000",
		"00080050": "ACC-0001",
		"00080056": "ONLINE",
		"00080061": `CT\MR`,
		"00080090": "",
		"00081190": base + "/studies/{A}",
		"00100010": "Suzuki^Ichiro",
		"00100020": "PA",
		"00100021": "HOSP_A",
		"00100030": "",
		"00100040": "",
		"0020000D": "{A}",
		"00200010": "A-1",
		"00201206": "2", // NumberOfStudyRelatedSeries
		"00201208": "3", // NumberOfStudyRelatedInstances
		"00081030": "Chest CT",
	}
	seriesA1 := map[string]string{
		"00080005": "ISO_IR 192",
		"00080060": "CT",
		"0008103E": "Axial 5mm",
		"00081190": base + "/studies/{A}/series/{A1}",
		"0020000E": "{A1}",
		"00200011": "1",
		"00201209": "2", // NumberOfSeriesRelatedInstances
		"00400244": "",  // PerformedProcedureStepStartDate, empty in these files
		"00400245": "",
	}
	seriesA2 := map[string]string{
		"00080060": "MR",
		"0008103E": "T1",
		"00081190": base + "/studies/{A}/series/{A2}",
		"0020000E": "{A2}",
		"00200011": "2",
		"00201209": "1",
	}
	instanceA12 := map[string]string{
		"00080005": "ISO_IR 192",
		"00080016": qidoCTClass,
		"00080018": "{A1-2}",
		"00080056": "ONLINE",
		"00081190": base + "/studies/{A}/series/{A1}/instances/{A1-2}",
		"00200013": "2",
		"00280010": "64",
		"00280011": "64",
		"00280100": "16",
		"00280008": "1",
	}
	instanceA21 := map[string]string{
		"00080016": qidoMRClass,
		"00080018": "{A2-1}",
		"00200013": "1",
		"00081190": base + "/studies/{A}/series/{A2}/instances/{A2-1}",
	}
	// Searches not scoped to a study return the study's attributes too, and those not scoped to a series its series'.
	withStudy := map[string]string{"0020000D": "{A}", "00100010": "Suzuki^Ichiro", "00100020": "PA", "00080020": "20240105", "00080050": "ACC-0001"}
	withSeries := map[string]string{"0020000E": "{A1}", "00080060": "CT", "00200011": "1"}
	merge := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	cases := []struct {
		name, path string
		want       map[string]string // attributes that must be present, with these values
		absent     []string
	}{
		{"study", "/studies?StudyInstanceUID={A}", studyA, nil},
		{"all series", "/series?SeriesInstanceUID={A1}", merge(seriesA1, withStudy), nil},
		{"series of a study", "/studies/{A}/series?SeriesNumber=2", seriesA2, nil},
		{"all instances", "/instances?SOPInstanceUID={A1-2}", merge(instanceA12, withSeries, withStudy), nil},
		{"instances of a study", "/studies/{A}/instances?InstanceNumber=2", merge(instanceA12, withSeries), nil},
		{"instances of a series", "/studies/{A}/series/{A2}/instances", instanceA21, nil},

		{"includefield by tag and keyword", "/studies?StudyInstanceUID={A}&includefield=00081030,StudyDescription", map[string]string{"00081030": "Chest CT"}, nil},
		{"not asked for, not returned", "/studies?StudyInstanceUID={A}", nil, []string{"00080070", "00080080", "00180060"}},
		{"includefield tag", "/studies?StudyInstanceUID={A}&includefield=00080070", map[string]string{"00080070": "renkei"}, []string{"00080080"}},
		{"includefield keyword", "/studies?StudyInstanceUID={A}&includefield=Manufacturer", map[string]string{"00080070": "renkei"}, nil},
		{"includefield repeated", "/studies?StudyInstanceUID={A}&includefield=Manufacturer&includefield=InstitutionName",
			map[string]string{"00080070": "renkei", "00080080": "Central Hospital"}, nil},
		{"includefield of an attribute the object lacks", "/studies?StudyInstanceUID={B}&includefield=InstitutionName", nil, []string{"00080080"}},
		{"includefield=all at study level", "/studies?StudyInstanceUID={A}&includefield=all",
			map[string]string{"00080080": "Central Hospital", "00081030": "Chest CT"}, []string{"00180060"}},
		{"includefield=all at series level", "/studies/{A}/series?SeriesNumber=1&includefield=all",
			map[string]string{"00185100": "HFS", "00080070": "renkei"}, []string{"00180060"}},
		{"includefield=all at instance level", "/instances?SOPInstanceUID={A1-1}&includefield=all",
			map[string]string{"00180060": "120", "00185100": "HFS", "00080008": `ORIGINAL\PRIMARY\AXIAL`, "00281050": "40"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := c.sub(tc.path)
			a := qidoGet(t, c.e, path).mustOK(t, path)
			if len(a.objs) != 1 {
				t.Fatalf("GET %s: %d objects, want 1: %s", tc.path, len(a.objs), a.body)
			}
			o := a.objs[0]
			want, got := map[string]string{}, map[string]string{}
			for tag, v := range tc.want {
				want[tag] = c.sub(v)
				if attr, ok := o[tag]; ok {
					got[tag] = attr.text()
				}
				if tag == "00080061" {
					got[tag] = sortedValues(got[tag]) // PS3.4 does not order the values of ModalitiesInStudy
				}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("GET %s (-want +got; a missing line is a missing attribute):\n%s", tc.path, d)
			}
			for _, tag := range tc.absent {
				if attr, ok := o[tag]; ok {
					t.Errorf("GET %s: %s = %q was not asked for", tc.path, tag, attr.text())
				}
			}
		})
	}

	t.Run("value representations", func(t *testing.T) {
		path := c.sub("/studies?StudyInstanceUID={A}")
		o := qidoGet(t, c.e, path).mustOK(t, path).objs[0]
		want := map[string]string{"00080020": "DA", "00080061": "CS", "00100010": "PN", "0020000D": "UI", "00201206": "IS", "00201208": "IS", "00081190": "UR"}
		got := map[string]string{}
		for tag := range want {
			got[tag] = o[tag].VR
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("VRs (-want +got):\n%s", d)
		}
	})
}

// testQIDOIgnoredAttributes checks PS3.18 8.3.4.1.1: a key the origin server cannot match is ignored, and the
// answer says so with a Warning: 299 header.
func testQIDOIgnoredAttributes(t *testing.T, c *qidoCorpus) {
	cases := []struct {
		name, path, keyword string
		level               string
	}{
		{"attribute not in the index", "/studies?Manufacturer=renkei", "Manufacturer", "study"},
		{"series attribute at study level", "/studies?Modality=MR", "Modality", "study"},
		{"instance attribute at series level", "/series?InstanceNumber=1", "InstanceNumber", "series"},
		{"acquisition attribute at instance level", "/instances?KVP=120", "KVP", "instance"},
		{"private tag", "/studies?00091010=x", "00091010", "study"},
		{"sequence path", "/studies?RequestAttributesSequence.RequestedProcedureID=1", "RequestAttributesSequence.RequestedProcedureID", "study"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := qidoGet(t, c.e, tc.path).mustOK(t, tc.path)
			if d := cmp.Diff(sorted(c.all[tc.level]), sorted(c.labels(t, a.objs))); d != "" {
				t.Errorf("GET %s: the ignored key must not filter (-want +got):\n%s", tc.path, d)
			}
			w := strings.Join(a.header.Values("Warning"), "\n")
			if !strings.HasPrefix(w, "299 ") || !strings.Contains(w, tc.keyword) {
				t.Errorf("GET %s: Warning %q, want a 299 warning naming %s", tc.path, w, tc.keyword)
			}
		})
	}
}

// testQIDOPaging checks limit and offset (PS3.18 8.3.4.4): pages are disjoint, cover every match in the order of
// the unpaged answer, and every page but the last says that more results can be requested.
func testQIDOPaging(t *testing.T, c *qidoCorpus) {
	const more = "There are additional results that can be requested"
	cases := []struct {
		name, path string
		limit      int
	}{
		{"studies by 3", "/studies", 3},
		{"studies by 1", "/studies", 1},
		{"studies by 2 with a match", "/studies?StudyDate=20240101-", 2},
		{"series by 3", "/series", 3},
		{"instances by 4", "/instances", 4},
		{"instances of a study by 2", "/studies/{A}/instances", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := c.sub(tc.path)
			full := c.labels(t, qidoGet(t, c.e, base).mustOK(t, base).objs)
			sep := "?"
			if strings.Contains(base, "?") {
				sep = "&"
			}
			var paged []string
			seen := map[string]bool{}
			for offset := 0; offset < len(full)+tc.limit; offset += tc.limit {
				path := fmt.Sprintf("%s%slimit=%d&offset=%d", base, sep, tc.limit, offset)
				a := qidoGet(t, c.e, path).mustOK(t, path)
				page := c.labels(t, a.objs)
				if len(page) > tc.limit {
					t.Errorf("GET %s: %d results, more than the limit", path, len(page))
				}
				for _, l := range page {
					if seen[l] {
						t.Errorf("GET %s: %s was on an earlier page too", path, l)
					}
					seen[l] = true
				}
				paged = append(paged, page...)
				truncated := offset+tc.limit < len(full)
				warned := strings.Contains(strings.Join(a.header.Values("Warning"), "\n"), more)
				if warned != truncated {
					t.Errorf("GET %s: additional-results warning %v, want %v (%d of %d from offset %d)", path, warned, truncated, len(page), len(full), offset)
				}
			}
			if d := cmp.Diff(full, paged); d != "" {
				t.Errorf("pages joined differ from the unpaged answer (-want +got):\n%s", d)
			}
		})
	}

	t.Run("limit equal to the number of matches", func(t *testing.T) {
		a := qidoGet(t, c.e, "/studies?limit=7").mustOK(t, "/studies?limit=7")
		if len(a.objs) != 7 || len(a.header.Values("Warning")) > 0 {
			t.Errorf("%d studies, Warning %q; want 7 and no warning", len(a.objs), a.header.Values("Warning"))
		}
	})
	t.Run("offset past the end", func(t *testing.T) {
		a := qidoGet(t, c.e, "/studies?offset=100").mustOK(t, "/studies?offset=100")
		if len(a.objs) != 0 {
			t.Errorf("%d studies past the end", len(a.objs))
		}
	})
	t.Run("limit=0 means the default limit", func(t *testing.T) {
		a := qidoGet(t, c.e, "/studies?limit=0").mustOK(t, "/studies?limit=0")
		if len(a.objs) != 7 {
			t.Errorf("%d studies, want 7", len(a.objs))
		}
	})
}

// testQIDOBadParameters checks that malformed searches are refused with 400 and a problem+json body (RFC 9457)
// whose detail says what is wrong.
func testQIDOBadParameters(t *testing.T, c *qidoCorpus) {
	e := c.e
	cases := []struct{ name, path, detail string }{
		{"negative limit", "/studies?limit=-1", "limit must be a non-negative number"},
		{"limit not a number", "/studies?limit=abc", "limit must be a non-negative number"},
		{"negative offset", "/series?offset=-5", "offset must be a non-negative number"},
		{"unknown attribute", "/studies?PatientNmae=X", `unknown attribute "PatientNmae"`},
		{"unknown attribute, empty value", "/studies?Foo=", `unknown attribute "Foo"`},
		{"unknown includefield", "/studies?includefield=NoSuchThing", `unknown attribute "NoSuchThing"`},
		{"invalid study UID", "/studies?StudyInstanceUID=1.2.abc", "not a valid UID"},
		{"invalid UID in a list", "/instances?SOPInstanceUID=1.2.3,1..4", "not a valid UID"},
		{"UID with leading zero", "/series?SeriesInstanceUID=1.02.3", "not a valid UID"},
		{"invalid study UID in the path", "/studies/not-a-uid/series", "not a valid UID"},
		{"invalid series UID in the path", "/studies/1.2.3/series/x/instances", "not a valid UID"},
		{"date with dashes", "/studies?StudyDate=2024-01-05", "not a date"},
		{"date in words", "/studies?StudyDate=yesterday", "not a date"},
		{"month 13", "/studies?StudyDate=20241301", "not a date"},
		{"range end not a date", "/studies?StudyDate=20240101-2024", "not a date"},
		{"birth date", "/studies?PatientBirthDate=1965041", "not a date"},
		{"time in words", "/studies?StudyTime=noon", "not a time"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := qidoGet(t, e, tc.path)
			if a.status != http.StatusBadRequest {
				t.Fatalf("GET %s: status %d, want 400: %s", tc.path, a.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("GET %s: Content-Type %q, want application/problem+json", tc.path, ct)
			}
			var p struct {
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(a.body, &p); err != nil {
				t.Fatalf("GET %s: body is not JSON: %v: %s", tc.path, err, a.body)
			}
			if p.Status != 400 || !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("GET %s: status %d, detail %q; want 400 and a detail saying %q", tc.path, p.Status, p.Detail, tc.detail)
			}
		})
	}
}

// pydicomCharsetDir returns the folder of pydicom's character set test files, or skips the test.
func pydicomCharsetDir(t *testing.T) string {
	t.Helper()
	for _, pattern := range []string{
		"/usr/lib/python3/dist-packages/pydicom/data/charset_files",
		"/usr/lib/python3*/site-packages/pydicom/data/charset_files",
		"/usr/local/lib/python3*/dist-packages/pydicom/data/charset_files",
		"/usr/local/lib/python3*/site-packages/pydicom/data/charset_files",
	} {
		if m, _ := filepath.Glob(filepath.Join(pattern, "chrH31.dcm")); len(m) > 0 {
			return filepath.Dir(m[0])
		}
	}
	t.Skip("pydicom's charset_files (chrH31.dcm…) not found: install the Debian package python3-pydicom")
	return ""
}

// readStudyUID reads a Part 10 file and returns its bytes and StudyInstanceUID.
func readStudyUID(t *testing.T, path string) ([]byte, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := dicom.Parse(bytes.NewReader(b), dicom.DefaultReadOptions)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b, f.DataSet.String(dicom.StudyInstanceUID)
}

// TestQIDOJapaneseNames stores Japanese names written in every character set a Japanese modality uses (PS3.5
// Annex H: ISO 2022 IR 87 with and without IR 13, UTF-8; and pydicom's samples) and finds them however the user
// types the name: kanji, katakana, hiragana, half-width katakana, romaji in any case, variant kanji.
func TestQIDOJapaneseNames(t *testing.T) {
	charsets := pydicomCharsetDir(t)
	samples, err := dicomtest.Dataset(t.TempDir())
	if err != nil {
		t.Skipf("dicomtest.Dataset needs dcmtk and libgdcm-tools: %v", err)
	}
	e := newEnv(t)
	label := map[string]string{} // StudyInstanceUID → label
	uid := map[string]string{}
	// The patient of the H.3.1 CT and the H.3.2 MR is one (P0001 of HOSP_A) and the index keeps the name of the
	// last object stored: the MR goes first so that the full H.3.1 name (with romaji) is the one kept.
	var first, rest [][]byte
	for _, s := range samples {
		l := map[string]string{"ct": "H.3.1 CT", "mr": "H.3.2 MR", "cr": "髙橋", "us": "髙橋", "sc": "Latin-1"}[s.Name[:2]]
		if strings.HasPrefix(s.Name, "sc-signed12") {
			l = "ASCII"
		}
		label[s.StudyInstanceUID], uid[l] = l, s.StudyInstanceUID
		b, err := os.ReadFile(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		if l == "H.3.2 MR" {
			first = append(first, b)
		} else {
			rest = append(rest, b)
		}
	}
	for _, name := range []string{"chrH31", "chrH32", "chrX1", "chrX2", "chrJapMulti"} {
		b, u := readStudyUID(t, filepath.Join(charsets, name+".dcm"))
		label[u], uid[name] = name, u
		rest = append(rest, b)
	}
	// chrJapMultiExplicitIR6 is chrJapMulti with "ISO 2022 IR 6" spelt out as value 1 of (0008,0005). It has the same
	// UIDs, so a copy gets UIDs and a PatientID of its own.
	if _, err := exec.LookPath("dcmodify"); err != nil {
		t.Skip("dcmodify not found: install the Debian package dcmtk")
	}
	ir6 := filepath.Join(t.TempDir(), "ir6.dcm")
	b, err := os.ReadFile(filepath.Join(charsets, "chrJapMultiExplicitIR6.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ir6, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("dcmodify", "-nb", "-i", "(0010,0020)=2008-4-IR6",
		"-i", "(0020,000D)="+dicomtest.UID("qido/ir6/study"), "-i", "(0020,000E)="+dicomtest.UID("qido/ir6/series"),
		"-i", "(0008,0018)="+dicomtest.UID("qido/ir6/instance"), ir6).CombinedOutput(); err != nil {
		t.Fatalf("dcmodify: %v\n%s", err, out)
	}
	b, u := readStudyUID(t, ir6)
	label[u], uid["chrJapMultiExplicitIR6"] = "chrJapMultiExplicitIR6", u
	rest = append(rest, b)
	for _, batch := range [][][]byte{first, rest} {
		// pydicom's charset files are images without pixel data: stored, with a warning (202).
		status, body := e.stow(batch...)
		if (status != http.StatusOK && status != http.StatusAccepted) || bytes.Contains(body, []byte(`"00081197"`)) {
			t.Fatalf("STOW-RS: status %d: %s", status, body)
		}
	}
	find := func(t *testing.T, query string) qidoAnswer {
		t.Helper()
		path := "/studies?" + query
		return qidoGet(t, e, path).mustOK(t, path)
	}
	studies := func(t *testing.T, a qidoAnswer) []string {
		var out []string
		for _, o := range a.objs {
			out = append(out, label[o["0020000D"].text()])
		}
		return sorted(out)
	}

	// The studies of Yamada Tarou: those whose name has kanji, those whose name has kana, those spelled in romaji.
	yamada := []string{"H.3.1 CT", "H.3.2 MR", "chrH31", "chrH32"}
	yamadaKana := []string{"H.3.1 CT", "H.3.2 MR", "chrH31", "chrH32", "chrJapMulti", "chrJapMultiExplicitIR6"}
	yamadaRomaji := []string{"H.3.1 CT", "H.3.2 MR", "chrH31"}
	cases := []struct {
		name, pn string // pn is the PatientName key, as typed (it is escaped here)
		extra    string // more parameters, already escaped
		want     []string
	}{
		{"kanji prefix", "山田*", "", yamada},
		{"katakana prefix", "ヤマダ*", "", yamadaKana},
		{"hiragana prefix", "やまだ*", "", yamadaKana},
		{"half-width katakana prefix", "ﾔﾏﾀﾞ*", "", yamadaKana},
		{"romaji prefix", "Yamada*", "", yamadaRomaji},
		{"romaji prefix lower case", "yamada*", "", yamadaRomaji},
		{"romaji prefix upper case", "YAMADA*", "", yamadaRomaji},
		{"exact kanji name", "山田^太郎", "", yamada},
		// A name with its component groups, as a viewer sends back one it was given: each group must match.
		{"component groups: romaji and kanji", "Yamada^Tarou=山田^太郎", "", yamadaRomaji},
		{"component groups: the ideographic group alone", "=山田*", "", yamada},
		{"component groups that belong to two people", "Yamada^Tarou=高橋^花子", "", nil},
		{"exact romaji name", "Yamada^Tarou", "", yamadaRomaji},
		{"exact romaji name, other case", "yamada^tarou", "", yamadaRomaji},
		{"exact hiragana name", "やまだ^たろう", "", yamadaKana},
		{"exact half-width name", "ﾔﾏﾀﾞ^ﾀﾛｳ", "", yamadaKana},
		{"katakana with a space instead of ^", "ヤマダ タロウ", "", yamadaKana},
		{"kanji without separator", "山田太郎", "", yamada},
		{"kanji with ideographic space", "山田　太郎", "", yamada},
		{"wildcard at the start", "*太郎", "", yamada},
		{"question mark", "山?^太郎", "", yamada},
		{"question mark does not match a component alone", "?Tarou", "", nil},
		{"family name alone does not match without fuzzy matching", "山田", "", nil},
		{"given name alone does not match without fuzzy matching", "太郎", "", nil},
		{"variant kanji: 高橋 finds 髙橋", "高橋*", "", []string{"髙橋"}},
		{"variant kanji as typed", "髙橋*", "", []string{"髙橋"}},
		{"variant kanji exact", "高橋^花子", "", []string{"髙橋"}},
		{"katakana of 髙橋", "タカハシ*", "", []string{"髙橋"}},
		{"half-width katakana of 髙橋", "ﾀｶﾊｼ*", "", []string{"髙橋"}},
		{"romaji of 髙橋", "takahashi^hanako", "", []string{"髙橋"}},
		{"Chinese ideographic, UTF-8 and GB18030", "王*", "", []string{"chrX1", "chrX2"}},
		{"traditional and simplified are different", "王^小東", "", []string{"chrX1"}},
		{"Chinese romaji", "Wang^XiaoDong", "", []string{"chrX1", "chrX2"}},
		{"Latin-1", "buc^jérôme", "", []string{"Latin-1"}},
		{"fuzzy: family name", "山田", "fuzzymatching=true", yamada},
		{"fuzzy: start of the given name", "太", "fuzzymatching=true", yamada},
		{"fuzzy: start of the romaji given name", "Tar", "fuzzymatching=true", yamadaRomaji},
		{"fuzzy: start of the phonetic given name", "たろ", "fuzzymatching=true", yamadaKana},
		{"fuzzy: start of the family name", "Taka", "fuzzymatching=true", []string{"髙橋"}},
		{"fuzzy: variant kanji given name", "花子", "fuzzymatching=true", []string{"髙橋"}},
		{"fuzzy off explicitly", "太", "fuzzymatching=false", nil},
		{"name and patient ID", "山田*", "PatientID=H31EXAMPLE", []string{"chrH31"}},
		{"name and date", "山田*", "StudyDate=20240401-20240430", []string{"H.3.1 CT", "H.3.2 MR"}},
		{"name and modality", "ヤマダ*", "ModalitiesInStudy=CR", []string{"chrJapMulti", "chrJapMultiExplicitIR6"}},
		{"referring physician in romaji", "", "ReferringPhysicianName=suzuki*", []string{"H.3.1 CT"}},
		{"referring physician in kanji", "", "ReferringPhysicianName=" + url.QueryEscape("鈴木*"), []string{"H.3.1 CT", "H.3.2 MR"}},
		// すずき (H.3.1's phonetic group, hiragana) and ｽｽﾞｷ fold alike.
		{"referring physician in half-width katakana", "", "ReferringPhysicianName=" + url.QueryEscape("ｽｽﾞｷ*"), []string{"H.3.1 CT", "H.3.2 MR"}},
		{"referring physician, exact whole group", "", "ReferringPhysicianName=" + url.QueryEscape("鈴木^一郎"), []string{"H.3.1 CT", "H.3.2 MR"}},
		{"referring physician, exact family name alone does not match", "", "ReferringPhysicianName=" + url.QueryEscape("鈴木"), nil},
		{"Japanese study description", "", "StudyDescription=" + url.QueryEscape("胸部CT"), []string{"H.3.1 CT"}},
		{"Japanese study description wildcard", "", "StudyDescription=" + url.QueryEscape("頭部*"), []string{"H.3.2 MR"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var params []string
			if tc.pn != "" {
				params = append(params, "PatientName="+url.QueryEscape(tc.pn))
			}
			if tc.extra != "" {
				params = append(params, tc.extra)
			}
			q := strings.Join(params, "&")
			if d := cmp.Diff(sorted(tc.want), studies(t, find(t, q))); d != "" {
				typed, _ := url.QueryUnescape(q)
				t.Errorf("GET /studies?%s (-want +got):\n%s", typed, d)
			}
		})
	}

	// The answer carries each name decoded into its component groups (PS3.18 F.2.2), as the object spells it.
	t.Run("decoded names", func(t *testing.T) {
		want := map[string]map[string]string{
			"chrH31":                 {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"},
			"chrH32":                 {"Alphabetic": "ﾔﾏﾀﾞ^ﾀﾛｳ", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"},
			"chrX1":                  {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東"},
			"chrX2":                  {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小东"},
			"chrJapMulti":            {"Alphabetic": "やまだ^たろう"},
			"chrJapMultiExplicitIR6": {"Alphabetic": "やまだ^たろう"},
			"H.3.1 CT":               {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"},
			"髙橋":                     {"Alphabetic": "Takahashi^Hanako", "Ideographic": "髙橋^花子", "Phonetic": "たかはし^はなこ"},
			"Latin-1":                {"Alphabetic": "Buc^Jérôme"},
			"ASCII":                  {"Alphabetic": "Tanaka^Yuki"},
		}
		got := map[string]map[string]string{}
		for l := range want {
			a := find(t, "StudyInstanceUID="+uid[l])
			if len(a.objs) != 1 {
				t.Fatalf("study %s: %d answers", l, len(a.objs))
			}
			got[l] = pnGroups(t, a.objs[0]["00100010"])
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("PatientName (-want +got):\n%s", d)
		}
	})

	t.Run("decoded text attributes", func(t *testing.T) {
		cases := []struct{ study, tag, want string }{
			{"H.3.1 CT", "00081030", "胸部CT"},
			{"H.3.1 CT", "00080090", "Suzuki^Ichiro=鈴木^一郎=すずき^いちろう"},
			{"H.3.2 MR", "00081030", "頭部MRI"},
			{"H.3.2 MR", "00080090", "ｽｽﾞｷ^ｲﾁﾛｳ=鈴木^一郎=すずき^いちろう"},
			{"髙橋", "00081030", "腹部超音波・胸部X線"},
			{"Latin-1", "00081030", "Capture d'écran"},
			{"chrH31", "00080201", "-0400"}, // TimezoneOffsetFromUTC, returned when present
		}
		for _, tc := range cases {
			a := find(t, "StudyInstanceUID="+uid[tc.study])
			if got := a.objs[0][tc.tag].text(); got != tc.want {
				t.Errorf("study %s: %s = %q, want %q", tc.study, tc.tag, got, tc.want)
			}
		}
		path := "/studies/" + uid["H.3.2 MR"] + "/series"
		a := qidoGet(t, e, path).mustOK(t, path)
		if len(a.objs) != 1 || a.objs[0]["0008103E"].text() != "T1 SE ｼﾞｸ" {
			t.Errorf("H.3.2 series description: %s", a.body)
		}
	})

	// P0001 of HOSP_A (Yamada) and P0001 of HOSP_B (Takahashi) are two people: the second does not rename the first.
	t.Run("same patient ID, different issuers", func(t *testing.T) {
		a := find(t, "PatientID=P0001")
		got := map[string]string{}
		for _, o := range a.objs {
			got[label[o["0020000D"].text()]] = o["00100021"].text() + " " + o["00100010"].text()
		}
		want := map[string]string{
			"H.3.1 CT": "HOSP_A Yamada^Tarou=山田^太郎=やまだ^たろう",
			"H.3.2 MR": "HOSP_A Yamada^Tarou=山田^太郎=やまだ^たろう",
			"髙橋":       "HOSP_B Takahashi^Hanako=髙橋^花子=たかはし^はなこ",
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("PatientID=P0001 (-want +got):\n%s", d)
		}
		for _, c := range []struct {
			issuer string
			want   []string
		}{{"HOSP_A", []string{"H.3.1 CT", "H.3.2 MR"}}, {"HOSP_B", []string{"髙橋"}}, {"HOSP_C", nil}} {
			if d := cmp.Diff(sorted(c.want), studies(t, find(t, "PatientID=P0001&IssuerOfPatientID="+c.issuer))); d != "" {
				t.Errorf("issuer %s (-want +got):\n%s", c.issuer, d)
			}
		}
	})

	t.Run("counts and modalities", func(t *testing.T) {
		got := map[string]string{}
		for _, l := range []string{"H.3.1 CT", "H.3.2 MR", "髙橋", "Latin-1", "ASCII"} {
			o := find(t, "StudyInstanceUID="+uid[l]).objs[0]
			got[l] = sortedValues(o["00080061"].text()) + " " + o["00201206"].text() + " " + o["00201208"].text()
		}
		want := map[string]string{ // ModalitiesInStudy, series, instances: dicomtest.Dataset's five studies
			"H.3.1 CT": "CT 1 8",
			"H.3.2 MR": "MR 1 4",
			"髙橋":       `CR\US 3 9`,
			"Latin-1":  "OT 2 8",
			"ASCII":    "OT 1 4",
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("ModalitiesInStudy, NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances (-want +got):\n%s", d)
		}
	})
}

// pnGroups returns the component groups of the first value of a PN attribute.
func pnGroups(t *testing.T, a qidoAttr) map[string]string {
	t.Helper()
	if a.VR != "PN" || len(a.Value) == 0 {
		t.Errorf("PN attribute is %+v", a)
		return nil
	}
	m, ok := a.Value[0].(map[string]any)
	if !ok {
		t.Errorf("PN value is %T, want an object of component groups", a.Value[0])
		return nil
	}
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}
