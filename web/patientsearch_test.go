package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"renkei"
	"renkei/internal/dicomtest"
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
	step := stepper(ctx, t, out)
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

// TestReferralForTypedPatient: a patient renkei does not hold at all is typed in with the first letter about them;
// the draft registers them under the clinic's issuer (found by the search at once, and kept by the purge because the
// referral is about them). An ID already registered, a bad birth date or a reverse referral is refused.
func TestReferralForTypedPatient(t *testing.T) {
	r := newRegion(t)
	doctor := r.as("kato@kita-clinic")
	body := func(id string, np map[string]string) map[string]any {
		return map[string]any{"patientId": id, "toInstitution": "chuo-hospital", "letter": map[string]string{"purpose": "精査のお願い"}, "newPatient": np}
	}
	withIssuer := func(b map[string]any, issuer string) map[string]any { b["issuer"] = issuer; return b }
	typed := map[string]string{"name": "高橋 一郎", "kana": "たかはし いちろう", "birthDate": "1950-04-01", "sex": "M"}
	seq := r.lastSeq()
	if s := doctor.post("/api/referrals", body("new-1", typed)); s != 201 {
		t.Fatalf("a referral for a typed patient: %d %s", s, doctor.body)
	}
	var ref struct{ Issuer, PatientID, PatientName string }
	json.Unmarshal(doctor.body, &ref)
	if ref.Issuer != "KITA" || ref.PatientID != "new-1" || ref.PatientName != "=高橋^一郎=たかはし^いちろう" {
		t.Errorf("the draft is about %+v", ref)
	}
	registered := false
	for _, e := range r.events(seq) {
		registered = registered || (e.Action == renkei.ActionReferral && e.Patient.ID == "new-1" && strings.Contains(e.Detail, "registered"))
	}
	if !registered {
		t.Errorf("no audit event says the patient was registered: %+v", r.events(seq))
	}
	if _, err := r.db.Purge(context.Background(), r.clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"NEW", "たかはし", "ﾀｶﾊｼ", "高橋 一"} {
		if got := findPatients(doctor, q, "kita-clinic"); !slices.Equal(ids(got), []string{"new-1"}) || got[0].BirthDate != "19500401" || got[0].Sex != "M" {
			t.Errorf("%q finds %+v after the purge", q, got)
		}
	}

	for name, c := range map[string]struct {
		body map[string]any
		want int
	}{
		"an ID already registered": {body("P1", typed), 409},
		"the same typed ID again":  {body("new-1", typed), 409},
		"no birth date":            {body("new-2", map[string]string{"name": "高橋 二郎"}), 400},
		"a birth date to come":     {body("new-2", map[string]string{"name": "高橋 二郎", "birthDate": r.clock.Now().AddDate(0, 0, 2).Format("2006-01-02")}), 400},
		"no name":                  {body("new-2", map[string]string{"birthDate": "1950-04-01"}), 400},
		"a backslash in the ID":    {body(`new\2`, typed), 400},
		"another issuer":           {withIssuer(body("new-2", typed), "OTHER"), 400},
	} {
		if s := doctor.post("/api/referrals", c.body); s != c.want {
			t.Errorf("%s: %d, want %d: %s", name, s, c.want, doctor.body)
		}
	}
	if got := findPatients(doctor, "new-2", ""); len(got) != 0 {
		t.Errorf("a refused draft registered %+v", got)
	}
}

// TestTypedPatientBrowser: the patient is in no list; the clerk reads how to go on, opens the form under the
// picker (the ID already filled with what was searched), types the name, kana, birth date and sex, and writes the
// letter, which names them; saved, the patient is found by the picker.
func TestTypedPatientBrowser(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	step("typed-01-none", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/referral/new?to=chuo-hospital"),
		chromedp.WaitVisible("#pick-id"), chromedp.SendKeys("#pick-id", "k-900"), poll(`document.querySelector('#pick-status').textContent.includes('見つかりません')`))
	if s, _ := liveText(ctx, "#pick-new-hint"); !strings.Contains(s, "患者ID・氏名・生年月日・性別を入力") {
		t.Errorf("the picker says %q", s)
	}
	step("typed-02-form", chromedp.Click("#pick-new-open"), chromedp.WaitVisible("#pick-new-name"),
		poll(`document.querySelector('#pick-new-id').value === 'k-900'`),
		chromedp.SendKeys("#pick-new-name", "高橋 一郎"), chromedp.SendKeys("#pick-new-kana", "たかはし いちろう"),
		chromedp.SetValue("#pick-new-birth", "1950-04-01"), chromedp.SetValue("#pick-new-sex", "M"),
		chromedp.Click("#pick-new-next"), chromedp.WaitVisible("#referral-form"), chromedp.WaitVisible("#ref-new-patient"))
	if s, _ := liveText(ctx, "#ref-patient"); !strings.Contains(s, "高橋 一郎") {
		t.Errorf("the letter is about %q", s)
	}
	step("typed-03-saved", chromedp.SendKeys("#ref-purpose", "精査のお願い"), chromedp.Click("#ref-save"), chromedp.WaitVisible("#referral-patient"))
	if s, _ := liveText(ctx, "#referral-patient"); !strings.Contains(s, "高橋 一郎") {
		t.Errorf("the saved draft is about %q", s)
	}
	step("typed-04-found", hashRoute("#/referral/new"), chromedp.WaitVisible("#pick-id"), chromedp.SendKeys("#pick-id", "たかはし"),
		poll(`[...document.querySelectorAll('#pick-list li')].map((li) => li.dataset.patientId).join() === 'k-900'`))
}

// TestFindPatientsSharedStudyOnly: a share of one of a patient's studies lets the receiver find the patient, but
// the date of the latest study shown with them is the latest the receiver may see: a later study the clinic did not
// share is no more revealed by its date in the picker than by the study search.
func TestFindPatientsSharedStudyOnly(t *testing.T) {
	r := newRegion(t)
	body, ctype := r.stowBodyOf(dicomtest.CTOptions{PatientID: "P1", PatientName: "Yamada^Taro=山田^太郎", StudyDate: "20260101", Seed: 96}, 1)
	if st := r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
		t.Fatalf("store: %d", st)
	}
	clinic := r.as("kato@kita-clinic")
	if got := findPatients(clinic, "P1", "kita-clinic"); len(got) != 1 || got[0].LastStudyDate != "20260101" {
		t.Fatalf("the clinic finds %+v", got)
	}
	if st := clinic.post("/api/shares", map[string]any{"patientId": "P1", "studies": []string{r.p1b.studyUID}, "toInstitution": "chuo-hospital",
		"purpose": "referral"}); st != 201 {
		t.Fatalf("share one study: %d %s", st, clinic.body)
	}
	doctor := r.as("tanaka@chuo-hospital")
	var studies []struct{ StudyDate string }
	doctor.getJSON("/api/studies?patientId=P1", &studies)
	if len(studies) != 1 || studies[0].StudyDate != "20250301" {
		t.Fatalf("the hospital's study search finds %+v", studies)
	}
	got := findPatients(doctor, "P1", "")
	if len(got) != 1 || got[0].PatientID != "P1" || got[0].LastStudyDate != "20250301" {
		t.Errorf("the hospital finds %+v, want P1 with the date of the study shared (20250301)", got)
	}
}

// TestTypedPatientName: the typed name and kana become one DICOM PN (PS3.5 6.2): a backslash would make it two
// values, an '=' a fourth component group, a control character (NUL, which PostgreSQL refuses to store) nothing a
// PN may hold; each is refused, as a backslash in the ID is, and nothing is registered.
func TestTypedPatientName(t *testing.T) {
	r := newRegion(t)
	doctor := r.as("kato@kita-clinic")
	for i, c := range []struct{ name, kana string }{
		{`高橋\一郎`, "たかはし いちろう"},
		{"高橋 一郎", `たかはし\いちろう`},
		{"高橋=一郎", "たかはし いちろう"},
		{"高橋 一郎", "たかはし=いちろう"},
		{"高橋\x00一郎", "たかはし いちろう"},
		{"高橋 一郎", "たかはし\x1bいちろう"},
		{"高橋 一郎\x7f", ""},
		{strings.Repeat("高", 65), ""},
		{"高橋 一郎", strings.Repeat("た", 65)},
	} {
		id := fmt.Sprintf("bad-%d", i)
		np := map[string]string{"name": c.name, "kana": c.kana, "birthDate": "1950-04-01", "sex": "M"}
		if s := doctor.post("/api/referrals", map[string]any{"patientId": id, "toInstitution": "chuo-hospital", "newPatient": np}); s != 400 {
			t.Errorf("name %q, kana %q: %d, want 400: %s", c.name, c.kana, s, doctor.body)
		}
	}
	if got := findPatients(doctor, "bad-", ""); len(got) != 0 {
		t.Errorf("refused drafts registered %+v", got)
	}
}

// TestTypedPatientIDCase: IDs are found in any case (the picker's, the search's rule), so a typed ID that differs
// from a registered one only in case is the same conflict as the same ID: registered beside it, "p1" would be one
// more patient whom the picker cannot tell from P1 by the ID typed.
func TestTypedPatientIDCase(t *testing.T) {
	r := newRegion(t)
	doctor := r.as("kato@kita-clinic")
	np := map[string]string{"name": "高橋 一郎", "birthDate": "1950-04-01"}
	if s := doctor.post("/api/referrals", map[string]any{"patientId": "p1", "toInstitution": "chuo-hospital", "newPatient": np}); s != 409 {
		t.Errorf("p1 beside P1: %d, want 409: %s", s, doctor.body)
	}
	if got := findPatients(doctor, "p1", "kita-clinic"); !slices.Equal(ids(got), []string{"P1"}) {
		t.Errorf("p1 finds %v", ids(got))
	}
}

// TestTypedPatientBornToday: a baby born this morning in Japan (a perinatal transfer) is registered with today's
// date in Japan, which is still tomorrow in UTC until 09:00: the birth date is "not in the future" as Japan counts.
func TestTypedPatientBornToday(t *testing.T) {
	r := newRegion(t)
	jst := time.FixedZone("JST", 9*60*60)
	at := r.clock.Now().UTC().Truncate(time.Hour)
	for at.Hour() != 20 { // 05:00 in Japan, the day before in UTC
		at = at.Add(time.Hour)
	}
	r.clock.Set(at)
	doctor := r.as("kato@kita-clinic")
	np := map[string]string{"name": "高橋 赤ちゃん", "birthDate": at.In(jst).Format("2006-01-02"), "sex": "F"}
	if s := doctor.post("/api/referrals", map[string]any{"kind": "emergency", "patientId": "nb-1", "toInstitution": "chuo-hospital", "newPatient": np}); s != 201 {
		t.Errorf("born %s (JST) at %s: %d %s", np["birthDate"], at.Format(time.RFC3339), s, doctor.body)
	}
}

// TestTypedPatientTransferRetryBrowser: an emergency transfer for a typed patient whose consent is not recorded
// yet is refused at sending, after its draft registered the patient; the nurse records the consent and presses send
// again, which sends that draft (not a second one, which would find the ID taken by the first).
func TestTypedPatientTransferRetryBrowser(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	step("retry-01-typed", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/emergency/new"),
		chromedp.WaitVisible("#pick-id"), chromedp.SendKeys("#pick-id", "k-901"), poll(`document.querySelector('#pick-status').textContent.includes('見つかりません')`),
		chromedp.Click("#pick-new-open"), chromedp.WaitVisible("#pick-new-name"), poll(`document.querySelector('#pick-new-id').value === 'k-901'`),
		chromedp.SendKeys("#pick-new-name", "高橋 三郎"), chromedp.SetValue("#pick-new-birth", "1950-04-01"),
		chromedp.Click("#pick-new-next"), chromedp.WaitVisible("#transfer-form"))
	step("retry-02-no-consent", chromedp.SetValue("#em-to", "chuo-hospital"), chromedp.SendKeys("#em-reason", "胸痛"), chromedp.Click("#em-send"),
		poll(`document.querySelector('#message').textContent.includes('同意')`))
	r.clock.Advance(30 * time.Second) // not the browser's login's code
	if s := r.as("kato@kita-clinic").post("/api/consents", map[string]any{"patientId": "k-901", "scope": []string{"region"}, "method": "paper",
		"document": "JVBERi0xLjQKJcfsj6IKJSVFT0YK", "givenAt": r.clock.Now().Format("2006-01-02")}); s != 201 {
		t.Fatalf("consent: %d", s)
	}
	step("retry-03-sent", chromedp.Click("#em-send"), chromedp.WaitVisible("#em-out li"))
	var list []struct{ PatientID, Status string }
	r.as("kato@kita-clinic").getJSON("/api/referrals?direction=out&kind=emergency", &list)
	n := 0
	for _, ref := range list {
		if ref.PatientID == "k-901" {
			n++
			if ref.Status != "sent" {
				t.Errorf("the transfer is %s", ref.Status)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d transfers for k-901: %+v", n, list)
	}
}
