package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"renkei"
	"renkei/monitor"
	"renkei/notify"
)

// startMonitor runs the security monitor on the region's index and clock, from the end of the trail as it is now,
// and serves its alerts.
func (r *region) startMonitor(cfg func(*monitor.Monitor)) *monitor.Monitor {
	r.t.Helper()
	r.front.Alerts = r.db
	m := monitor.New(r.db)
	m.Now, m.Poll, m.Logger = r.clock.Now, 10*time.Millisecond, quietLogger()
	if cfg != nil {
		cfg(m)
	}
	if _, _, err := r.db.MonitorCursor(context.Background(), "rules", r.lastSeq()); err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(done)
	}()
	r.t.Cleanup(func() { cancel(); <-done })
	return m
}

// caughtUp waits until the monitor has judged every event in the trail.
func (r *region) caughtUp(m *monitor.Monitor) {
	r.t.Helper()
	last := r.lastSeq()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.Wake()
		cur, _, err := r.db.MonitorCursor(context.Background(), "rules", 0)
		if err != nil {
			r.t.Fatal(err)
		}
		if cur >= last {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the monitor is at event %d of %d after 10 s", cur, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type alertView struct {
	ID             int64   `json:"id"`
	Rule           string  `json:"rule"`
	Severity       string  `json:"severity"`
	Status         string  `json:"status"`
	Explanation    string  `json:"explanation"`
	ExplanationEn  string  `json:"explanationEn"`
	Institution    string  `json:"institution"`
	Actor          string  `json:"actor"`
	Events         []int64 `json:"events"`
	Note           string  `json:"note"`
	CanLockUser    bool    `json:"canLockUser"`
	UserLocked     bool    `json:"userLocked"`
	CanRevokeToken bool    `json:"canRevokeToken"`
	Patient        *struct {
		Institution, Issuer, ID string
	} `json:"patient"`
}

// waitAlert polls GET /api/alerts as c, as an admin's page would, until an alert of rule is there (at most 10 s).
func waitAlert(t *testing.T, c *client, rule string) alertView {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var list []alertView
		c.getJSON("/api/alerts", &list)
		for _, a := range list {
			if a.Rule == rule {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s alert within 10 s; alerts: %+v", rule, list)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAlertsAPI: a clinic doctor opening more patients than the region allows raises an alert that the clinic's
// administrator (and nobody of another institution) sees with the events behind it, acknowledges, uses to lock the
// doctor out, and resolves with a note; a token used from two addresses is revoked from its alert. Every step is in
// the audit trail.
func TestAlertsAPI(t *testing.T) {
	r := newRegion(t)
	r.front.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	r.startMonitor(func(m *monitor.Monitor) { m.Config.BulkAccess.Patients = 2 })
	kato := r.as("kato@kita-clinic")
	for _, st := range []study{r.p1a, r.p2} {
		if code := kato.get("/dicomweb/studies/" + st.studyUID + "/metadata"); code != 200 {
			t.Fatalf("read: %d", code)
		}
	}
	admin := r.as("admin@kita-clinic")
	a := waitAlert(t, admin, monitor.RuleBulkAccess)
	if a.Actor != "kato@kita-clinic" || a.Severity != "high" || a.Status != "open" || !a.CanLockUser || a.CanRevokeToken || len(a.Events) != 2 ||
		!strings.Contains(a.Explanation, "2人の患者") || !strings.Contains(a.ExplanationEn, "2 different patients") || a.Institution != "kita-clinic" {
		t.Errorf("the alert: %+v", a)
	}
	var detail struct {
		Alert  alertView
		Events []struct {
			Seq       int64
			Actor     string
			Action    string
			PatientID string
		}
	}
	admin.getJSON(fmt.Sprintf("/api/alerts/%d", a.ID), &detail)
	if len(detail.Events) != 2 || detail.Events[0].Actor != "kato@kita-clinic" || detail.Events[0].Action != "read" || detail.Events[0].PatientID != "P1" ||
		detail.Events[1].PatientID != "P2" {
		t.Errorf("the events behind the alert: %+v", detail.Events)
	}

	// Another institution's admin does not see it; a doctor may not look at alerts at all.
	other := r.as("admin@chuo-hospital")
	var list []alertView
	other.getJSON("/api/alerts", &list)
	if len(list) != 0 {
		t.Errorf("the hospital's admin sees the clinic's alerts: %+v", list)
	}
	if st := other.post(fmt.Sprintf("/api/alerts/%d/acknowledge", a.ID), nil); st != 404 {
		t.Errorf("the hospital's admin acknowledged the clinic's alert: %d", st)
	}
	if st := r.as("tanaka@chuo-hospital").get("/api/alerts"); st != 403 {
		t.Errorf("a physician read the alerts: %d", st)
	}

	// Bad input answers problem+json.
	for _, tc := range []struct {
		path string
		body any
		want int
	}{
		{fmt.Sprintf("/api/alerts/%d/resolve", a.ID), map[string]string{"note": "  "}, 400},
		{fmt.Sprintf("/api/alerts/%d/resolve", a.ID), map[string]int{"note": 1}, 400},
		{"/api/alerts/abc/acknowledge", nil, 400},
		{"/api/alerts/99999/acknowledge", nil, 404},
		{fmt.Sprintf("/api/alerts/%d/revoke-token", a.ID), nil, 409},
	} {
		if st := admin.post(tc.path, tc.body); st != tc.want || !strings.Contains(string(admin.body), `"detail"`) {
			t.Errorf("POST %s %v: %d %s, want %d with a problem", tc.path, tc.body, st, admin.body, tc.want)
		}
	}
	if st := admin.get("/api/alerts?status=maybe"); st != 400 {
		t.Errorf("an unknown status filter: %d", st)
	}

	if st := admin.post(fmt.Sprintf("/api/alerts/%d/acknowledge", a.ID), nil); st != 204 {
		t.Fatalf("acknowledge: %d %s", st, admin.body)
	}
	if st := admin.post(fmt.Sprintf("/api/alerts/%d/acknowledge", a.ID), nil); st != 409 {
		t.Errorf("acknowledging twice: %d", st)
	}
	if st := admin.post(fmt.Sprintf("/api/alerts/%d/lock-user", a.ID), nil); st != 200 {
		t.Fatalf("lock the user: %d %s", st, admin.body)
	}
	if st := kato.get("/api/me"); st != 401 {
		t.Errorf("the locked doctor's session still works: %d", st)
	}
	if st := (&client{r: r}).post("/api/login", map[string]string{"login": "kato@kita-clinic", "password": r.users["kato@kita-clinic"].password}); st != 401 {
		t.Errorf("the locked doctor logged in again: %d", st)
	}
	if st := admin.post(fmt.Sprintf("/api/alerts/%d/resolve", a.ID), map[string]string{"note": "本人に確認: 検診結果の一括確認だった。ロックは解除しない"}); st != 204 {
		t.Fatalf("resolve: %d %s", st, admin.body)
	}
	admin.getJSON("/api/alerts?status=resolved", &list)
	if len(list) != 1 || list[0].Status != "resolved" || !strings.Contains(list[0].Note, "本人に確認") || !list[0].UserLocked {
		t.Errorf("resolved alerts: %+v", list)
	}
	// A week later the clinic decides the doctor may work again.
	if st := admin.post(fmt.Sprintf("/api/alerts/%d/unlock-user", a.ID), nil); st != 200 {
		t.Fatalf("unlock the user: %d %s", st, admin.body)
	}
	if st := (&client{r: r}).post("/api/login", map[string]string{"login": "kato@kita-clinic", "password": r.users["kato@kita-clinic"].password}); st != 200 {
		t.Errorf("the unlocked doctor's password step: %d, want 200", st)
	}
	admin.getJSON("/api/alerts?status=resolved", &list)
	if len(list) != 1 || list[0].UserLocked {
		t.Errorf("after unlocking, the alert still says the user is locked: %+v", list)
	}

	// The clinic's token used from two addresses (behind the trusted proxy) is revoked from its alert.
	tok := r.withToken(r.clinicWrite)
	for _, addr := range []string{"10.1.0.5", "203.0.113.50"} {
		if st := tok.get("/dicomweb/studies", "X-Forwarded-For", addr); st != 200 {
			t.Fatalf("token search: %d", st)
		}
	}
	ta := waitAlert(t, admin, monitor.RuleTokenAddresses)
	if ta.Actor != "clinic-gateway" || !ta.CanRevokeToken || !strings.Contains(ta.Explanation, "10.1.0.5") {
		t.Errorf("the token alert: %+v", ta)
	}
	if st := admin.post(fmt.Sprintf("/api/alerts/%d/revoke-token", ta.ID), nil); st != 200 {
		t.Fatalf("revoke: %d %s", st, admin.body)
	}
	if st := tok.get("/dicomweb/studies", "X-Forwarded-For", "10.1.0.5"); st != 401 {
		t.Errorf("the revoked token still works: %d", st)
	}

	// Each action is in the audit trail, as the admin's.
	var details []string
	for _, e := range r.events(0) {
		if e.Actor == "admin@kita-clinic" && strings.HasPrefix(e.Detail, "alert ") {
			details = append(details, string(e.Action)+" "+e.Detail)
		}
	}
	want := []string{
		fmt.Sprintf("admin alert %d (bulk-access): acknowledged", a.ID),
		fmt.Sprintf("admin alert %d (bulk-access): locked user kato@kita-clinic", a.ID),
		fmt.Sprintf("admin alert %d (bulk-access): resolved: 本人に確認: 検診結果の一括確認だった。ロックは解除しない", a.ID),
		fmt.Sprintf("admin alert %d (bulk-access): unlocked user kato@kita-clinic", a.ID),
		fmt.Sprintf("revoke alert %d (token-two-addresses): revoked API token clinic-gateway", ta.ID),
		fmt.Sprintf("admin alert %d (token-two-addresses): acknowledged", ta.ID),
	}
	if strings.Join(details, "\n") != strings.Join(want, "\n") {
		t.Errorf("audited alert actions:\n%s\nwant:\n%s", strings.Join(details, "\n"), strings.Join(want, "\n"))
	}
}

// TestAlertsBreakGlass: an emergency access that the owning clinic has not reviewed a day later raises one alert for
// the clinic (on the test clock); one it reviewed raises none.
func TestAlertsBreakGlass(t *testing.T) {
	r := newRegion(t)
	m := r.startMonitor(nil)
	c := r.withToken(r.clinicWrite)
	for i, p := range []struct{ id, name, birth string }{{"P9", "Yamada^Taro=山田^太郎", "19450312"}, {"P8", "Ueno^Ichiro=上野^一郎", "19500101"}} {
		body, ctype := r.stowBodyBorn(p.id, p.name, p.birth, int64(90+i))
		if st := c.do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
			t.Fatalf("store: %d %s", st, c.body)
		}
	}
	doctor := r.as("tanaka@chuo-hospital")
	for _, req := range []map[string]string{{"birthDate": "19450312", "name": "山田太郎", "reason": "救急搬送、意識障害"},
		{"birthDate": "19500101", "name": "上野一郎", "reason": "救急搬送、心肺停止"}} {
		if st := doctor.post("/api/break-glass", req); st != 201 {
			t.Fatalf("break-glass: %d %s", st, doctor.body)
		}
	}
	admin := r.as("admin@kita-clinic")
	var queue []map[string]any
	admin.getJSON("/api/break-glass/reviews", &queue)
	for _, q := range queue {
		if q["patientId"] == "P8" {
			if st := admin.post(fmt.Sprintf("/api/break-glass/%d/review", int64(q["id"].(float64))), map[string]string{"note": "救急外来の正当な閲覧"}); st != 204 {
				t.Fatalf("review: %d", st)
			}
		}
	}
	r.caughtUp(m)
	var list []alertView
	admin.getJSON("/api/alerts", &list)
	if len(list) != 0 {
		t.Fatalf("alerts before the review period is over: %+v", list)
	}
	r.clock.Advance(25 * time.Hour)
	admin = r.as("admin@kita-clinic")
	a := waitAlert(t, admin, monitor.RuleBreakGlass)
	if a.Patient == nil || a.Patient.ID != "P9" || a.Actor != "tanaka@chuo-hospital" || len(a.Events) != 1 || !strings.Contains(a.Explanation, "救急搬送、意識障害") {
		t.Errorf("the alert: %+v", a)
	}
	// Later checks do not raise it again, even once resolved.
	admin.post(fmt.Sprintf("/api/alerts/%d/resolve", a.ID), map[string]string{"note": "医師に確認、正当"})
	r.clock.Advance(2 * time.Hour)
	r.caughtUp(m)
	time.Sleep(100 * time.Millisecond) // several polls, each a check of the reviews
	admin = r.as("admin@kita-clinic")
	admin.getJSON("/api/alerts?status=all", &list)
	if len(list) != 1 {
		t.Errorf("alerts after later checks: %+v", list)
	}
	var hospital []alertView
	r.as("admin@chuo-hospital").getJSON("/api/alerts", &hospital)
	if len(hospital) != 0 {
		t.Errorf("the hospital's admin sees %+v", hospital)
	}
}

// TestAlertsNormalWork: two weeks of a region's ordinary work with the default rules (logins with the odd typo,
// searches, looking at own and shared studies, referrals and their answers, a radiologist's readings, the clinic's
// gateway storing, admins reading the trail) raise no alert. Any false positive is listed.
func TestAlertsNormalWork(t *testing.T) {
	r := newRegion(t)
	jst := time.FixedZone("JST", 9*3600)
	// The next Monday morning (the clock only moves forward: login limits and sessions follow it).
	now := r.clock.Now().In(jst)
	monday := time.Date(now.Year(), now.Month(), now.Day()+7-(int(now.Weekday())+6)%7, 0, 0, 0, 0, jst)
	r.clock.Set(monday.Add(7*time.Hour + 30*time.Minute))
	m := r.startMonitor(nil)
	hospitalWrite, err := r.ids.CreateToken(context.Background(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "hospital-pacs", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	at := func(day, hour, minute int) {
		r.clock.Set(monday.AddDate(0, 0, day).Add(time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute))
	}
	read := func(c *client, st study) {
		t.Helper()
		if code := c.get("/dicomweb/studies/" + st.studyUID + "/metadata"); code != 200 {
			t.Fatalf("read %s: %d", st.studyUID, code)
		}
	}
	clinicStudies := []study{r.p1a, r.p1b, r.p2}
	var hospitalStudies []study
	days := 0
	for day := range 14 {
		if monday.AddDate(0, 0, day).Weekday() == time.Sunday {
			continue
		}
		days++
		// 08:00 the clinic's gateway stores the morning's study; 08:30 the hospital's PACS sends two.
		at(day, 8, day%20)
		pid := fmt.Sprint("D", day)
		body, ctype := r.stowBody(pid, "Nichi^Jo", int64(1000+day), 1)
		r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype)
		for k := range 2 {
			body, ctype = r.stowBody(fmt.Sprint("H", day, k), "Byoin^Kanja", int64(2000+10*day+k), 1)
			c := r.withToken(hospitalWrite)
			if st := c.do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
				t.Fatalf("hospital store: %d", st)
			}
			var res struct {
				URL struct{ Value []string } `json:"00081190"`
			}
			if err := json.Unmarshal(c.body, &res); err != nil || len(res.URL.Value) != 1 {
				t.Fatalf("STOW-RS answer: %s", c.body)
			}
			uid := res.URL.Value[0][strings.LastIndex(res.URL.Value[0], "/")+1:]
			hospitalStudies = append(hospitalStudies, study{patient: renkei.PatientKey{Issuer: "CHUO", ID: fmt.Sprint("H", day, k)}, studyUID: uid})
		}

		// 08:40 the clinic doctor (one typo on Wednesdays), the list, own patients.
		at(day, 8, 40)
		if day%7 == 2 {
			(&client{r: r}).post("/api/login", map[string]string{"login": "kato@kita-clinic", "password": "typo typo typo typo"})
		}
		clinic := r.as("kato@kita-clinic")
		var list []any
		clinic.getJSON("/api/studies", &list)
		for _, st := range clinicStudies {
			read(clinic, st)
		}
		// Mondays the clinic refers P1 to the hospital with its CT.
		if day%7 == 0 {
			if st := clinic.post("/api/referrals", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
				"studies": []string{r.p1a.studyUID}, "letter": map[string]string{"purpose": "精査のお願い"}}); st != 201 {
				t.Fatalf("referral: %d %s", st, clinic.body)
			}
			ref := decodeReferral(t, clinic)
			if st := clinic.post(fmt.Sprintf("/api/referrals/%d/send", ref.ID), nil); st != 200 {
				t.Fatalf("send: %d %s", st, clinic.body)
			}
		}

		// 10:00 the hospital doctor: the referrals board, the shared CT, the hospital's own patients.
		at(day, 10, 5)
		doctor := r.as("tanaka@chuo-hospital")
		var board []any
		doctor.getJSON("/api/referrals?direction=in", &board)
		doctor.getJSON("/api/studies", &list)
		read(doctor, r.p1a)
		for _, st := range hospitalStudies[max(0, len(hospitalStudies)-4):] {
			read(doctor, st)
		}

		// 13:00–15:00 the radiologist reads the day's and yesterday's studies.
		at(day, 13, 10)
		rad := r.as("suzuki@chuo-hospital")
		for i, st := range hospitalStudies[max(0, len(hospitalStudies)-6):] {
			at(day, 13, 10+8*i)
			read(rad, st)
		}

		// 16:30 the clinic's admin looks at the trail and the alerts.
		at(day, 16, 30)
		cadmin := r.as("admin@kita-clinic")
		cadmin.getJSON("/api/audit", &list)
		cadmin.getJSON("/api/alerts", &list)
	}
	r.caughtUp(m)
	var fp []alertView
	for _, admin := range []string{"admin@kita-clinic", "admin@chuo-hospital"} {
		var list []alertView
		r.as(admin).getJSON("/api/alerts?status=all", &list)
		fp = append(fp, list...)
	}
	t.Logf("%d working days, %d audit events, %d false positives", days, r.lastSeq(), len(fp))
	for _, a := range fp {
		t.Errorf("false positive: %s %s: %s", a.Rule, a.Actor, a.Explanation)
	}
}

// TestAlertsPage: a clinic's administrator finds the alert from the menu, reads what happened in large plain text,
// opens the events behind it, acknowledges it and resolves it with a note, each in one click.
func TestAlertsPage(t *testing.T) {
	r := newRegion(t)
	r.startMonitor(func(m *monitor.Monitor) { m.Config.BulkAccess.Patients = 2 })
	kato := r.as("kato@kita-clinic")
	for _, st := range []study{r.p1a, r.p2} {
		kato.get("/dicomweb/studies/" + st.studyUID + "/metadata")
	}
	a := waitAlert(t, r.as("admin@kita-clinic"), monitor.RuleBulkAccess)
	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	card := fmt.Sprintf(`section[data-alert="%d"]`, a.ID)
	step("01-login", r.loginSteps(r.users["admin@kita-clinic"]), chromedp.WaitVisible(`#nav a[href="#/alerts"]`))
	step("02-alerts", chromedp.Click(`#nav a[href="#/alerts"]`), chromedp.WaitVisible(card))
	text, err := chromedp.Run(ctx, chromedp.Text(card))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"重要", "多数の患者の閲覧", "未対応", "kato@kita-clinic", "2人の患者", "記録 2 件", "この利用者をロックする"} {
		if !strings.Contains(text, want) {
			t.Errorf("the alert card does not say %q:\n%s", want, text)
		}
	}
	step("03-events", chromedp.Click(card+" .events-toggle"), chromedp.WaitVisible(card+" .alert-events tr[data-seq]"))
	events, _ := chromedp.Run(ctx, chromedp.Text(card+" .alert-events"))
	if !strings.Contains(events, "P1") || !strings.Contains(events, "P2") {
		t.Errorf("the events behind the alert: %s", events)
	}
	step("04-acknowledge", chromedp.Click(card+" button.ack"), chromedp.WaitVisible(card+`[data-status="acknowledged"]`))
	step("05-resolve", chromedp.SendKeys(card+" textarea.note", "本人に確認。紹介状の準備のための閲覧で問題なし"), chromedp.Click(card+" button.resolve"),
		chromedp.WaitVisible("#no-alerts"))
	got, err := r.db.Alert(t.Context(), a.ID)
	if err != nil || got.Status != renkei.AlertResolved || got.ResolvedBy != "admin@kita-clinic" || !strings.Contains(got.Note, "紹介状の準備") ||
		got.AcknowledgedBy != "admin@kita-clinic" {
		t.Errorf("after resolving in the browser: %+v %v", got, err)
	}
	step("06-resolved-list", chromedp.Click("#alerts-filter-resolved"), chromedp.WaitVisible(card+`[data-status="resolved"]`))
	text, _ = chromedp.Run(ctx, chromedp.Text(card))
	if !strings.Contains(text, "紹介状の準備") || !strings.Contains(text, "解決済み") {
		t.Errorf("the resolved alert: %s", text)
	}
}

// TestAlertsDailySummary: where a mail server is configured, each institution with unresolved alerts gets one e-mail
// a day at the configured hour, with their number by kind and the link to the alerts page, and nothing about who or
// which patient.
func TestAlertsDailySummary(t *testing.T) {
	r := newRegion(t)
	addr, inbox := smtpServer(t)
	r.clinic.Email = "chiiki@kita-clinic.example.jp"
	if err := r.db.PutInstitution(context.Background(), &r.clinic, nil); err != nil {
		t.Fatal(err)
	}
	mailer := &notify.Mailer{Addr: addr, From: "renkei <renkei@region.example.jp>", Retries: 2}
	hour := (r.clock.Now().In(time.FixedZone("JST", 9*3600)).Hour() + 1) % 24
	r.startMonitor(func(m *monitor.Monitor) {
		m.Config.BulkAccess.Patients, m.Config.Summary.Hour = 2, hour
		m.Mailer, m.PublicURL = mailer, "https://renkei.example.jp"
	})
	kato := r.as("kato@kita-clinic")
	for _, st := range []study{r.p1a, r.p2} {
		kato.get("/dicomweb/studies/" + st.studyUID + "/metadata")
	}
	waitAlert(t, r.as("admin@kita-clinic"), monitor.RuleBulkAccess)
	if files, _ := os.ReadDir(inbox); len(files) != 0 {
		t.Fatalf("a summary before its hour: %d e-mails", len(files))
	}
	r.clock.Advance(time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if files, _ := os.ReadDir(inbox); len(files) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no daily summary within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // later polls must not send it again
	msgs := mailbox(t, inbox)
	if len(msgs) != 1 || msgs[0].to != "chiiki@kita-clinic.example.jp" || !strings.Contains(msgs[0].subject, "未対応 1 件") ||
		!strings.Contains(msgs[0].body, "https://renkei.example.jp/#/alerts") || !strings.Contains(msgs[0].body, "多数の患者の閲覧: 1 件") {
		t.Fatalf("the summary: %+v", msgs)
	}
	for _, secret := range []string{"kato", "P1", "P2", "127.0.0.1"} {
		if strings.Contains(msgs[0].body, secret) {
			t.Errorf("the summary names %q:\n%s", secret, msgs[0].body)
		}
	}
}
