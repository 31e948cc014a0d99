package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"renkei"
)

// TestEmergencyTransfer: a clinic announces a patient in an ambulance to the hospital; the hospital's open board
// hears of it within 2 s and its doctors open the images; the hospital cannot take the patient and redirects the
// transfer to a third hospital, which then gets it and the images, while the first one's access ends; the third
// accepts, the patient arrives, the transfer closes.
func TestEmergencyTransfer(t *testing.T) {
	r := newRegion(t)
	nishi := renkei.Institution{ID: "nishi-hospital", Name: "西病院", Kind: renkei.Hospital, Issuer: "NISHI"}
	if err := r.db.PutInstitution(context.Background(), &nishi, nil); err != nil {
		t.Fatal(err)
	}
	r.addUser("mori@nishi-hospital", nishi, renkei.Physician)
	clinic, hospital, third := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital"), r.as("mori@nishi-hospital")
	board := listen(t, r, r.hospitalRead)
	if st := clinic.post("/api/referrals", map[string]any{"kind": "emergency", "issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
		"studies": []string{r.p1a.studyUID}, "etaMinutes": 20,
		"letter": map[string]string{"purpose": "交通外傷、意識レベル低下", "allergies": "ペニシリン(蕁麻疹)", "medications": "ワルファリン"}}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	tr := decodeReferral(t, clinic)
	path := fmt.Sprintf("/api/referrals/%d", tr.ID)
	sent := time.Now()
	if st := clinic.post(path+"/send", nil); st != 200 {
		t.Fatalf("send: %d %s", st, clinic.body)
	}
	deadline := time.After(2 * time.Second)
	for heard := false; !heard; {
		select {
		case ev := <-board:
			heard = ev == fmt.Sprintf("referral:%d", tr.ID)
		case <-deadline:
			t.Fatalf("the hospital's board did not hear of the transfer within 2 s")
		}
	}
	t.Logf("the board heard of the transfer %v after it was sent", time.Since(sent))
	var list []referralOut
	hospital.getJSON("/api/referrals?direction=in&kind=emergency", &list)
	if len(list) != 1 || list[0].Letter.Allergies != "ペニシリン(蕁麻疹)" {
		t.Fatalf("the hospital's emergency board: %+v", list)
	}
	img := "/dicomweb/studies/" + r.p1a.studyUID + "/metadata"
	if st := hospital.get(img); st != 200 {
		t.Errorf("the hospital cannot open the images: %d", st)
	}
	if st := third.get(img); st != 404 {
		t.Errorf("the third hospital sees the images before the redirect: %d", st)
	}
	// The hospital's beds are full: it hands the transfer on.
	if st := hospital.post(path+"/redirect", map[string]string{"toInstitution": "nishi-hospital", "reason": "満床"}); st != 200 {
		t.Fatalf("redirect: %d %s", st, hospital.body)
	}
	if st := hospital.get(img); st != 404 {
		t.Errorf("the first hospital still sees the images after the redirect: %d", st)
	}
	if st := hospital.get(path); st != 404 {
		t.Errorf("the first hospital still reads the transfer: %d", st)
	}
	if st := third.get(img); st != 200 {
		t.Errorf("the third hospital cannot open the images: %d", st)
	}
	third.getJSON("/api/referrals?direction=in&kind=emergency", &list)
	if len(list) != 1 || list[0].Status != "sent" {
		t.Fatalf("the third hospital's board: %+v", list)
	}
	for _, step := range []string{"accept", "arrive", "close"} {
		if st := third.post(path+"/"+step, nil); st != 200 {
			t.Fatalf("%s: %d %s", step, st, third.body)
		}
	}
	clinic.getJSON(path, &tr)
	var steps []string
	for _, e := range tr.Events {
		steps = append(steps, e.Status)
	}
	if tr.Status != "closed" || strings.Join(steps, " ") != "draft sent sent accepted arrived closed" {
		t.Errorf("the clinic sees %s: %v", tr.Status, steps)
	}
	if st := clinic.post(path+"/redirect", map[string]string{"toInstitution": "chuo-hospital"}); st != 409 {
		t.Errorf("redirecting a closed transfer: %d", st)
	}
}

// TestEmergencyBrowser: the hospital's emergency board is open; the clinic announces a transfer from the patient's
// page; the board shows it without a reload, with the alert sounded, and the hospital's doctor opens the images and
// accepts; the clinic's page shows the acceptance.
func TestEmergencyBrowser(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	clinicCtx, cancelClinic := browser(t)
	defer cancelClinic()
	hospitalCtx, cancelHospital := browser(t)
	defer cancelHospital()
	stepIn := func(ctx context.Context, name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			screenshot(ctx, t, out, name+"-failed")
			t.Fatalf("%s: %v", name, err)
		}
		screenshot(ctx, t, out, name)
	}
	stepIn(hospitalCtx, "em-01-board", r.loginSteps(r.users["tanaka@chuo-hospital"]), chromedp.WaitVisible("#search"), hashRoute("#/emergency"),
		chromedp.WaitVisible("#em-none"))
	// The board itself starts an announcement: the patient first.
	stepIn(clinicCtx, "em-02-board", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/emergency"),
		chromedp.Click("#em-new"), chromedp.WaitVisible("#pick-id"))
	if s, _ := liveText(clinicCtx, "#pick-patient h1"); !strings.Contains(s, "搬送") {
		t.Errorf("the board's announcement asks %q", s)
	}
	r.pickerPatients()
	// The start of an ID lists every patient whose ID starts so (佐藤 too); Latin letters find the name's romaji
	// (each search's answer differs from the one before, so that each wait sees its own search's answer).
	stepIn(clinicCtx, "em-02-pick-id", chromedp.SendKeys("#pick-id", "P"), chromedp.WaitVisible(`#pick-list li[data-patient-id="P2"]`),
		poll(`document.querySelectorAll('#pick-list li').length === 3`))
	stepIn(clinicCtx, "em-02-pick-romaji", poll(`(document.querySelector('#pick-id').value = '', true)`), chromedp.SendKeys("#pick-id", "yamada t"),
		poll(`[...document.querySelectorAll('#pick-list li')].map((li) => li.dataset.patientId).join() === 'P1'`))
	// The nurse knows the name as it sounds, typed in half-width kana: the clinic's ヤマダ ハナコ is found, the
	// hospital's ヤマダ イチロウ (nothing shared) is not; the transfer form that follows is about her.
	stepIn(clinicCtx, "em-02-pick", poll(`(document.querySelector('#pick-id').value = '', true)`), chromedp.SendKeys("#pick-id", "ﾔﾏﾀﾞ"),
		poll(`[...document.querySelectorAll('#pick-list li')].map((li) => li.dataset.patientId).join() === 'P3'`))
	if s, _ := liveText(clinicCtx, "#pick-list"); strings.Contains(s, "イチロウ") || strings.Contains(s, "H1") {
		t.Errorf("the candidates for ﾔﾏﾀﾞ include the hospital's unshared patient: %q", s)
	}
	stepIn(clinicCtx, "em-02-picked", pickWithKeys("P3"), chromedp.WaitVisible("#transfer-form"), chromedp.WaitVisible("#em-studies input"))
	if s, _ := liveText(clinicCtx, "#transfer-form"); !strings.Contains(s, "山田 花子") || !strings.Contains(s, "ID P3") {
		t.Errorf("the transfer chosen from the list reads %q, not 山田花子 P3", s)
	}
	stepIn(clinicCtx, "em-02-form", hashRoute("#/patient/kita-clinic/KITA/P1"), chromedp.WaitVisible("#announce-transfer"), chromedp.Click("#announce-transfer"),
		chromedp.WaitVisible("#transfer-form"), chromedp.SetValue("#em-to", "chuo-hospital"), chromedp.SetValue("#em-eta", "10"),
		chromedp.SendKeys("#em-reason", "交通外傷、意識レベル低下"), chromedp.SendKeys("#em-allergies", "ペニシリン"))
	stepIn(clinicCtx, "em-03-sent", chromedp.Click("#em-send"), chromedp.WaitVisible("#em-out li"))
	stepIn(hospitalCtx, "em-04-arrives", chromedp.WaitVisible("#em-board li.emergency"))
	if s, _ := liveText(hospitalCtx, "#em-board"); !strings.Contains(s, "交通外傷") || !strings.Contains(s, "ペニシリン") || !strings.Contains(s, "到着まで") {
		t.Errorf("the board reads %q", s)
	}
	if n, _ := chromedp.Run(hospitalCtx, chromedp.Evaluate[int](`window.renkeiAlerts || 0`)); n < 1 {
		t.Errorf("no alert sounded for the new transfer")
	}
	stepIn(hospitalCtx, "em-05-images", chromedp.Click("#em-board a.view"), chromedp.WaitVisible(`#viewport[data-stack="loaded"]`))
	stepIn(hospitalCtx, "em-06-accept", hashRoute("#/emergency"), chromedp.WaitVisible("#em-board button.em-accept"), chromedp.Click("#em-board button.em-accept"),
		chromedp.WaitVisible("#em-board button.em-arrive"))
	stepIn(clinicCtx, "em-07-clinic-sees", chromedp.WaitVisible(`#em-out .badge.status-accepted`))
}

// TestBreakGlassFamilyNameBrowser: break-glass opens every patient that matches, without consent, so its search
// deliberately needs the birth date and the whole name (or the patient ID). A physician who types the family name
// alone is told exactly what to add, and nothing is opened; with the given name added the patient is found.
func TestBreakGlassFamilyNameBrowser(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	body, ctype := r.stowBodyBorn("S1", "Suzuki^Ichiro=鈴木^一郎=スズキ^イチロウ", "19600202", 951)
	if st := r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
		t.Fatalf("store: %d", st)
	}
	doctor := r.as("tanaka@chuo-hospital") // before the browser's login: the two must not use one TOTP code
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	step("bg-01-family-name", r.loginSteps(r.users["tanaka@chuo-hospital"]), chromedp.WaitVisible("#search"), hashRoute("#/break-glass"),
		chromedp.WaitVisible("#break-glass"), chromedp.SetValue("#bg-birth", "1960-02-02"), chromedp.SendKeys("#bg-name", "鈴木"),
		chromedp.SendKeys("#bg-reason", "救急搬送、意識障害"), chromedp.Click(`#break-glass button[type="submit"]`),
		poll(`document.querySelector('#message').innerText !== ''`))
	if s, _ := liveText(ctx, "#message"); !strings.Contains(s, "姓と名の両方") || !strings.Contains(s, "患者ID") {
		t.Errorf("the family name alone: the message reads %q, not what to enter", s)
	}
	if s, _ := liveText(ctx, "#bg-name-hint"); !strings.Contains(s, "姓だけでは") {
		t.Errorf("the name field's hint reads %q", s)
	}
	var studies []map[string]any
	doctor.getJSON("/dicomweb/studies?PatientID=S1", &studies)
	if len(studies) != 0 {
		t.Fatalf("the family name alone opened %d studies", len(studies))
	}
	step("bg-02-full-name", chromedp.SendKeys("#bg-name", " 一郎"),
		chromedp.Click(`#break-glass button[type="submit"]`), chromedp.WaitVisible("#studies"))
	doctor.getJSON("/dicomweb/studies?PatientID=S1", &studies)
	if len(studies) != 1 {
		t.Errorf("the whole name opened %d studies", len(studies))
	}
}

// TestUnannouncedArrival: a patient arrives unannounced and unconscious; the emergency physician's break-glass finds
// the allergies and medications the clinic recorded, and the images, with no share and no consent beforehand.
func TestUnannouncedArrival(t *testing.T) {
	r := newRegion(t)
	body, ctype := r.stowBodyBorn("U1", "Ueno^Ichiro=上野^一郎=ウエノ^イチロウ", "19500101", 950)
	if st := r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
		t.Fatalf("store: %d", st)
	}
	clinic, doctor := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	url := "/api/patients/record?institution=kita-clinic&issuer=KITA&patientId=U1"
	if st := clinic.post(url, map[string]any{"allergies": []map[string]string{{"category": "drug", "substance": "ヨード造影剤", "reaction": "ショック", "severity": "severe"}},
		"medications": []map[string]string{{"drug": "ワルファリン錠1mg", "dose": "2錠"}}}); st != 201 {
		t.Fatalf("record: %d %s", st, clinic.body)
	}
	if st := doctor.get(url); st != 404 {
		t.Fatalf("the hospital reads the record before break-glass: %d", st)
	}
	if st := doctor.post("/api/break-glass", map[string]string{"birthDate": "19500101", "name": "うえの いちろう", "reason": "救急搬送、意識障害"}); st != 200 && st != 201 {
		t.Fatalf("break-glass: %d %s", st, doctor.body)
	}
	var rec struct {
		Allergies   []struct{ Substance, Severity string }
		Medications []struct{ Drug string }
	}
	doctor.getJSON(url, &rec)
	if len(rec.Allergies) != 1 || rec.Allergies[0].Substance != "ヨード造影剤" || len(rec.Medications) != 1 {
		t.Errorf("after break-glass the record reads %+v", rec)
	}
	var studies []map[string]any
	doctor.getJSON("/dicomweb/studies?PatientID=U1", &studies)
	if len(studies) != 1 {
		t.Errorf("after break-glass the images: %d studies", len(studies))
	}
}

// TestRedirectAfterTrash: the clinic sends an emergency transfer with two studies, then moves one of them to the
// trash (a wrong series sent); the hospital cannot take the patient and redirects the transfer. The redirect once
// failed as a whole (the new share asked for every study of the transfer, and one was no longer live), so the
// transfer stayed stuck at the full hospital. The third hospital gets the studies still live, and not the rest of
// the patient's.
func TestRedirectAfterTrash(t *testing.T) {
	r := newRegion(t)
	nishi := renkei.Institution{ID: "nishi-hospital", Name: "西病院", Kind: renkei.Hospital, Issuer: "NISHI"}
	if err := r.db.PutInstitution(context.Background(), &nishi, nil); err != nil {
		t.Fatal(err)
	}
	r.addUser("mori@nishi-hospital", nishi, renkei.Physician)
	clinic, admin, hospital, third := r.as("kato@kita-clinic"), r.as("admin@kita-clinic"), r.as("tanaka@chuo-hospital"), r.as("mori@nishi-hospital")
	if st := clinic.post("/api/referrals", map[string]any{"kind": "emergency", "issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
		"studies": []string{r.p1a.studyUID, r.p1b.studyUID}, "etaMinutes": 20, "letter": map[string]string{"purpose": "交通外傷"}}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	tr := decodeReferral(t, clinic)
	path := fmt.Sprintf("/api/referrals/%d", tr.ID)
	if st := clinic.post(path+"/send", nil); st != 200 {
		t.Fatalf("send: %d %s", st, clinic.body)
	}
	if st := admin.do("DELETE", "/dicomweb/studies/"+r.p1b.studyUID, nil); st != 200 && st != 204 {
		t.Fatalf("trash: %d %s", st, admin.body)
	}
	if st := hospital.post(path+"/redirect", map[string]string{"toInstitution": "nishi-hospital", "reason": "満床"}); st != 200 {
		t.Fatalf("redirect after one of the studies went to the trash: %d %s", st, hospital.body)
	}
	if st := third.get("/dicomweb/studies/" + r.p1a.studyUID + "/metadata"); st != 200 {
		t.Errorf("the third hospital cannot open the live study: %d", st)
	}
	for _, uid := range []string{r.p1b.studyUID} {
		if st := third.get("/dicomweb/studies/" + uid + "/metadata"); st != 404 {
			t.Errorf("the third hospital opens %s: %d", uid, st)
		}
	}
	// Restored, the study is the clinic's to share again; the redirect's share did not take the whole patient.
	if st := admin.post("/api/trash/studies/"+r.p1b.studyUID+"/restore", nil); st != 200 {
		t.Fatalf("restore: %d %s", st, admin.body)
	}
	if st := third.get("/dicomweb/studies/" + r.p1b.studyUID + "/metadata"); st != 404 {
		t.Errorf("after the restore the third hospital opens the study left out of its share: %d", st)
	}
	// Both studies in the trash, the third hospital redirects back: the share carries the record only, and a study
	// restored afterwards is not shared (a share of no chosen study would be one of the whole patient).
	for _, uid := range []string{r.p1a.studyUID, r.p1b.studyUID} {
		if st := admin.do("DELETE", "/dicomweb/studies/"+uid, nil); st != 200 && st != 204 {
			t.Fatalf("trash: %d %s", st, admin.body)
		}
	}
	if st := third.post(path+"/redirect", map[string]string{"toInstitution": "chuo-hospital", "reason": "満床"}); st != 200 {
		t.Fatalf("redirect with every study in the trash: %d %s", st, third.body)
	}
	if st := admin.post("/api/trash/studies/"+r.p1a.studyUID+"/restore", nil); st != 200 {
		t.Fatalf("restore: %d %s", st, admin.body)
	}
	if st := hospital.get("/dicomweb/studies/" + r.p1a.studyUID + "/metadata"); st != 404 {
		t.Errorf("a redirect of no live study shared the whole patient: the hospital opens a study restored later (%d)", st)
	}
}
