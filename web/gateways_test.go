package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"renkei"
	"renkei/notify"
)

type gatewayRow struct {
	Name, TokenName, AE, Health, Institution, LastError string
	Instances, Studies                                  int
	SeenAt                                              time.Time
}

// TestGatewayHeartbeat: a hospital gateway reports its queue with its token; the institution's admin sees it (another
// institution's admin does not, a physician may not look), sees it turn "silent" when it stops reporting, "backlog"
// when its images wait too long, and "revoked" when its token is; the 地域連携室 gets one e-mail when it turns silent.
func TestGatewayHeartbeat(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	gw := r.withToken(r.clinicWrite)
	beat := func(c *client, instances int, oldest time.Time) int {
		body := map[string]any{"name": "kita-gw-1", "ae": "KITA_GW", "version": "test", "instances": instances, "studies": 1, "bytes": 1 << 20}
		if !oldest.IsZero() {
			body["oldest"] = oldest
		}
		return c.post("/api/gateways/heartbeat", body)
	}
	if st := beat(gw, 12, r.clock.Now().Add(-5*time.Minute)); st != 200 {
		t.Fatalf("heartbeat: %d %s", st, gw.body)
	}
	if st := beat(r.withToken(r.hospitalRead), 1, time.Time{}); st != 403 {
		t.Errorf("a read-only token's heartbeat: %d, want 403", st)
	}
	if st := r.as("kato@kita-clinic").post("/api/gateways/heartbeat", map[string]any{"name": "x"}); st != 403 {
		t.Errorf("a user's heartbeat: %d, want 403", st)
	}
	list := func(login string) []gatewayRow {
		t.Helper()
		var out []gatewayRow
		c := r.as(login)
		if st := c.do("GET", "/api/gateways", nil); st != 200 {
			t.Fatalf("%s GET /api/gateways: %d %s", login, st, c.body)
		}
		if err := json.Unmarshal(c.body, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := list("admin@kita-clinic")
	if len(got) != 1 || got[0].Name != "kita-gw-1" || got[0].TokenName != "clinic-gateway" || got[0].Instances != 12 || got[0].Health != "ok" ||
		got[0].Institution != "kita-clinic" {
		t.Fatalf("the clinic's admin sees %+v", got)
	}
	if other := list("admin@chuo-hospital"); len(other) != 0 {
		t.Errorf("the hospital's admin sees the clinic's gateway: %+v", other)
	}
	if st := r.as("kato@kita-clinic").do("GET", "/api/gateways", nil); st != 403 {
		t.Errorf("a physician GET /api/gateways: %d, want 403", st)
	}
	op := renkei.Institution{ID: "region", Name: "地域連携ネットワーク", Kind: renkei.RegionOperator}
	if err := r.db.PutInstitution(ctx, &op, nil); err != nil {
		t.Fatal(err)
	}
	r.addUser("region@renkei", op, renkei.RegionAdmin)
	if all := list("region@renkei"); len(all) != 1 {
		t.Errorf("the region admin sees %d gateways, want 1", len(all))
	}

	// Silence: the watcher tells the clinic's 地域連携室 once.
	addr, inbox := smtpServer(t)
	r.clinic.Email = "chiiki@kita-clinic.example.jp"
	if err := r.db.PutInstitution(ctx, &r.clinic, nil); err != nil {
		t.Fatal(err)
	}
	r.front.Mailer = &notify.Mailer{Addr: addr, From: "renkei <renkei@region.example.jp>", Retries: 2}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.front.WatchGateways(wctx, 20*time.Millisecond); close(done) }()
	time.Sleep(100 * time.Millisecond) // the watcher has seen it healthy
	r.clock.Advance(30 * time.Minute)
	if got := list("admin@kita-clinic"); got[0].Health != "silent" {
		t.Errorf("30 minutes without a heartbeat: %q, want silent", got[0].Health)
	}
	var msgs []received
	for i := 0; i < 200 && len(msgs) == 0; i++ {
		time.Sleep(50 * time.Millisecond)
		msgs = mailbox(t, inbox)
	}
	time.Sleep(200 * time.Millisecond) // more watcher rounds: still one e-mail
	stop()
	<-done
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r.front.Mailer.Wait(mctx)
	if msgs = mailbox(t, inbox); len(msgs) != 1 || msgs[0].to != "chiiki@kita-clinic.example.jp" || !strings.Contains(msgs[0].body, "kita-gw-1") {
		t.Errorf("e-mails about the silent gateway: %+v, want one to the clinic naming it", msgs)
	}

	// The clinic's admin finds it among the alerts, with its token one click from revocation.
	var alerts []struct {
		Rule, Actor, Explanation string
		CanRevokeToken           bool
	}
	r.as("admin@kita-clinic").getJSON("/api/alerts", &alerts)
	if len(alerts) != 1 || alerts[0].Rule != "gateway-silent" || alerts[0].Actor != "clinic-gateway" || !alerts[0].CanRevokeToken ||
		!strings.Contains(alerts[0].Explanation, "kita-gw-1") {
		t.Errorf("the clinic's alerts: %+v", alerts)
	}

	// Backlog: it reports again, but its oldest image has waited two hours.
	if st := beat(gw, 40, r.clock.Now().Add(-2*time.Hour)); st != 200 {
		t.Fatal(st)
	}
	if got := list("admin@kita-clinic"); got[0].Health != "backlog" || got[0].Instances != 40 {
		t.Errorf("a two-hour-old backlog: %+v, want backlog", got[0])
	}
	tokens, _ := r.db.Tokens(ctx, r.clinic.PK)
	for _, tk := range tokens {
		if tk.Name == "clinic-gateway" {
			if err := r.db.RevokeToken(ctx, tk.PK, r.clinic.PK, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := list("admin@kita-clinic"); got[0].Health != "revoked" {
		t.Errorf("after its token was revoked: %q, want revoked", got[0].Health)
	}

	// The admin page shows it, marked.
	ctxB, cancelB := browser(t)
	defer cancelB()
	out := artifacts(t)
	step := stepper(ctxB, t, out)
	step("01-admin", r.loginSteps(r.users["admin@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/admin"),
		chromedp.WaitVisible(`#gateways tr[data-health="revoked"]`))
	if s, _ := chromedp.Run(ctxB, chromedp.Text("#gateways")); !strings.Contains(s, "kita-gw-1") || !strings.Contains(s, "トークン失効") ||
		!strings.Contains(s, fmt.Sprint(40)) {
		t.Errorf("the admin page's gateways read %q", s)
	}
}

// TestFetchRequestBrowser: on a patient's page a clinic doctor asks for earlier studies from the clinic's PACS; the
// clinic's gateway sees the request with its token, reports what it fetched, and the page shows the result.
func TestFetchRequestBrowser(t *testing.T) {
	r := newRegion(t)
	ctx, cancel := browser(t)
	defer cancel()
	out := artifacts(t)
	step := stepper(ctx, t, out)
	step("01-ask", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/patient/kita-clinic/KITA/P1"),
		chromedp.WaitVisible("#fetch-form"), chromedp.SendKeys("#fetch-reason", "紹介状に添付"), chromedp.Click("#fetch-submit"),
		chromedp.WaitVisible(`#fetch-requests li[data-status="pending"]`))
	gw := r.withToken(r.clinicWrite)
	var open []struct {
		ID                  int64
		PatientID, Reason   string
		RequestedBy, Status string
	}
	gw.getJSON("/api/gateways/requests", &open)
	if len(open) != 1 || open[0].PatientID != "P1" || open[0].Reason != "紹介状に添付" || open[0].RequestedBy != "kato@kita-clinic" {
		t.Fatalf("the clinic's gateway sees %+v", open)
	}
	if st := r.withToken(r.hospitalRead).post(fmt.Sprintf("/api/gateways/requests/%d", open[0].ID), map[string]any{"status": "done"}); st != 403 {
		t.Errorf("another institution's read-only token reporting: %d, want 403", st)
	}
	if st := gw.post(fmt.Sprintf("/api/gateways/requests/%d", open[0].ID), map[string]any{"status": "done", "studies": 2, "instances": 40}); st != 200 {
		t.Fatalf("the gateway's report: %d %s", st, gw.body)
	}
	if st := gw.post(fmt.Sprintf("/api/gateways/requests/%d", open[0].ID), map[string]any{"status": "failed"}); st != 409 {
		t.Errorf("reporting on a finished request: %d, want 409", st)
	}
	step("02-done", hashRoute("#/studies"), chromedp.WaitVisible("#search"), hashRoute("#/patient/kita-clinic/KITA/P1"),
		chromedp.WaitVisible(`#fetch-requests li[data-status="done"]`))
	if s, _ := chromedp.Run(ctx, chromedp.Text("#fetch-requests")); !strings.Contains(s, "完了") || !strings.Contains(s, "2 検査・40 画像") {
		t.Errorf("the patient's page reads %q", s)
	}
}

// TestGatewayInbox: a share of a whole patient reaches the receiving institution's gateway as all of that patient's
// studies, each with its instance count (so the gateway skips a study it has delivered in full), and nothing of a
// patient that was not shared.
func TestGatewayInbox(t *testing.T) {
	r := newRegion(t)
	clinic := r.as("kato@kita-clinic")
	if st := clinic.post("/api/consents", map[string]any{"patientId": "P1", "scope": []string{"region"}, "method": "electronic", "signature": "同意します"}); st != 201 {
		t.Fatalf("consent: %d %s", st, clinic.body)
	}
	if st := clinic.post("/api/shares", map[string]any{"patientId": "P1", "toInstitution": "chuo-hospital", "purpose": "referral", "reason": "紹介"}); st != 201 {
		t.Fatalf("share: %d %s", st, clinic.body)
	}
	var inbox []struct {
		FromInstitution, Issuer, PatientID string
		Studies                            []string
		Instances                          map[string]int
	}
	r.withToken(r.hospitalRead).getJSON("/api/gateways/inbox", &inbox)
	if len(inbox) != 1 || inbox[0].FromInstitution != "kita-clinic" || inbox[0].PatientID != "P1" || len(inbox[0].Studies) != 2 {
		t.Fatalf("the hospital's inbox: %+v", inbox)
	}
	for _, st := range []struct {
		uid string
		n   int
	}{{r.p1a.studyUID, 2}, {r.p1b.studyUID, 1}} {
		if inbox[0].Instances[st.uid] != st.n {
			t.Errorf("study %s: %d instances, want %d", st.uid, inbox[0].Instances[st.uid], st.n)
		}
	}
	var none []any
	r.withToken(r.clinicWrite).getJSON("/api/gateways/inbox", &none)
	if len(none) != 0 {
		t.Errorf("the clinic's own inbox: %+v", none)
	}
}
