package fhir_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"renkei"
	"renkei/fhir"
)

func sampleReferral(store blobs) renkei.Referral {
	sent := time.Date(2024, 6, 3, 1, 0, 0, 0, time.UTC) // 10:00 JST
	return renkei.Referral{
		ID: 4711, Kind: renkei.KindReferral,
		FromInstitution: minato.PK, FromName: minato.Name, FromUserName: "港 太郎",
		ToInstitution: chuo.PK, ToName: chuo.Name, ToDepartment: "循環器内科", ToDoctor: "野口 英世",
		Patient: renkei.PatientKey{Issuer: "minato-clinic", ID: "000123"}, Status: renkei.StatusSent,
		Version: 2, CreatedAt: sent.Add(-time.Hour), UpdatedAt: sent, SentAt: &sent,
		Letter: renkei.Letter{
			Purpose:        "狭心症疑いにつき精査加療をお願いいたします。",
			Diagnosis:      "狭心症疑い\n2型糖尿病",
			ChiefComplaint: "労作時の胸部圧迫感",
			History:        "2012年 2型糖尿病\n父: 心筋梗塞",
			PresentIllness: "2024年4月頃より階段昇降時に胸部圧迫感 <5分> あり。",
			Course:         "ニトログリセリン舌下で軽快 & 再発あり。",
			TestResults:    "心電図: II, III, aVF で ST 低下\nHbA1c 7.2%",
			Medications:    "カルボシステイン錠250mg 1錠 1日3回毎食後",
			Allergies:      "ペニシリン系抗菌薬（蕁麻疹）",
			Remarks:        "ご多忙中恐縮ですが、よろしくお願いいたします。",
			FollowUp:       "精査後は当院での経過観察を希望します。",
			Author:         "港 太郎",
			Department:     "内科",
			AttachmentKey:  store.put([]byte("%PDF-1.4\n% 紹介状\n%%EOF\n")),
			AttachmentType: "application/pdf",
		},
	}
}

func TestLetterRoundTrip(t *testing.T) {
	store := blobs{}
	patient, rec := sampleRecord(store)
	ref := sampleReferral(store)
	allergies, meds := rec.Allergies[:1], rec.Medications[:2]
	out, err := fhir.LetterDocument(ref, minato, chuo, patient, allergies, meds)
	if err != nil {
		t.Fatal(err)
	}
	inlined, err := fhir.InlineAttachments(out, store.read)
	if err != nil {
		t.Fatal(err)
	}
	li, err := fhir.ParseLetterDocument(inlined)
	if err != nil {
		t.Fatalf("ParseLetterDocument: %v", issuesOf(t, err))
	}
	if len(li.Warnings) > 0 {
		t.Errorf("warnings on renkei's own letter: %v", li.Warnings)
	}
	want := ref.Letter
	want.AttachmentKey = "" // the caller stores Attachments[0] and sets it
	if diff := cmp.Diff(want, li.Letter); diff != "" {
		t.Errorf("letter (-want +got):\n%s", diff)
	}
	if len(li.Attachments) != 1 || store.put(li.Attachments[0].Data) != ref.Letter.AttachmentKey {
		t.Errorf("attachments %+v", li.Attachments)
	}
	if li.Version != 2 || li.Date != "2024-06-03T10:00:00+09:00" || li.Identifier != "1319876543^2024^renkei-referral-4711-v2" {
		t.Errorf("version %d, date %q, identifier %q", li.Version, li.Date, li.Identifier)
	}
	if diff := cmp.Diff(fhir.Party{Institution: "港診療所", InstitutionCode: "1319876543", Department: "内科", Doctor: "港 太郎"}, li.From); diff != "" {
		t.Errorf("from (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(fhir.Party{Institution: "中央病院", InstitutionCode: "1311234567", Department: "循環器内科", Doctor: "野口 英世"}, li.To); diff != "" {
		t.Errorf("to (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(patient, li.Patient.Info()); diff != "" {
		t.Errorf("patient (-want +got):\n%s", diff)
	}
	// The facts come back with their clinical content; their source is the letter.
	clinical := cmpopts.IgnoreFields(renkei.Fact{}, "ID", "Institution", "InstitutionName", "Patient", "Source", "SourceID")
	if diff := cmp.Diff(allergies, li.Allergies, clinical, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("allergies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(meds, li.Medications, clinical, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("medications (-want +got):\n%s", diff)
	}
}

func TestLetterDocumentShape(t *testing.T) {
	store := blobs{}
	patient, _ := sampleRecord(store)
	ref := sampleReferral(store)
	ref.Letter.Purpose, ref.Letter.Remarks = "", "" // 紹介目的 is required: an empty one says why
	out, err := fhir.LetterDocument(ref, minato, chuo, patient, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := resources(t, out)
	comp := rs[0]
	if comp["resourceType"] != "Composition" {
		t.Fatalf("first entry is %v", comp["resourceType"])
	}
	typ := comp["type"].(map[string]any)["coding"].([]any)[0].(map[string]any)
	if typ["code"] != "57133-1" || typ["system"] != fhir.SystemDocType {
		t.Errorf("type %v", typ)
	}
	codes := func(secs []any) []string {
		var out []string
		for _, s := range secs {
			c := s.(map[string]any)["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)
			if c["system"] != fhir.SystemDocSection {
				t.Errorf("section system %v", c["system"])
			}
			out = append(out, c["code"].(string))
		}
		return out
	}
	top := comp["section"].([]any)
	if diff := cmp.Diff([]string{"920", "910", "300", "230"}, codes(top)); diff != "" {
		t.Errorf("sections (-want +got):\n%s", diff)
	}
	body := top[2].(map[string]any)["section"].([]any)
	if diff := cmp.Diff([]string{"950", "340", "360", "370", "510", "620", "330", "420", "430"}, codes(body)); diff != "" {
		t.Errorf("構造情報 sections (-want +got):\n%s", diff)
	}
	purpose := body[0].(map[string]any)
	if purpose["text"] != nil || purpose["emptyReason"] == nil {
		t.Errorf("empty 紹介目的: %v", purpose)
	}
	div := body[2].(map[string]any)["text"].(map[string]any)["div"].(string)
	if want := `<div xmlns="http://www.w3.org/1999/xhtml">2024年4月頃より階段昇降時に胸部圧迫感 &lt;5分&gt; あり。</div>`; div != want {
		t.Errorf("div %s, want %s", div, want)
	}
	if ref.Letter.Author = ""; true {
		ref.FromUserName = ""
		if _, err := fhir.LetterDocument(ref, minato, chuo, patient, nil, nil); renkei.ErrorKind(err) != renkei.Invalid {
			t.Errorf("letter without author: %v", err)
		}
	}
}

func TestParseLetterEMR(t *testing.T) {
	li, err := fhir.ParseLetterDocument(read(t, "letter_emr.json"))
	if err != nil {
		t.Fatalf("ParseLetterDocument: %v", issuesOf(t, err))
	}
	want := renkei.Letter{
		Purpose:        "腹痛精査お願いします。", // from the Encounter the empty section refers to
		Diagnosis:      "上腹部痛、腰痛",
		PresentIllness: "２０２２年６月上旬から夜食後に時々上腹部痛があり、\nだんだんひどくなっている。",
		History:        "2018年　狭心症　２ヶ月治療で軽快。\n2019年　左前腕骨折。\n家族歴: 母　胃がん",
		Allergies:      "サバ & キウイ",
		Medications:    "デエビゴ錠2.5mg 1日1回 就寝前",
		Remarks:        "身体所見: 腹部所見：上腹部圧痛あり\n感染症情報: 特になし\nご多忙中恐縮ですが\u00a0よろしくお願いいたします。",
		Author:         "大河内 勘三郎",
		Department:     "内科",
	}
	if diff := cmp.Diff(want, li.Letter); diff != "" {
		t.Errorf("letter (-want +got):\n%s", diff)
	}
	if li.Version != 2 || li.To.Institution != "東京第一テスト病院" || li.To.Department != "循環器内科" || li.To.Doctor != "野口 英世丸" {
		t.Errorf("version %d, to %+v", li.Version, li.To)
	}
	if len(li.Allergies) != 1 || len(li.Medications) != 1 || len(li.Conditions) != 1 {
		t.Errorf("facts: %d allergies, %d medications, %d conditions", len(li.Allergies), len(li.Medications), len(li.Conditions))
	}
	wantWarnings := []string{
		"Bundle.entry[7].resource", // the Observation: kept as its section's text only
		"Bundle.entry[0].resource.section[2].section[6]",
		"Bundle.entry[0].resource.section[2].section[7]",
	}
	if diff := cmp.Diff(wantWarnings, locations(li.Warnings, fhir.Warning)); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestParseLetterInvalid(t *testing.T) {
	_, err := fhir.ParseLetterDocument(read(t, "invalid_letter.json"))
	if err == nil {
		t.Fatal("accepted")
	}
	got := locations(issuesOf(t, err), fhir.Error)
	want := []string{"Bundle.entry[0].resource.type", "Bundle.entry[0].resource.section[2].section[1].entry[1]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	// A record Bundle is not a letter.
	_, err = fhir.ParseLetterDocument(read(t, "record_collection.json"))
	if got := locations(issuesOf(t, err), fhir.Error); len(got) != 1 || got[0] != "Bundle.type" {
		t.Errorf("collection as a letter: %v", got)
	}
	if !strings.Contains(renkei.ErrorMessage(err), "document") {
		t.Errorf("message %q", renkei.ErrorMessage(err))
	}
}
