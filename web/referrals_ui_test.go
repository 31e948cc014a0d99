package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"renkei"
)

// TestReferralBrowser is the referral as the two doctors live it, in two browsers: the clinic's doctor records two
// allergies on the patient's page, writes the letter (allergies pulled from the record with one click), attaches the
// CT and sends it (the patient found by typing part of the name and chosen with the keyboard); the hospital's board, open all along, shows it without a reload; opening it tells the clinic's
// page "received" at once; the hospital accepts with a date, replies, and refers the patient back; the clinic sees
// each step appear.
func TestReferralBrowser(t *testing.T) {
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
	text := func(ctx context.Context, sel string) string {
		t.Helper()
		s, err := liveText(ctx, sel)
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	stepIn(hospitalCtx, "ref-01-hospital-board", r.loginSteps(r.users["tanaka@chuo-hospital"]), chromedp.WaitVisible("#search"),
		hashRoute("#/referrals"), chromedp.WaitVisible("#referrals-in-none"), chromedp.WaitVisible(`#referral-new[href="#/referral/new"]`))
	stepIn(clinicCtx, "ref-02-clinic-patient", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"),
		hashRoute("#/patient/kita-clinic/KITA/P1"), chromedp.WaitVisible("#allergy-form"),
		chromedp.SetValue("#allergy-category", "drug"), chromedp.SendKeys("#allergy-substance", "ペニシリン系抗菌薬"),
		chromedp.SendKeys("#allergy-reaction", "蕁麻疹"), chromedp.SetValue("#allergy-severity", "moderate"),
		chromedp.Click(`#allergy-form button[type="submit"]`), chromedp.WaitVisible("ul#allergies li"),
		chromedp.SetValue("#allergy-category", "food"), chromedp.SendKeys("#allergy-substance", "卵"),
		chromedp.SendKeys("#allergy-reaction", "アナフィラキシー"), chromedp.SetValue("#allergy-severity", "severe"),
		chromedp.Click(`#allergy-form button[type="submit"]`), chromedp.WaitVisible("ul#allergies li:nth-child(2)"))
	if s := text(clinicCtx, "#allergies"); !strings.Contains(s, "卵") || !strings.Contains(s, "北町クリニック") {
		t.Errorf("the record shows %q", s)
	}

	// A new referral starts from the patient: the clerk types part of the name, not the ID, and chooses with the keys.
	r.pickerPatients()
	stepIn(clinicCtx, "ref-03-pick", hashRoute("#/referral/new"), chromedp.WaitVisible("#pick-id"), chromedp.SendKeys("#pick-id", "山田"),
		chromedp.WaitVisible(`#pick-list li[data-patient-id="P1"]`), chromedp.WaitVisible(`#pick-list li[data-patient-id="P3"]`))
	if s := text(clinicCtx, "#pick-list"); strings.Contains(s, "一郎") || strings.Contains(s, "H1") || !strings.Contains(s, "ヤマダ ハナコ") {
		t.Errorf("the candidates for 山田 are %q: the hospital's patient must not appear, the clinic's are listed with their kana", s)
	}
	stepIn(clinicCtx, "ref-03-picked", pickWithKeys("P1"), chromedp.WaitVisible("#referral-form"))
	if s := text(clinicCtx, "#referral-form"); !strings.Contains(s, "P1") {
		t.Errorf("the letter chosen from the list is about %q, not P1", s)
	}
	stepIn(clinicCtx, "ref-03-letter",
		chromedp.SetValue("#ref-to", "chuo-hospital"), chromedp.SendKeys("#ref-department", "呼吸器内科"),
		chromedp.Click(`#ref-studies input[value="`+r.p1a.studyUID+`"]`),
		chromedp.Click("#ref-pull"), poll(`document.querySelector('#ref-allergies').value.includes('卵')`),
		chromedp.SendKeys("#ref-purpose", "精査加療のお願い"), chromedp.SendKeys("#ref-diagnosis", "右肺結節"))
	stepIn(clinicCtx, "ref-04-sent", chromedp.Click("#ref-send"), chromedp.WaitVisible("#referral-letter"))
	if s := text(clinicCtx, "#referral-letter"); !strings.Contains(s, "ペニシリン系抗菌薬(蕁麻疹)") || !strings.Contains(s, "右肺結節") {
		t.Errorf("the sent letter reads %q", s)
	}
	// The doctor is told it went: the note survives the move to the referral's page.
	if s := text(clinicCtx, "#message"); !strings.Contains(s, "紹介状を送りました") {
		t.Errorf("after sending, the message reads %q", s)
	}

	// A correction is a second version; the first stays readable.
	stepIn(clinicCtx, "ref-04b-correct", chromedp.Click("#ref-correct"), chromedp.WaitVisible("#correction-form"),
		chromedp.SetValue("#cor-diagnosis", "右肺上葉結節"), chromedp.Click("#cor-send"), chromedp.WaitVisible("#letter-versions"))
	if s := text(clinicCtx, "#referral-letter"); !strings.Contains(s, "右肺上葉結節") {
		t.Errorf("the corrected letter reads %q", s)
	}

	// The hospital's board shows it without a reload.
	stepIn(hospitalCtx, "ref-05-appears", chromedp.WaitVisible("#referrals-in tbody tr"))
	if s := text(hospitalCtx, "#referrals-in"); !strings.Contains(s, "山田") || !strings.Contains(s, "北町クリニック") || !strings.Contains(s, "送信済み") {
		t.Errorf("the hospital's board: %q", s)
	}
	stepIn(hospitalCtx, "ref-06-opened", chromedp.Click(`#referrals-in a[href^="#/referral/"]`), chromedp.WaitVisible("#ref-accept"))
	// The clinic's page, open on the referral, turns to "received" by itself.
	stepIn(clinicCtx, "ref-07-clinic-sees-received", chromedp.WaitVisible(`h1 [data-status="received"]`))
	// The hospital sees the CT and the record the referral shared.
	if s := text(hospitalCtx, "#referral-studies"); !strings.Contains(s, "CT") {
		t.Errorf("attached studies: %q", s)
	}
	// Declining is final for the clinic: the hospital is asked first, about whom and from where; "no" sends nothing.
	if _, err := chromedp.Run(hospitalCtx, chromedp.Evaluate[bool](`(window.asked = [], window.confirm = (m) => (window.asked.push(m), false), true)`)); err != nil {
		t.Fatal(err)
	}
	stepIn(hospitalCtx, "ref-07b-decline-asks", chromedp.SendKeys("#ref-reason", "当科では対応できません"), chromedp.Click("#ref-decline"),
		poll(`window.asked.length === 1`))
	if asked, _ := chromedp.Run(hospitalCtx, chromedp.Evaluate[string](`window.asked[0]`)); !strings.Contains(asked, "お断りしますか") ||
		!strings.Contains(asked, "山田 太郎") || !strings.Contains(asked, "北町クリニック") {
		t.Errorf("the question before declining: %q", asked)
	}
	status, err := chromedp.Run(hospitalCtx, chromedp.Evaluate[string](`(() => { const x = new XMLHttpRequest();
		x.open('GET', '/api/referrals/' + location.hash.split('/')[2], false); x.send(); return JSON.parse(x.responseText).status; })()`))
	if err != nil || status != "received" {
		t.Errorf("after answering no to the decline, the referral is %q (%v)", status, err)
	}
	stepIn(hospitalCtx, "ref-08-accept", chromedp.SetValue("#ref-appointment", "2026-12-03"), chromedp.Click("#ref-accept"),
		chromedp.WaitVisible("#reply-form"))
	stepIn(clinicCtx, "ref-09-clinic-sees-accepted", chromedp.WaitVisible(`h1 [data-status="accepted"]`), chromedp.WaitVisible("#referral-appointment"))
	if s := text(clinicCtx, "#referral-appointment"); !strings.Contains(s, "2026年12月3日") {
		t.Errorf("the appointment reads %q, not as a Japanese date", s)
	}
	// The doctor opens the attached CT from the referral and comes back to it with one button (no key images: this
	// is not a reading request).
	stepIn(hospitalCtx, "ref-09b-viewer", chromedp.Click(`#referral-studies a.view`), chromedp.WaitVisible("#back-to-referral"),
		chromedp.WaitVisible("#viewport"))
	if s := text(hospitalCtx, "#back-to-referral"); !strings.Contains(s, "紹介状に戻る") {
		t.Errorf("the way back from the viewer reads %q", s)
	}
	if n, err := chromedp.Run(hospitalCtx, chromedp.Evaluate[int](`document.querySelectorAll("#key-image").length`)); err != nil || n != 0 {
		t.Errorf("the viewer opened from an ordinary referral offers key images: %d %v", n, err)
	}
	stepIn(hospitalCtx, "ref-09c-back", chromedp.Click("#back-to-referral"), chromedp.WaitVisible("#reply-form"), poll(settled("#reply-form")))
	stepIn(hospitalCtx, "ref-10-reply", chromedp.SendKeys("#reply-course", "右上葉部分切除術を施行しました。"),
		chromedp.SendKeys("#reply-followUp", "外来で経過観察をお願いします。"), chromedp.Click("#reply-send"), chromedp.WaitVisible("#referral-reply"))
	stepIn(clinicCtx, "ref-11-clinic-sees-reply", chromedp.WaitVisible("#referral-reply"))
	if s := text(clinicCtx, "#referral-reply"); !strings.Contains(s, "右上葉部分切除術") {
		t.Errorf("the clinic reads the reply %q", s)
	}
	stepIn(hospitalCtx, "ref-12-record", chromedp.Click(`a[href^="#/patient/kita-clinic/"]`), chromedp.WaitVisible("ul#allergies li:nth-child(2)"))
	stepIn(hospitalCtx, "ref-13-reverse", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[any]("history.back()")(ctx, t)
		return err
	}), chromedp.WaitVisible("#ref-reverse"),
		chromedp.Click("#ref-reverse"), chromedp.WaitVisible("#referral-form"),
		chromedp.SendKeys("#ref-purpose", "逆紹介"), chromedp.SendKeys("#ref-course", "術後経過良好です。"), chromedp.Click("#ref-send"),
		chromedp.WaitVisible("#referral-letter"))
	stepIn(clinicCtx, "ref-14-clinic-board", hashRoute("#/referrals"), chromedp.WaitVisible("#referrals-in tbody tr"))
	if s := text(clinicCtx, "#referrals-in"); !strings.Contains(s, "逆紹介") || !strings.Contains(s, "中央病院") {
		t.Errorf("the clinic's incoming board: %q", s)
	}
}

// pickerPatients stores two more patients called 山田 with their kana: 山田花子 at the clinic, and 山田一郎 at the
// hospital, which shares nothing with the clinic, so that no search of the clinic's may list him.
func (r *region) pickerPatients() {
	r.t.Helper()
	hospitalWrite, err := r.ids.CreateToken(context.Background(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "hospital-gateway", Write: true})
	if err != nil {
		r.t.Fatal(err)
	}
	for _, p := range []struct {
		token, id, name, birth string
		seed                   int64
	}{
		{r.clinicWrite, "P3", "Yamada^Hanako=山田^花子=ヤマダ^ハナコ", "19620315", 901},
		{hospitalWrite, "H1", "Yamada^Ichiro=山田^一郎=ヤマダ^イチロウ", "19550101", 902},
	} {
		body, ctype := r.stowBodyBorn(p.id, p.name, p.birth, p.seed)
		if st := r.withToken(p.token).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
			r.t.Fatalf("store %s: %d", p.id, st)
		}
	}
}

// pickWithKeys chooses the patient id in the picker's list as a keyboard user does: arrow down to it, then Enter.
func pickWithKeys(id string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		i, err := chromedp.Evaluate[int](fmt.Sprintf(`[...document.querySelectorAll('#pick-list li')].findIndex((li) => li.dataset.patientId === %q)`, id))(ctx, t)
		if err != nil {
			return err
		}
		if i < 0 {
			return fmt.Errorf("%s is not among the candidates", id)
		}
		for range i + 1 {
			if _, err := chromedp.KeyEvent(kb.ArrowDown)(ctx, t); err != nil {
				return err
			}
		}
		sel, err := chromedp.Evaluate[string](`(document.querySelector('#pick-list li[aria-selected="true"]') || {dataset: {}}).dataset.patientId || ''`)(ctx, t)
		if err != nil {
			return err
		}
		if sel != id {
			return fmt.Errorf("after %d arrow keys %q is selected, not %s", i+1, sel, id)
		}
		_, err = chromedp.KeyEvent(kb.Enter)(ctx, t)
		return err
	})
}

// poll waits until expr is true in the page.
func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(10*time.Second))(ctx, t)
		return err
	})
}

// TestCorrectionOfCancelledReferralBrowser: the clinic's doctor is writing a corrected letter when a colleague
// cancels the referral; sending it is refused, and the doctor reads why in Japanese, not the server's English. The
// cancelled referral's page then offers no correction.
func TestCorrectionOfCancelledReferralBrowser(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	clinic := r.as("kato@kita-clinic")
	if st := clinic.post("/api/referrals", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
		"studies": []string{r.p1a.studyUID}, "letter": map[string]string{"purpose": "精査", "diagnosis": "右肺結節"}}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	id := decodeReferral(t, clinic).ID
	path := fmt.Sprintf("/api/referrals/%d", id)
	if st := clinic.post(path+"/send", nil); st != 200 {
		t.Fatalf("send: %d %s", st, clinic.body)
	}
	step := stepper(ctx, t, out)
	step("cor-01-form", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"),
		hashRoute(fmt.Sprintf("#/referral/%d/correct", id)), chromedp.WaitVisible("#correction-form"),
		chromedp.SetValue("#cor-diagnosis", "右肺上葉結節"))
	// The cancel, from another session (the same doctor's other window, or a colleague's).
	if st := clinic.post(path+"/cancel", map[string]string{"reason": ""}); st != 200 {
		t.Fatalf("the cancel: %d %s", st, clinic.body)
	}
	step("cor-02-refused", chromedp.Click("#cor-send"), poll(`document.querySelector('#message').textContent.includes('取り消されたため')`))
	if s, err := liveText(ctx, "#message"); err != nil || !strings.Contains(s, "新しい紹介状を作成してください") {
		t.Errorf("the message the doctor reads: %q %v", s, err)
	}
	var versions []struct{ Version int }
	clinic.getJSON(path+"/versions", &versions)
	if len(versions) != 1 {
		t.Errorf("%d versions after the refused correction", len(versions))
	}
	step("cor-03-cancelled", hashRoute(fmt.Sprintf("#/referral/%d", id)), chromedp.WaitVisible(`h1 [data-status="cancelled"]`))
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#ref-correct").length`)); err != nil || n != 0 {
		t.Errorf("the cancelled referral still offers a correction: %d %v", n, err)
	}
}
