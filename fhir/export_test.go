package fhir_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"renkei"
	"renkei/fhir"
)

var (
	minato = renkei.Institution{PK: 7, ID: "minato-clinic", Name: "港診療所", Kind: renkei.Clinic, Code: "1319876543"}
	chuo   = renkei.Institution{PK: 3, ID: "chuo-hospital", Name: "中央病院", NameEn: "Chuo Hospital", Kind: renkei.Hospital, Code: "1311234567"}
	sakura = renkei.Institution{PK: 12, ID: "sakura-home", Name: "さくら苑", Kind: renkei.CareHome} // no 医療機関コード
)

// blobs is a blob store for the tests, keyed by SHA-256 as renkei's is.
type blobs map[string][]byte

func (b blobs) put(data []byte) string {
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:])
	b[key] = data
	return key
}

func (b blobs) read(key string) ([]byte, error) {
	if d, ok := b[key]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("no blob %s", key)
}

// sampleRecord is a record with facts of three institutions, two of them about the patient's local IDs there.
func sampleRecord(store blobs) (fhir.PatientInfo, renkei.Record) {
	patient := fhir.PatientInfo{
		Key:       renkei.PatientKey{Issuer: "minato-clinic", ID: "000123"},
		IDSystem:  fhir.PatientIDSystem("1319876543"),
		Name:      "Tanaka^Hanako=田中^花子=タナカ^ハナコ",
		BirthDate: "19480315",
		Sex:       "F",
	}
	chuoKey := renkei.PatientKey{Issuer: "urn:oid:1.2.392.100495.20.3.51.11311234567", ID: "A-99812"}
	at := func(d, h int) time.Time { return time.Date(2024, 4, d, h, 5, 7, 250_000_000, jst) }
	fact := func(id int64, inst renkei.Institution, key renkei.PatientKey, author string, t time.Time) renkei.Fact {
		return renkei.Fact{ID: id, Institution: inst.PK, InstitutionName: inst.Name, Patient: key, Author: author, RecordedAt: t, Source: "manual"}
	}
	pdf := []byte("%PDF-1.4\n% 退院時サマリー\n%%EOF\n")
	scan := []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0}
	return patient, renkei.Record{
		Allergies: []renkei.Allergy{
			{
				Fact:      fact(1, minato, patient.Key, "港 太郎", at(2, 10)),
				Category:  renkei.AllergyDrug,
				Substance: "ペニシリン系抗菌薬",
				Codes:     []renkei.Coding{{System: fhir.SystemJFAGYMedication, Code: "GCM6111400D2ZZZ", Display: "【成分名】ベンジルペニシリンカリウム"}},
				Reaction:  "蕁麻疹",
				Severity:  "severe",
				Onset:     "2015-06",
				Status:    "active",
			},
			{
				Fact:      fact(2, chuo, chuoKey, "中央 一郎", at(3, 9)),
				Category:  renkei.AllergyFood,
				Substance: "さば",
				Codes:     []renkei.Coding{{System: fhir.SystemJFAGYFood, Code: "J9FC11310000", Display: "さば"}},
				Severity:  "moderate", // with no reaction written
				Onset:     "幼少期",
				Status:    "inactive",
			},
			{
				Fact:      fact(3, sakura, renkei.PatientKey{}, "介護 花子", at(4, 8)),
				Category:  renkei.AllergyOther,
				Substance: "ラテックス",
				Status:    "active",
			},
		},
		Medications: []renkei.Medication{
			{
				Fact:      fact(10, minato, patient.Key, "港 太郎", at(2, 11)),
				Drug:      "カルボシステイン錠250mg",
				Codes:     []renkei.Coding{{System: fhir.SystemYJ, Code: "2233002F1280", Display: "カルボシステイン錠２５０ｍｇ"}, {System: fhir.SystemHOT9, Code: "103831601"}},
				Dose:      "1錠",
				Route:     "内服",
				Frequency: "1日3回毎食後",
				Start:     "2024-04-02",
				End:       "2024-04-15",
				Status:    "active",
			},
			{
				Fact:         fact(11, minato, patient.Key, "港 太郎", at(2, 11)),
				Drug:         "デエビゴ錠2.5mg",
				Codes:        []renkei.Coding{{System: fhir.SystemHOT9, Code: "127031001", Display: "デエビゴ錠２．５ｍｇ"}},
				Dose:         "0.5錠",
				Frequency:    "1日1回 就寝前",
				Start:        "2023-11",
				PrescribedBy: "中央病院",
				Status:       "completed",
			},
			{
				Fact:   fact(12, chuo, chuoKey, "中央 一郎", at(5, 15)),
				Drug:   "ロキソプロフェン錠60mg",
				Status: "stopped",
			},
		},
		Conditions: []renkei.Condition{
			{
				Fact:   fact(20, minato, patient.Key, "港 太郎", at(2, 10)),
				Name:   "2型糖尿病",
				Codes:  []renkei.Coding{{System: fhir.SystemICD10, Code: "E11.9", Display: "2型糖尿病・合併症なし"}},
				Onset:  "2012",
				Status: "active",
			},
			{
				Fact:      fact(21, chuo, chuoKey, "中央 一郎", at(3, 9)),
				Name:      "狭心症",
				Codes:     []renkei.Coding{{System: fhir.SystemMEDISDiseaseKey, Code: "20058911", Display: "狭心症"}},
				Onset:     "2024-03-28",
				Suspected: true,
				Status:    "active",
			},
			{
				Fact: func() renkei.Fact {
					f := fact(22, chuo, chuoKey, "中央 一郎", at(3, 9))
					f.EnteredInError = true
					return f
				}(),
				Name: "十二指腸潰瘍",
			},
		},
		Documents: []renkei.Document{
			{
				Fact:        fact(30, chuo, chuoKey, "中央 一郎", at(6, 17)),
				Kind:        renkei.DocDischargeSummary,
				Title:       "退院時サマリー（循環器内科）",
				Date:        "2024-04-06",
				ContentType: "application/pdf",
				BlobKey:     store.put(pdf),
				Size:        int64(len(pdf)),
			},
			{
				Fact:        fact(31, minato, patient.Key, "港 太郎", at(7, 9)),
				Kind:        renkei.DocOther,
				Title:       "お薬手帳（スキャン）",
				ContentType: "image/jpeg",
				BlobKey:     store.put(scan),
				Size:        int64(len(scan)),
			},
		},
	}
}

func institutions() map[int64]renkei.Institution {
	return map[int64]renkei.Institution{minato.PK: minato, chuo.PK: chuo, sakura.PK: sakura}
}

// imported is what Parse gives back for an exported fact: the bookkeeping Parse defines.
func imported(f renkei.Fact, id string) renkei.Fact {
	f.ID, f.Institution, f.PatientPK, f.Source, f.SourceID = 0, 0, 0, "fhir", id
	return f
}

func TestRecordBundleRoundTrip(t *testing.T) {
	store := blobs{}
	patient, rec := sampleRecord(store)
	out, err := fhir.RecordBundle(patient, rec, institutions())
	if err != nil {
		t.Fatal(err)
	}
	inlined, err := fhir.InlineAttachments(out, store.read)
	if err != nil {
		t.Fatal(err)
	}
	im, err := fhir.Parse(inlined)
	if err != nil {
		t.Fatalf("Parse(RecordBundle): %v", issuesOf(t, err))
	}
	if len(im.Warnings) > 0 {
		t.Errorf("warnings on renkei's own output: %v", im.Warnings)
	}

	want := rec
	want.Allergies = append([]renkei.Allergy(nil), rec.Allergies...)
	for i := range want.Allergies {
		want.Allergies[i].Fact = imported(want.Allergies[i].Fact, fmt.Sprint("allergy-", want.Allergies[i].ID))
	}
	want.Allergies[2].Patient = patient.Key // a fact with no local patient of its own is about the Bundle's Patient
	want.Medications = append([]renkei.Medication(nil), rec.Medications...)
	for i := range want.Medications {
		want.Medications[i].Fact = imported(want.Medications[i].Fact, fmt.Sprint("medication-", want.Medications[i].ID))
	}
	want.Conditions = append([]renkei.Condition(nil), rec.Conditions...)
	for i := range want.Conditions {
		want.Conditions[i].Fact = imported(want.Conditions[i].Fact, fmt.Sprint("condition-", want.Conditions[i].ID))
	}
	var gotDocs []renkei.Document
	for _, d := range im.Documents {
		d.BlobKey = store.put(d.Data) // what the caller does
		gotDocs = append(gotDocs, d.Document)
	}
	want.Documents = append([]renkei.Document(nil), rec.Documents...)
	for i := range want.Documents {
		want.Documents[i].Fact = imported(want.Documents[i].Fact, fmt.Sprint("document-", want.Documents[i].ID))
	}
	got := renkei.Record{Allergies: im.Allergies, Medications: im.Medications, Conditions: im.Conditions, Documents: gotDocs}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}

	if diff := cmp.Diff(patient, im.Patient.Info()); diff != "" {
		t.Errorf("patient (-want +got):\n%s", diff)
	}
	// The caller maps each fact to its institution by code; the care home has none and is known by name.
	for _, tc := range []struct {
		ref  fhir.Ref
		code string
	}{
		{fhir.Ref{Type: "AllergyIntolerance", ID: "allergy-1"}, minato.Code},
		{fhir.Ref{Type: "Condition", ID: "condition-21"}, chuo.Code},
		{fhir.Ref{Type: "DocumentReference", ID: "document-30"}, chuo.Code},
		{fhir.Ref{Type: "AllergyIntolerance", ID: "allergy-3"}, ""},
	} {
		if got := im.InstitutionCodes[tc.ref]; got != tc.code {
			t.Errorf("institution of %v = %q, want %q", tc.ref, got, tc.code)
		}
	}
}

// resources decodes a Bundle's entries as generic JSON.
func resources(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var b struct {
		Type  string `json:"type"`
		Entry []struct {
			FullURL  string         `json:"fullUrl"`
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, e := range b.Entry {
		if !strings.HasPrefix(e.FullURL, "urn:uuid:") {
			t.Errorf("fullUrl %q is not a urn:uuid", e.FullURL)
		}
		out = append(out, e.Resource)
	}
	return out
}

func TestRecordBundleShape(t *testing.T) {
	store := blobs{}
	patient, rec := sampleRecord(store)
	out, err := fhir.RecordBundle(patient, rec, institutions())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := fhir.RecordBundle(patient, rec, institutions())
	if string(out) != string(again) {
		t.Error("RecordBundle is not deterministic")
	}
	var types []string
	for _, r := range resources(t, out) {
		types = append(types, r["resourceType"].(string))
		meta, _ := r["meta"].(map[string]any)
		switch r["resourceType"] {
		case "Provenance":
		default:
			if p, _ := meta["profile"].([]any); len(p) != 1 || !strings.HasPrefix(p[0].(string), "http://jpfhir.jp/fhir/core/StructureDefinition/JP_") {
				t.Errorf("%s %s: meta.profile %v is not JP Core", r["resourceType"], r["id"], meta["profile"])
			}
		}
		switch r["id"] {
		case "org-3":
			ids := r["identifier"].([]any)
			id := ids[0].(map[string]any)
			if id["system"] != fhir.SystemInstitutionNo || id["value"] != "1311234567" || r["name"] != "中央病院" {
				t.Errorf("organization %v", r)
			}
		case "medication-11":
			if rep := r["reportedReference"].(map[string]any); rep["display"] != "中央病院" {
				t.Errorf("reportedReference %v", rep)
			}
		case "document-30":
			at := r["content"].([]any)[0].(map[string]any)["attachment"].(map[string]any)
			if !strings.HasPrefix(at["url"].(string), "Binary/") || at["data"] != nil {
				t.Errorf("attachment %v", at)
			}
		}
	}
	want := []string{"Patient", "Organization", "Organization", "Organization",
		"AllergyIntolerance", "AllergyIntolerance", "AllergyIntolerance", "Condition", "Condition", "Condition",
		"MedicationRequest", "MedicationRequest", "MedicationRequest", "DocumentReference", "DocumentReference",
		"Provenance", "Provenance", "Provenance"}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

func TestRecordBundleRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  renkei.Record
	}{
		{"allergy status", renkei.Record{Allergies: []renkei.Allergy{{Substance: "さば", Status: "gone"}}}},
		{"onset date that does not exist", renkei.Record{Conditions: []renkei.Condition{{Name: "x", Onset: "2023-02-30"}}}},
		{"medication without drug", renkei.Record{Medications: []renkei.Medication{{Dose: "1錠"}}}},
		{"medication start", renkei.Record{Medications: []renkei.Medication{{Drug: "x", Start: "来週"}}}},
		{"document kind", renkei.Record{Documents: []renkei.Document{{Kind: "letter", ContentType: "application/pdf"}}}},
		{"same ID twice", renkei.Record{Allergies: []renkei.Allergy{{Fact: renkei.Fact{ID: 1}, Substance: "a"}, {Fact: renkei.Fact{ID: 1}, Substance: "b"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fhir.RecordBundle(fhir.PatientInfo{Key: renkei.PatientKey{ID: "1"}}, tc.rec, nil)
			if renkei.ErrorKind(err) != renkei.Invalid {
				t.Errorf("err = %v, want kind invalid", err)
			}
		})
	}
}
