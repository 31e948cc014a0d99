package web_test

import (
	"context"
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

// TestAuditColumns: the admin reads the audit trail on a laptop (1,280 px) or a tablet (1,024 px), in Japanese or in
// English. Each event's time is on one line, and so are who did it, their role and (in Japanese) what they did: the
// description beside them squeezed these columns until "2026年11月28日 09:32" took two or three lines, a login two, and
// 検索で表示 one character a line. The table still fits the screen without scrolling sideways.
func TestAuditColumns(t *testing.T) {
	r := newRegion(t)
	body, ctype := r.stowBodyBorn("P5", "Yamada^Taro=山田^太郎", "19450312", 501)
	if st := r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
		t.Fatalf("store: %d", st)
	}
	bad := &client{r: r}
	bad.post("/api/login", map[string]string{"login": "kato@kita-clinic", "password": "not it at all"})
	doctor := r.as("tanaka@chuo-hospital")
	if st := doctor.post("/api/break-glass", map[string]string{"birthDate": "19450312", "name": "山田太郎", "reason": "救急搬送"}); st != 201 {
		t.Fatalf("break-glass: %d %s", st, doctor.body)
	}
	doctor.get("/dicomweb/studies?PatientID=P5")
	r.as("kato@kita-clinic").get("/dicomweb/studies?PatientID=P1")

	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	step("columns-login", chromedp.EmulateViewport(1280, 800), r.loginSteps(r.users["admin@kita-clinic"]), chromedp.WaitVisible("#search"),
		hashRoute("#/admin"), chromedp.WaitVisible("#audit tbody tr"))
	for _, lang := range []string{"ja", "en"} {
		if lang == "en" {
			step("columns-en", chromedp.Click("#lang"), poll(`document.documentElement.lang === 'en'`), hashRoute("#/admin"),
				poll(`document.querySelector('#audit th') && document.querySelector('#audit th').textContent === 'When'`))
		}
		for _, size := range [][2]int64{{1280, 800}, {1024, 768}} {
			name := fmt.Sprintf("columns-%s-%dx%d", lang, size[0], size[1])
			step(name, chromedp.EmulateViewport(size[0], size[1]), poll(fmt.Sprintf(`innerWidth === %d`, size[0])),
				chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error { // two frames for the layout to follow
					_, err := chromedp.Evaluate[bool](`new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(true))))`, chromedp.EvalAwaitPromise)(ctx, tg)
					return err
				}))
			a, err := chromedp.Run(ctx, chromedp.Evaluate[auditLayout](`(() => {
				// lines is how many lines a node's text takes: its height over the line height.
				const lines = (node) => { const rg = document.createRange(); rg.selectNodeContents(node);
					const el = node.nodeType === 1 ? node : node.parentElement;
					return Math.round(rg.getBoundingClientRect().height / parseFloat(getComputedStyle(el).lineHeight)); };
				const wrapped = [];
				for (const tr of document.querySelectorAll('#audit tbody tr')) {
					const [time, who] = tr.children;
					const role = who.querySelector('.muted');
					const parts = [['time', time, time.innerText], ['who', who.firstChild, who.firstChild.textContent]];
					if (role && role.textContent) parts.push(['role', role, role.textContent]);
					// What was done, in Japanese: a word of a few characters, not one character a line.
					if (document.documentElement.lang === 'ja') parts.push(['what', tr.children[2], tr.children[2].textContent]);
					for (const [what, node, text] of parts) { const n = lines(node); if (n > 1) wrapped.push(what + ' ' + JSON.stringify(text) + ' on ' + n + ' lines'); }
				}
				return { Rows: document.querySelectorAll('#audit tbody tr').length, Wrapped: wrapped, ScrollWidth: document.documentElement.scrollWidth,
					Width: document.documentElement.clientWidth, Right: document.querySelector('#audit').getBoundingClientRect().right };
			})()`))
			if err != nil {
				t.Fatal(err)
			}
			if a.Rows < 4 {
				t.Errorf("%s: %d events in the audit trail, want at least 4", name, a.Rows)
			}
			if len(a.Wrapped) > 0 {
				t.Errorf("%s: %d cells wrap, among them %q", name, len(a.Wrapped), a.Wrapped[:min(len(a.Wrapped), 4)])
			}
			if a.ScrollWidth > a.Width || a.Right > a.Width {
				t.Errorf("%s: the page is %.0f px wide (the audit table's right edge at %.0f) on a %.0f px screen: it scrolls sideways", name, a.ScrollWidth, a.Right, a.Width)
			}
		}
	}
}

// auditLayout is how the audit table lies on the screen, in CSS pixels.
type auditLayout struct {
	Rows                      int
	Wrapped                   []string
	ScrollWidth, Width, Right float64
}
