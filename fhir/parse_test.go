package fhir_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"renkei"
	"renkei/fhir"
)

var jst = time.FixedZone("JST", 9*60*60)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issuesOf returns the issues of a Parse error, failing the test when err is not a *fhir.ValidationError.
func issuesOf(t testing.TB, err error) []fhir.Issue {
	t.Helper()
	var ve *fhir.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *fhir.ValidationError", err)
	}
	return ve.Issues
}

func locations(issues []fhir.Issue, sev fhir.Severity) []string {
	var out []string
	for _, is := range issues {
		if is.Severity == sev {
			out = append(out, is.Location)
		}
	}
	return out
}

func TestParseRecord(t *testing.T) {
	im, err := fhir.Parse(read(t, "record_collection.json"))
	if err != nil {
		t.Fatalf("Parse: %v (%v)", err, issuesOf(t, err))
	}
	key := renkei.PatientKey{Issuer: "urn:oid:1.2.392.100495.20.3.51.11319876543", ID: "000123"}
	fact := func(id, author, inst string, at time.Time) renkei.Fact {
		return renkei.Fact{InstitutionName: inst, Patient: key, Author: author, RecordedAt: at, Source: "fhir", SourceID: id}
	}
	pdf, _ := base64.StdEncoding.DecodeString("JVBERi0xLjQKJSDpgIDpmaLmmYLjgrXjg57jg6rjg7wgKHRlc3QpCjEgMCBvYmogPDwgL1R5cGUgL0NhdGFsb2cgPj4gZW5kb2JqCnRyYWlsZXIgPDwgL1Jvb3QgMSAwIFIgPj4KJSVFT0YK")
	want := &fhir.Import{
		Patient: &fhir.Patient{
			ID:          "pt-000123",
			Identifiers: []fhir.Identifier{{System: "urn:oid:1.2.392.100495.20.3.51.11319876543", Value: "000123"}},
			Name:        "=田中^花子=タナカ^ハナコ",
			BirthDate:   "1948-03-15",
			Gender:      "female",
		},
		Allergies: []renkei.Allergy{
			{
				Fact:      fact("alg-penicillin", "港 太郎", "港診療所", time.Date(2024, 4, 2, 10, 15, 0, 0, jst)),
				Category:  renkei.AllergyDrug,
				Substance: "ペニシリン系抗菌薬",
				Codes:     []renkei.Coding{{System: fhir.SystemJFAGYMedication, Code: "GCM6111400D2ZZZ", Display: "【成分名】ベンジルペニシリンカリウム"}},
				Reaction:  "蕁麻疹、呼吸困難",
				Severity:  "severe",
				Onset:     "2015-06",
				Status:    "active",
			},
			{
				Fact:      fact("alg-saba", "本人", "港診療所", time.Date(2024, 7, 10, 0, 0, 0, 0, jst)),
				Category:  renkei.AllergyFood,
				Substance: "さば",
				Codes:     []renkei.Coding{{System: fhir.SystemJFAGYFood, Code: "J9FC11310000", Display: "さば"}},
				Status:    "active",
			},
		},
		Medications: []renkei.Medication{
			{
				Fact: fact("med-carbocisteine", "港 太郎", "", time.Date(2024, 5, 1, 9, 30, 0, 0, jst)),
				Drug: "カルボシステイン錠250mg",
				Codes: []renkei.Coding{
					{System: fhir.SystemYJ, Code: "2233002F1280", Display: "カルボシステイン錠２５０ｍｇ"},
					{System: "urn:oid:1.2.392.200119.4.403.1", Code: "103831601", Display: "カルボシステイン錠２５０ｍｇ"},
				},
				Dose: "1錠", Route: "内服", Frequency: "1日3回毎食後", Start: "2024-05-01", End: "2024-05-14", Status: "active",
			},
			{
				Fact:         fact("med-lemborexant", "", "", time.Date(2024, 5, 1, 9, 30, 0, 0, jst)),
				Drug:         "デエビゴ錠２．５ｍｇ",
				Codes:        []renkei.Coding{{System: fhir.SystemHOT9, Code: "127031001", Display: "デエビゴ錠２．５ｍｇ"}},
				Dose:         "1錠",
				Frequency:    "1日1回 就寝前",
				Start:        "2024-03-01",
				PrescribedBy: "中央病院",
				Status:       "active",
			},
		},
		Conditions: []renkei.Condition{
			{
				Fact:   fact("cond-dm2", "港 太郎", "", time.Date(2024, 4, 2, 10, 20, 0, 0, jst)),
				Name:   "2型糖尿病",
				Codes:  []renkei.Coding{{System: fhir.SystemICD10, Code: "E11.9", Display: "2型糖尿病・合併症なし"}},
				Onset:  "2012",
				Status: "active",
			},
			{
				Fact:      fact("cond-angina", "", "", time.Time{}),
				Name:      "狭心症疑い",
				Codes:     []renkei.Coding{{System: fhir.SystemMEDISDiseaseKey, Code: "20058911", Display: "狭心症"}},
				Onset:     "2024-04-20",
				Suspected: true,
				Status:    "active",
			},
		},
		Documents: []fhir.Document{{
			Document: renkei.Document{
				Fact:        fact("doc-summary", "中央 一郎", "港診療所", time.Date(2024, 3, 31, 17, 0, 0, 0, jst)),
				Kind:        renkei.DocDischargeSummary,
				Title:       "退院時サマリー（循環器内科）",
				Date:        "2024-03-31",
				ContentType: "application/pdf",
				Size:        108,
			},
			Data: pdf,
		}},
		InstitutionCodes: map[fhir.Ref]string{
			{Type: "AllergyIntolerance", ID: "alg-penicillin"}: "1319876543",
			{Type: "AllergyIntolerance", ID: "alg-saba"}:       "1319876543",
			{Type: "DocumentReference", ID: "doc-summary"}:     "1319876543",
		},
	}
	if diff := cmp.Diff(want, im, cmpopts.IgnoreFields(fhir.Import{}, "Warnings")); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	// The note on the second allergy is not kept: say so.
	if got, wantLoc := locations(im.Warnings, fhir.Warning), []string{"Bundle.entry[3].resource.note[0]"}; !cmp.Equal(got, wantLoc) {
		t.Errorf("warnings at %v, want %v", got, wantLoc)
	}
}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		file     string
		counts   [4]int // allergies, medications, conditions, documents
		warnings []string
	}{
		{"transaction_clins.json", [4]int{1, 1, 1, 0}, []string{
			"Bundle.entry[4].resource.medicationCodeableConcept.coding[1].system", // institution-local drug code, with its name
			"Bundle.entry[4].resource.dosageInstruction[0].text",                  // "28日分,自己調節可" is not structured
			"Bundle.entry[5].resource.meta.tag",                                   // 未告知: not imported
		}},
		{"allergy_single.json", [4]int{1, 0, 0, 0}, nil},
		{"searchset_warnings.json", [4]int{0, 0, 0, 0}, []string{
			"Bundle.entry[2].resource.issue[0]",           // the server's OperationOutcome
			"Bundle.entry[1].resource.verificationStatus", // refuted: not imported
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			im, err := fhir.Parse(read(t, tc.file))
			if err != nil {
				t.Fatalf("Parse: %v", issuesOf(t, err))
			}
			got := [4]int{len(im.Allergies), len(im.Medications), len(im.Conditions), len(im.Documents)}
			if got != tc.counts {
				t.Errorf("counts %v, want %v", got, tc.counts)
			}
			if diff := cmp.Diff(tc.warnings, locations(im.Warnings, fhir.Warning), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			for _, w := range im.Warnings {
				if w.MessageJa == "" || w.Message == "" {
					t.Errorf("warning %v has no message", w)
				}
			}
		})
	}
}

func TestParseCLINS(t *testing.T) {
	im, err := fhir.Parse(read(t, "transaction_clins.json"))
	if err != nil {
		t.Fatal(issuesOf(t, err))
	}
	member := renkei.PatientKey{Issuer: "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID", ID: "00012345:あいう:１８７:05"}
	a := im.Allergies[0]
	if a.Patient != member || a.Author != "看護師 A" || a.InstitutionName != "東京テスト病院" || a.Reaction != "口の周りのしびれ" || a.Severity != "mild" {
		t.Errorf("allergy = %+v", a)
	}
	m := im.Medications[0]
	if m.Author != "医学 一郎" || m.Dose != "1錠" || m.Frequency != "1日1回 就寝前" || m.Route != "経口" || m.Start != "2021-07-12" || m.Status != "completed" {
		t.Errorf("medication = %+v", m)
	}
	if code := im.InstitutionCodes[fhir.Ref{Type: "MedicationRequest", ID: m.SourceID}]; code != "1318814790" {
		t.Errorf("institution code %q", code)
	}
	if !im.Patient.Has(member) {
		t.Errorf("patient %+v does not have %v", im.Patient, member)
	}
}

func TestParseInvalid(t *testing.T) {
	type want struct{ loc, ja string }
	for _, tc := range []struct {
		file string
		want []want
	}{
		{"invalid_allergy_no_code.json", []want{{"Bundle.entry[2].resource.code", "アレルギー 2件目: 原因物質(code)がありません"}}},
		{"invalid_unknown_system.json", []want{{"Bundle.entry[2].resource.code.coding[0].system", "アレルギー 2件目: 原因物質のコード体系"}}},
		{"invalid_medication.json", []want{{"Bundle.entry[1].resource.status", "処方 1件目: 状態(status)の値（finished）"}, {"Bundle.entry[1].resource.intent", "指示の種類(intent)がありません"}}},
		{"invalid_dates.json", []want{{"Bundle.entry[1].resource.onsetDateTime", "日時の形式"}, {"Bundle.entry[1].resource.recordedDate", "2023-02-30"}}},
		{"invalid_url_attachment.json", []want{{"Bundle.entry[1].resource.content[0].attachment.data", "URLだけでは取り込めません"}}},
		{"invalid_unknown_type.json", []want{{"Bundle.entry[1].resource", "（Observation）"}}},
		{"invalid_wrong_type.json", []want{{"Bundle.entry[1].resource.code", "形式が正しくありません"}}},
		{"invalid_wrong_type_nested.json", []want{{"Bundle.entry[1].resource.code.coding[1].display", "形式が正しくありません"}}},
		{"invalid_other_patient.json", []want{{"Bundle.entry[1].resource.patient.reference", "別の患者"}}},
		{"invalid_clinical_status.json", []want{{"Bundle.entry[1].resource.clinicalStatus.coding[0].code", "臨床状態(clinicalStatus)の値（current）"}}},
		{"invalid_modifier.json", []want{{"Bundle.entry[1].resource.modifierExtension[0]", "modifierExtension"}}},
		{"invalid_bundle_type.json", []want{{"Bundle.type", "message"}}},
		{"invalid_transaction_delete.json", []want{{"Bundle.entry[1].request.method", "DELETE"}}},
		{"invalid_clins_condition.json", []want{{"Bundle.entry[1].resource.onsetDateTime", "病名開始日"}, {"Bundle.entry[1].resource.extension[0].valueIdentifier.value", "医療機関コード（12345）"}}},
		{"invalid_do_not_perform.json", []want{{"Bundle.entry[1].resource.doNotPerform", "投与しない"}}},
		{"invalid_hash.json", []want{{"Bundle.entry[1].resource.content[0].attachment.hash", "ハッシュ値"}}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			im, err := fhir.Parse(read(t, tc.file))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", im)
			}
			if im != nil {
				t.Errorf("Parse returned facts with an error")
			}
			if k := renkei.ErrorKind(err); k != renkei.Invalid {
				t.Errorf("kind %v, want invalid", k)
			}
			issues := issuesOf(t, err)
			var got []want
			for _, is := range issues {
				if is.Severity == fhir.Error {
					got = append(got, want{is.Location, is.MessageJa})
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("errors %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].loc != tc.want[i].loc || !strings.Contains(got[i].ja, tc.want[i].ja) {
					t.Errorf("error %d = %q %q, want %q containing %q", i, got[i].loc, got[i].ja, tc.want[i].loc, tc.want[i].ja)
				}
			}
			// The user's message is the first error, in Japanese.
			if msg := renkei.ErrorMessageIn(err, "ja"); !strings.Contains(msg, tc.want[0].ja) {
				t.Errorf("user message %q does not contain %q", msg, tc.want[0].ja)
			}
		})
	}
}

func TestParseHostile(t *testing.T) {
	bigAttachment := `{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"contentType":"application/pdf","data":"` +
		base64.StdEncoding.EncodeToString(make([]byte, fhir.MaxAttachmentSize+3)) + `"}}]}`
	for _, tc := range []struct {
		name string
		data []byte
		kind renkei.Kind
		loc  string
	}{
		{"deep nesting", []byte(`{"resourceType":"Patient","x":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`), renkei.Invalid, "Patient.x" + strings.Repeat("[0]", 63)},
		{"too large", append([]byte(`{"resourceType":"Patient","x":"`), make([]byte, fhir.MaxSize)...), renkei.TooLarge, "$"},
		{"31 digits", []byte(`{"resourceType":"AllergyIntolerance","onsetAge":{"value":1234567890123456789012345678901}}`), renkei.Invalid, "AllergyIntolerance.onsetAge.value"},
		{"beyond float64", []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","x":1e400}}]}`), renkei.Invalid, "Bundle.entry[0].resource.x"},
		{"beyond int64", []byte(`{"resourceType":"Patient","x":[1, 99999999999999999999]}`), renkei.Invalid, "Patient.x[1]"},
		{"invalid UTF-8", []byte("{\"resourceType\":\"Patient\",\"name\":[{\"text\":\"\xff\xfe\"}]}"), renkei.Invalid, "$"},
		{"duplicate key", []byte(`{"resourceType":"Patient","resourceType":"Bundle"}`), renkei.Invalid, "Patient.resourceType"},
		{"null", []byte(`{"resourceType":"Patient","gender":null}`), renkei.Invalid, "Patient.gender"},
		{"two values", []byte(`{"resourceType":"Patient"} {}`), renkei.Invalid, "$"},
		{"array", []byte(`[{"resourceType":"Patient"}]`), renkei.Invalid, "$"},
		{"empty", nil, renkei.Invalid, "$"},
		{"truncated", []byte(`{"resourceType":"Patient","name":[{"text":"山田`), renkei.Invalid, "Patient.name[0].text"},
		{"no resourceType", []byte(`{"id":"x"}`), renkei.Invalid, "$"},
		{"entry not an array", []byte(`{"resourceType":"Bundle","type":"collection","entry":{"resource":{}}}`), renkei.Invalid, "Bundle.entry"},
		{"string for object", []byte(`{"resourceType":"Condition","subject":"Patient/1","code":{"text":"x"}}`), renkei.Invalid, "Condition.subject"},
		{"big attachment", []byte(bigAttachment), renkei.Invalid, "DocumentReference.content[0].attachment.data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			im, err := fhir.Parse(tc.data)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", im)
			}
			// The depth check runs on the token stream before anything is unmarshalled: 10⁵ arrays cost nothing.
			if d := time.Since(start); tc.name == "deep nesting" && d > 100*time.Millisecond {
				t.Errorf("took %v", d)
			}
			if k := renkei.ErrorKind(err); k != tc.kind {
				t.Errorf("kind %v, want %v (%v)", k, tc.kind, err)
			}
			issues := issuesOf(t, err)
			if issues[0].Location != tc.loc {
				t.Errorf("location %q, want %q (%v)", issues[0].Location, tc.loc, issues[0])
			}
		})
	}
}

func TestParseTypeErrorLocation(t *testing.T) {
	for _, tc := range []struct{ data, loc string }{
		{`{"resourceType":5}`, "$.resourceType"},
		{`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}},{"resource":{"resourceType":["Patient"]}}]}`, "Bundle.entry[1].resource.resourceType"},
		{`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Condition","subject":{"reference":"x"},"code":{"coding":[{"code":"a","system":"s","display":"d"},{"code":{"v":1}}]}}}]}`, "Bundle.entry[0].resource.code.coding[1].code"},
		{`{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"x"},"medicationCodeableConcept":{"text":"x"},"dosageInstruction":[{"doseAndRate":[{"doseQuantity":{"value":"one"}}]}]}`, "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity.value"},
	} {
		_, err := fhir.Parse([]byte(tc.data))
		issues := issuesOf(t, err)
		if issues[0].Location != tc.loc {
			t.Errorf("%s: location %q, want %q (%s)", tc.data, issues[0].Location, tc.loc, issues[0].Message)
		}
	}
}
