package web_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"renkei"
)

// TestAuditDescribed: the admin's audit trail says what happened in the reader's language, built from the event's
// fields (a failed login; a search that listed a patient's study under emergency access), where it once showed only
// the English text written into the chain, which a Japanese clerk cannot read. That text, the record, is still there
// under the description, as it was written.
func TestAuditDescribed(t *testing.T) {
	r := newRegion(t)
	body, ctype := r.stowBodyBorn("P5", "Yamada^Taro=山田^太郎", "19450312", 501)
	if st := r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
		t.Fatalf("store: %d", st)
	}
	from := r.lastSeq()
	bad := &client{r: r}
	bad.post("/api/login", map[string]string{"login": "kato@kita-clinic", "password": "not it at all"})
	doctor := r.as("tanaka@chuo-hospital")
	if st := doctor.post("/api/break-glass", map[string]string{"birthDate": "19450312", "name": "山田太郎", "reason": "救急搬送"}); st != 201 {
		t.Fatalf("break-glass: %d %s", st, doctor.body)
	}
	if st := doctor.get("/dicomweb/studies?PatientID=P5"); st != 200 {
		t.Fatalf("search: %d", st)
	}
	var failed, listed renkei.AuditEvent
	for _, e := range r.events(from) {
		switch {
		case e.Action == renkei.ActionLogin && e.Outcome == renkei.OutcomeFailure && e.Actor == "kato@kita-clinic":
			failed = e
		case e.Action == renkei.ActionQuery && e.Patient.ID == "P5" && e.Purpose == string(renkei.PurposeBreakGlass):
			listed = e
		}
	}
	if failed.Seq == 0 || listed.Seq == 0 || failed.Detail == "" || listed.Detail == "" || listed.Study == "" {
		t.Fatalf("the events to look for: failed login %+v, search %+v", failed, listed)
	}

	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	row := func(e renkei.AuditEvent) string { return fmt.Sprintf(`#audit tr[data-seq="%d"]`, e.Seq) }
	step("audit-01-ja", r.loginSteps(r.users["admin@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/admin"),
		chromedp.WaitVisible(row(failed)), chromedp.WaitVisible(row(listed)))
	uid := "…" + listed.Study[len(listed.Study)-10:]
	check := func(lang string, e renkei.AuditEvent, want, original string) {
		t.Helper()
		desc, err := liveText(ctx, row(e)+" .audit-desc")
		if err != nil || desc != want {
			t.Errorf("%s: event %d (%s %s) is described %q (%v), want %q", lang, e.Seq, e.Action, e.Outcome, desc, err, want)
		}
		if rec, err := liveText(ctx, row(e)+" .audit-original"); err != nil || rec != original+" "+e.Detail {
			t.Errorf("%s: event %d's recorded text reads %q (%v), want %q", lang, e.Seq, rec, err, original+" "+e.Detail)
		}
	}
	check("ja", failed, "ログイン（失敗）", "記録の原文（英語）：")
	check("ja", listed, "検索で表示・患者 ID P5・検査 "+uid+"・目的 緊急閲覧", "記録の原文（英語）：")
	if cells, _ := liveText(ctx, row(failed)); strings.Contains(cells, "failure") {
		t.Errorf("ja: the failed login's row shows the stored outcome: %q", cells)
	}

	step("audit-02-en", chromedp.Click("#lang"), poll(`document.documentElement.lang === 'en'`), chromedp.WaitVisible(row(listed)),
		poll(fmt.Sprintf(`document.querySelector(%s).textContent.startsWith('listed')`, quote(row(listed)+" .audit-desc"))))
	check("en", failed, "login (failed)", "As recorded:")
	check("en", listed, "listed in a search, patient ID P5, study "+uid+", purpose: emergency access", "As recorded:")
}
