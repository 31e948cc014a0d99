package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"renkei/fhir"
)

type factsOut struct {
	Allergies []struct {
		Category, Substance, Reaction, Severity, Status, Source string
		Codes                                                   []struct{ System, Code, Display string }
	}
	Medications []struct{ Drug, Dose, Route, Frequency, Source string }
	Conditions  []struct {
		Name      string
		Suspected bool
	}
}

// TestFHIRRecord: the record exported as a FHIR Bundle imports back field for field; the same Bundle is refused
// for another patient; broken FHIR (wrong types, 10⁵ nesting, huge numbers) gets a located error and stores nothing.
func TestFHIRRecord(t *testing.T) {
	r := newRegion(t)
	clinic := r.as("kato@kita-clinic")
	url := "/api/patients/record?issuer=KITA&patientId=P1"
	if st := clinic.post(url, map[string]any{
		"allergies": []map[string]any{{"category": "drug", "substance": "ペニシリン系抗菌薬", "reaction": "蕁麻疹", "severity": "moderate",
			"codes": []map[string]string{{"system": fhir.SystemJFAGYMedication, "code": "1120000000", "display": "ペニシリン系抗菌薬"}}}},
		"medications": []map[string]any{{"drug": "アムロジピン錠5mg", "dose": "1錠", "route": "内服", "frequency": "1日1回朝食後",
			"codes": []map[string]string{{"system": fhir.SystemYJ, "code": "2171022F1020", "display": "アムロジピン錠5mg"}}}},
		"conditions": []map[string]any{{"name": "2型糖尿病", "codes": []map[string]string{{"system": fhir.SystemICD10, "code": "E11.9"}}}},
	}); st != 201 {
		t.Fatalf("record: %d %s", st, clinic.body)
	}
	if st := clinic.get("/api/patients/record/fhir?issuer=KITA&patientId=P1"); st != 200 {
		t.Fatalf("export: %d %s", st, clinic.body)
	}
	bundle := append([]byte(nil), clinic.body...)
	if !strings.Contains(string(bundle), `"resourceType":"Bundle"`) && !strings.Contains(string(bundle), `"resourceType": "Bundle"`) {
		t.Fatalf("the export is not a Bundle: %.200s", bundle)
	}
	var before factsOut
	clinic.getJSON(url, &before)

	// Another patient: refused, whole.
	if st := clinic.do("POST", "/api/patients/record/fhir?issuer=KITA&patientId=P2", bytes.NewReader(bundle), "Content-Type", "application/fhir+json"); st != 400 ||
		!strings.Contains(string(clinic.body), "別の患者") {
		t.Errorf("importing P1's bundle into P2: %d %s", st, clinic.body)
	}
	// Broken FHIR: each refused with where, nothing stored.
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	wrongType, _ := os.ReadFile("../fhir/testdata/invalid_wrong_type.json")
	for name, body := range map[string]string{
		"wrong type": string(wrongType),
		"deep":       `{"resourceType":"Bundle","type":"collection","entry":` + deep + `}`,
		"huge number": `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/p"},` +
			`"medicationCodeableConcept":{"text":"x"},"dosageInstruction":[{"doseAndRate":[{"doseQuantity":{"value":1` + strings.Repeat("0", 400) + `}}]}]}`,
		"not json": `{"resourceType": "AllergyIntolerance",`,
	} {
		st := clinic.do("POST", "/api/patients/record/fhir?issuer=KITA&patientId=P1", strings.NewReader(body), "Content-Type", "application/fhir+json")
		var problem struct {
			Detail string
			Issues []struct{ Severity, Location, MessageJa string }
		}
		json.Unmarshal(clinic.body, &problem)
		if st != 400 || problem.Detail == "" || len(problem.Issues) == 0 || problem.Issues[0].Location == "" {
			t.Errorf("%s: %d %s", name, st, clinic.body)
		}
	}
	var after factsOut
	clinic.getJSON(url, &after)
	if len(after.Allergies) != 1 || len(after.Medications) != 1 || len(after.Conditions) != 1 {
		t.Fatalf("a refused import stored something: %+v", after)
	}

	// The same patient: every fact comes back with its fields and codes, as a second (imported) entry.
	if st := clinic.do("POST", "/api/patients/record/fhir?issuer=KITA&patientId=P1", bytes.NewReader(bundle), "Content-Type", "application/fhir+json"); st != 201 {
		t.Fatalf("import: %d %s", st, clinic.body)
	}
	clinic.getJSON(url, &after)
	if len(after.Allergies) != 2 || len(after.Medications) != 2 || len(after.Conditions) != 2 {
		t.Fatalf("after the import: %+v", after)
	}
	a, b := after.Allergies[0], before.Allergies[0]
	if a.Source != "fhir" || a.Substance != b.Substance || a.Reaction != b.Reaction || a.Severity != b.Severity || a.Category != b.Category ||
		fmt.Sprint(a.Codes) != fmt.Sprint(b.Codes) {
		t.Errorf("allergy round trip: %+v, was %+v", a, b)
	}
	m, mb := after.Medications[0], before.Medications[0]
	if m.Drug != mb.Drug || m.Route != mb.Route || m.Frequency != mb.Frequency {
		t.Errorf("medication round trip: %+v, was %+v", m, mb)
	}
	if after.Conditions[0].Name != "2型糖尿病" {
		t.Errorf("condition round trip: %+v", after.Conditions[0])
	}
}

// TestFHIRLetter: a sent letter exports as an HS038 FHIR document that reads back to the same letter; a clinic's
// EMR letter (FHIR document) becomes a draft addressed by 医療機関コード.
func TestFHIRLetter(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	r.clinic.Code, r.hospital.Code = "1319876543", "1311234567"
	if err := r.db.PutInstitution(ctx, &r.clinic, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.db.PutInstitution(ctx, &r.hospital, nil); err != nil {
		t.Fatal(err)
	}
	clinic, hospital := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	letter := map[string]string{"purpose": "精査加療のお願い", "diagnosis": "右肺結節", "chiefComplaint": "咳嗽", "history": "高血圧",
		"course": "CTで右上葉に結節", "allergies": "ペニシリン(蕁麻疹)", "remarks": "よろしくお願いします"}
	if st := clinic.post("/api/referrals", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital", "letter": letter}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	id := decodeReferral(t, clinic).ID
	if st := clinic.post(fmt.Sprintf("/api/referrals/%d/send", id), nil); st != 200 {
		t.Fatalf("send: %d %s", st, clinic.body)
	}
	if st := hospital.get(fmt.Sprintf("/api/referrals/%d/letter.fhir.json", id)); st != 200 {
		t.Fatalf("letter.fhir.json: %d %s", st, hospital.body)
	}
	imp, err := fhir.ParseLetterDocument(hospital.body)
	if err != nil {
		t.Fatalf("the exported letter does not read back: %v", err)
	}
	if imp.Letter.Purpose != letter["purpose"] || imp.Letter.Diagnosis != letter["diagnosis"] || imp.Letter.Course != letter["course"] ||
		imp.Letter.Allergies != letter["allergies"] || imp.To.InstitutionCode != "1311234567" {
		t.Errorf("the letter read back: %+v to %+v", imp.Letter, imp.To)
	}

	// The EMR's letter for P1 (the sample's patient ID changed to P1), addressed to the hospital by its code.
	sample, err := os.ReadFile("../fhir/testdata/letter_emr.json")
	if err != nil {
		t.Fatal(err)
	}
	sample = bytes.ReplaceAll(sample, []byte("000999739"), []byte("P1"))
	if st := clinic.do("POST", "/api/referrals/import?issuer=KITA&patientId=P2", bytes.NewReader(sample), "Content-Type", "application/fhir+json"); st != 400 {
		t.Errorf("an EMR letter for P1 imported as P2's: %d %s", st, clinic.body)
	}
	if st := clinic.do("POST", "/api/referrals/import?issuer=KITA&patientId=P1", bytes.NewReader(sample), "Content-Type", "application/fhir+json"); st != 201 {
		t.Fatalf("import letter: %d %s", st, clinic.body)
	}
	var draft struct {
		Status, ToInstitution string
		Letter                struct{ Purpose string }
	}
	json.Unmarshal(clinic.body, &draft)
	if draft.Status != "draft" || draft.ToInstitution != "chuo-hospital" || draft.Letter.Purpose == "" {
		t.Errorf("the imported letter: %s", clinic.body)
	}
}
