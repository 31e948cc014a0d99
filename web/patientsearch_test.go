package web_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"renkei"
)

// studylessPatient makes a clinic patient known only from their clinical record: an allergy recorded against a
// study that was then deleted and purged (the record keeps the patient; the images are gone, as for a patient
// whose CD went back, or whose record came from the EMR's FHIR export).
func (r *region) studylessPatient(id, name string, seed int64) {
	r.t.Helper()
	st := r.stow(r.clinicWrite, id, name, seed, 1)
	doctor := r.as("kato@kita-clinic")
	if s := doctor.post("/api/patients/record?issuer=KITA&patientId="+id, map[string]any{
		"allergies": []map[string]any{{"category": "drug", "substance": "ペニシリン系抗菌薬"}}}); s != 201 {
		r.t.Fatalf("record of %s: %d %s", id, s, doctor.body)
	}
	admin := r.as("admin@kita-clinic")
	for _, path := range []string{"/dicomweb/studies/", "/api/trash/studies/"} { // into the trash, then out of it for good
		if s := admin.do("DELETE", path+st.studyUID, nil); s != 200 && s != 204 {
			r.t.Fatalf("DELETE %s of %s: %d %s", path, id, s, admin.body)
		}
	}
	var left []json.RawMessage
	r.withToken(r.clinicWrite).getJSON("/dicomweb/studies?PatientID="+id, &left)
	if len(left) != 0 {
		r.t.Fatalf("%s still has %d studies", id, len(left))
	}
}

type foundPatient struct {
	Institution, Issuer, PatientID, Name, BirthDate, Sex, LastStudyDate string
	Own                                                                 bool
}

func findPatients(c *client, q, institution string) []foundPatient {
	c.r.t.Helper()
	var out []foundPatient
	path := "/api/patients?q=" + url.QueryEscape(q)
	if institution != "" {
		path += "&institution=" + institution
	}
	c.getJSON(path, &out)
	return out
}

func ids(list []foundPatient) []string {
	var out []string
	for _, p := range list {
		out = append(out, p.PatientID)
	}
	return out
}

// TestFindPatients: the "which patient?" search finds a patient who has no study (known from their record) by
// name in kanji, kana of either width and romaji, and by a lower-case ID prefix; never another institution's
// patient unless a share in force grants them (and then only without the own-institution filter the picker uses);
// each patient it returns is an audit event of the search, once per dedup window, and shared ones say so.
func TestFindPatients(t *testing.T) {
	r := newRegion(t)
	r.studylessPatient("PX77", "Suzuki^Hanako=鈴木^花子=スズキ^ハナコ", 70)
	hospitalWrite, err := r.ids.CreateToken(context.Background(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "h-gw", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	r.stow(hospitalWrite, "PX78", "Suzuki^Ichiro=鈴木^一郎=スズキ^イチロウ", 71, 1)
	clerk := r.as("kato@kita-clinic")

	// The study search, which the picker used before, cannot find her.
	var studies []json.RawMessage
	clerk.getJSON("/api/studies?institution=kita-clinic&name="+url.QueryEscape("鈴木"), &studies)
	if len(studies) != 0 {
		t.Fatalf("the study search finds %d studies of a patient without images", len(studies))
	}

	for _, typed := range []string{"鈴木", "鈴木 花子", "すずき", "ｽｽﾞｷ", "suzuki", "Suzuki Hanako", "はなこ", "px7", "PX77", "ｐｘ７７"} {
		got := findPatients(clerk, typed, "kita-clinic")
		if !slices.Equal(ids(got), []string{"PX77"}) {
			t.Errorf("%q finds %v, want PX77 only (the hospital's PX78 is not the clinic's)", typed, ids(got))
			continue
		}
		if p := got[0]; p.Name != "Suzuki^Hanako=鈴木^花子=スズキ^ハナコ" || p.Issuer != "KITA" || !p.Own || p.LastStudyDate != "" {
			t.Errorf("%q: %+v", typed, p)
		}
	}
	// Without the filter the scope alone applies: the hospital's patient is still not the clinic's to see.
	if got := findPatients(clerk, "px7", ""); !slices.Equal(ids(got), []string{"PX77"}) {
		t.Errorf("px7 across the region finds %v before any share", ids(got))
	}
	if got := findPatients(clerk, "佐藤", "kita-clinic"); !slices.Equal(ids(got), []string{"P2"}) {
		t.Errorf("a patient with images is found too: %v", ids(got))
	}

	// The search is audited as reads of patient data are: one event per patient returned, about that patient.
	clerk = r.as("kato@kita-clinic") // a new session: the searches above are not within its dedup window
	seq := r.lastSeq()
	findPatients(clerk, "すずき", "kita-clinic")
	var mine []renkei.AuditEvent
	for _, e := range r.events(seq) {
		if e.Patient.ID != "" {
			mine = append(mine, e)
		}
	}
	if len(mine) != 1 || mine[0].Patient != (renkei.PatientKey{Issuer: "KITA", ID: "PX77"}) || mine[0].Action != renkei.ActionQuery ||
		mine[0].DataInstitution != r.clinic.PK || mine[0].Actor != "kato@kita-clinic" || mine[0].Detail != "patient search" {
		t.Errorf("the search wrote %+v", mine)
	}
	seq = r.lastSeq()
	findPatients(clerk, "すずき", "kita-clinic")
	for _, e := range r.events(seq) {
		if e.Patient.ID == "PX77" {
			t.Errorf("the same search in the same session within minutes is recorded again: %+v", e)
		}
	}
	// A search that finds nothing read nothing.
	seq = r.lastSeq()
	if got := findPatients(clerk, "zz9", ""); len(got) != 0 {
		t.Errorf("zz9 finds %v", ids(got))
	}
	if ev := r.events(seq); len(ev) != 0 {
		t.Errorf("an empty search wrote %+v", ev)
	}

	// The hospital shares PX78 with the clinic (with his consent): the rule of every other read lets the clinic find
	// him across the region, never among its own patients.
	hospital := r.as("tanaka@chuo-hospital")
	if s := hospital.post("/api/consents", map[string]any{"patientId": "PX78", "scope": []string{"region"}, "method": "paper",
		"document": "JVBERi0xLjQKJcfsj6IKJSVFT0YK"}); s != 201 {
		t.Fatalf("consent: %d %s", s, hospital.body)
	}
	if s := hospital.post("/api/shares", map[string]any{"patientId": "PX78", "toInstitution": "kita-clinic", "purpose": "referral", "days": 7}); s != 201 {
		t.Fatalf("share: %d %s", s, hospital.body)
	}
	seq = r.lastSeq()
	got := findPatients(clerk, "px7", "")
	if !slices.Equal(ids(got), []string{"PX77", "PX78"}) || got[1].Own || got[1].Institution != "chuo-hospital" {
		t.Errorf("after the share px7 finds %+v", got)
	}
	shared := false
	for _, e := range r.events(seq) {
		if e.Patient.ID == "PX78" {
			shared = e.DataInstitution == r.hospital.PK && e.Detail == "patient search: shared"
		}
	}
	if !shared {
		t.Errorf("the shared patient's event: %+v", r.events(seq))
	}
	if got := findPatients(clerk, "px7", "kita-clinic"); !slices.Equal(ids(got), []string{"PX77"}) {
		t.Errorf("the picker's search (own patients) finds %v after the share", ids(got))
	}

	// Patients do not search for patients; nor does a search of nothing run.
	if s := r.withToken(r.clinicWrite).get("/api/patients?q=px"); s != 403 {
		t.Errorf("a gateway token searches patients: %d", s)
	}
	if s := clerk.get("/api/patients?q=" + url.QueryEscape(" * ")); s != 400 {
		t.Errorf("a search of nothing: %d %s", s, clerk.body)
	}
}

// TestPickerStudylessBrowser: a clinic's clerk starts a referral for a patient the clinic knows only from the record
// (no image in renkei): typing the kana finds her and not the hospital's patient of the same family name, the list
// says she has no images, and a lower-case ID prefix chosen with the keys opens the letter, which names her. The
// emergency transfer's picker takes the whole ID typed in lower case and Next.
func TestPickerStudylessBrowser(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	r.studylessPatient("PX77", "Suzuki^Hanako=鈴木^花子=スズキ^ハナコ", 70)
	hospitalWrite, err := r.ids.CreateToken(context.Background(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "h-gw", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	r.stow(hospitalWrite, "PX78", "Suzuki^Ichiro=鈴木^一郎=スズキ^イチロウ", 71, 1)
	ctx, cancel := browser(t)
	defer cancel()
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			screenshot(ctx, t, out, name+"-failed")
			t.Fatalf("%s: %v", name, err)
		}
		screenshot(ctx, t, out, name)
	}
	listed := func(want string) chromedp.Action[chromedp.Void] {
		return poll(`[...document.querySelectorAll('#pick-list li')].map((li) => li.dataset.patientId).join() === '` + want + `'`)
	}
	step("studyless-01-kana", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/referral/new"),
		chromedp.WaitVisible("#pick-id"), chromedp.SendKeys("#pick-id", "すずき"), listed("PX77"))
	if s, _ := liveText(ctx, "#pick-list"); !strings.Contains(s, "鈴木 花子") || !strings.Contains(s, "画像なし") || strings.Contains(s, "一郎") {
		t.Errorf("the candidates for すずき read %q", s)
	}
	step("studyless-02-id", poll(`(document.querySelector('#pick-id').value = '', true)`), chromedp.SendKeys("#pick-id", "px7"), listed("PX77"),
		pickWithKeys("PX77"), chromedp.WaitVisible("#referral-form"))
	if s, _ := liveText(ctx, "#ref-patient"); !strings.Contains(s, "鈴木 花子") {
		t.Errorf("the letter is about %q", s)
	}
	step("studyless-03-transfer", hashRoute("#/emergency/new"), chromedp.WaitVisible("#pick-id"), chromedp.SendKeys("#pick-id", "px77"), listed("PX77"),
		chromedp.Click(`#pick-patient button[type="submit"]`), chromedp.WaitVisible("#transfer-form"))
	if s, _ := liveText(ctx, "#transfer-form"); !strings.Contains(s, "鈴木 花子") || !strings.Contains(s, "ID PX77") {
		t.Errorf("the transfer reads %q", s)
	}
}
