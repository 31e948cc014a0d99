package web_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"renkei"
	"renkei/atna"
	"renkei/security"
	"renkei/web"
)

// withSecurity adds the region's office with a region admin, and the security page as serve wires it.
func (r *region) withSecurity(conf security.Config) {
	r.t.Helper()
	ctx := context.Background()
	office := renkei.Institution{ID: "region", Name: "地域連携ネットワーク事務局", Kind: renkei.RegionOperator}
	if err := r.db.PutInstitution(ctx, &office, nil); err != nil {
		r.t.Fatal(err)
	}
	r.addUser("admin@region", office, renkei.RegionAdmin)
	keys := map[string]ed25519.PublicKey{r.key.ID: r.key.Private.Public().(ed25519.PublicKey)}
	r.front.Security = &web.SecurityPage{Store: r.db, Config: conf, Source: atna.Source{ID: "renkei-test", Site: "region", Host: "renkei.example.jp", AE: "RENKEI"},
		Verify: func(ctx context.Context, by string) (renkei.AuditVerification, error) {
			if _, err := r.db.VerifyAndRecordAudit(ctx, keys, by); err != nil {
				return renkei.AuditVerification{}, err
			}
			return r.db.LastAuditVerification(ctx)
		}}
}

func statusOf(t *testing.T, c *client) map[string]security.Item {
	t.Helper()
	var rep security.Report
	c.getJSON("/api/security/status", &rep)
	out := map[string]security.Item{}
	for _, it := range rep.Items {
		if it.State != security.OK && it.State != security.Attention && it.State != security.Unknown {
			t.Errorf("item %s has state %q", it.ID, it.State)
		}
		if it.Title.Ja == "" || it.Title.En == "" || it.Message.Ja == "" || it.Message.En == "" {
			t.Errorf("item %s lacks words in one language: %+v", it.ID, it)
		}
		if it.State == security.Attention && (it.Todo == nil || it.Todo.Ja == "" || it.Todo.En == "") {
			t.Errorf("item %s needs attention but does not say what to do", it.ID)
		}
		out[it.ID] = it
	}
	return out
}

func entryNames(it security.Item) []string {
	var out []string
	for _, e := range it.Entries {
		out = append(out, e.Name)
	}
	return out
}

// TestSecurityStatus: a user without a second factor, a dormant account and tokens unused or too old show up on
// the region's security page, with what to do; once an admin deals with them they are gone.
func TestSecurityStatus(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	r.withSecurity(security.Config{PublicURL: "http://renkei.example.jp", HTTP: "0.0.0.0:8080", DIMSE: "0.0.0.0:11112",
		Policy: security.Policy{DormantAfter: 90 * 24 * time.Hour, TokenMaxAge: 60 * 24 * time.Hour}})

	// A newcomer whose account was made but who never finished the first login (no second factor yet), a doctor who
	// will stop logging in, and a token made for a script that never ran.
	newcomer := renkei.User{Login: "new@chuo-hospital", Name: "新人", Institution: r.hospital, Role: renkei.Nurse}
	if err := r.ids.CreateUserWithPassword(ctx, renkei.System, &newcomer, "a one-time password 123"); err != nil {
		t.Fatal(err)
	}
	r.addUser("old@kita-clinic", r.clinic, renkei.Physician)
	unused := &renkei.APIToken{Institution: r.hospital.PK, Name: "nightly-export"}
	if _, err := r.ids.CreateToken(ctx, renkei.System, unused); err != nil {
		t.Fatal(err)
	}
	// A hundred days pass; the clinic's gateway keeps sending (its token is in use) and the region admin logs in.
	r.clock.Advance(100 * 24 * time.Hour)
	r.stow(r.clinicWrite, "P3", "Ito^Hanako=伊藤^花子", 9, 1)
	admin := r.as("admin@region")

	st := statusOf(t, admin)
	for id, want := range map[string]string{"http-tls": security.Attention, "dicom-tls": security.Attention, "two-factor": security.Attention,
		"dormant": security.Attention, "tokens": security.Attention, "audit-verify": security.Attention, "audit-export": security.Attention,
		"backup": security.Unknown, "ae-tls": security.OK} {
		if st[id].State != want {
			t.Errorf("%s: %s (%s), want %s", id, st[id].State, st[id].Message.En, want)
		}
	}
	if names := entryNames(st["two-factor"]); !slices.Equal(names, []string{"new@chuo-hospital"}) {
		t.Errorf("users without a second factor: %v", names)
	}
	if names := entryNames(st["dormant"]); !slices.Contains(names, "old@kita-clinic") || slices.Contains(names, "admin@region") {
		t.Errorf("dormant accounts: %v", names)
	}
	tokens := strings.Join(entryNames(st["tokens"]), " ")
	if !strings.Contains(tokens, "nightly-export") || !strings.Contains(tokens, "clinic-gateway") {
		t.Errorf("tokens never used or too old: %s", tokens)
	}
	if !strings.Contains(st["dormant"].Todo.En, "renkei admin user disable") || !strings.Contains(st["dormant"].Todo.Ja, "無効") {
		t.Errorf("the dormant item does not say what to do: %+v", st["dormant"].Todo)
	}

	// The admin deals with each: the newcomer's account is disabled (as renkei admin user disable does), the doctor
	// logs in again, the unused token is revoked and the gateway's replaced; the chain is verified.
	yes := true
	if err := r.db.UpdateUser(ctx, newcomer.PK, renkei.UserUpdate{Disabled: &yes, EndSessions: true}, nil); err != nil {
		t.Fatal(err)
	}
	r.as("old@kita-clinic")
	tokenList, err := r.db.Tokens(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tokenList {
		if tk.Name == "nightly-export" || tk.Name == "clinic-gateway" || tk.Name == "hospital-viewer" {
			if err := r.db.RevokeToken(ctx, tk.PK, 0, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	fresh, err := r.ids.CreateToken(ctx, renkei.System, &renkei.APIToken{Institution: r.clinic.PK, Name: "clinic-gateway-2", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	r.stow(fresh, "P4", "Abe^Ken=阿部^健", 10, 1)
	if st := admin.post("/api/security/verify", map[string]any{}); st != 200 {
		t.Fatalf("verify now: %d %s", st, admin.body)
	}
	var v struct {
		Events   int64
		Problems int
		By       string
	}
	json.Unmarshal(admin.body, &v)
	if v.Problems != 0 || v.Events == 0 || v.By != "admin@region" {
		t.Errorf("verification: %+v", v)
	}

	st = statusOf(t, admin)
	for _, id := range []string{"two-factor", "tokens", "audit-verify"} {
		if st[id].State != security.OK {
			t.Errorf("%s after the fix: %s: %s %v", id, st[id].State, st[id].Message.En, entryNames(st[id]))
		}
	}
	if names := entryNames(st["dormant"]); slices.Contains(names, "old@kita-clinic") {
		t.Errorf("a doctor who logged in again is still dormant: %v", names)
	}

	// Only region admins see it.
	if code := r.as("admin@kita-clinic").get("/api/security/status"); code != 403 {
		t.Errorf("an institution admin: %d", code)
	}
}

// TestSecurityStatusDeployment: what the page says about a deployment behind an HTTPS proxy with DICOM TLS, a device
// that still sends unencrypted, the audit export and a backup marker.
func TestSecurityStatusDeployment(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	marker := r.dir + "/backup-ok"
	r.withSecurity(security.Config{PublicURL: "https://renkei.example.jp", HTTP: "127.0.0.1:8080", TrustedProxies: 1,
		DIMSE: "0.0.0.0:11112", DIMSETLS: "0.0.0.0:2762", DIMSEClientCA: true, BackupMarker: marker,
		Export: func() atna.Status { return atna.Status{Addr: "siem.example.jp:6514", Connected: true, Delivered: 10} }})
	for _, ae := range []renkei.AE{{Title: "CT1", Institution: "kita-clinic"}, {Title: "MR1", Institution: "kita-clinic"}, {Title: "US1", Institution: "kita-clinic"}} {
		if err := r.db.PutAE(ctx, ae, nil); err != nil {
			t.Fatal(err)
		}
	}
	now := r.clock.Now()
	r.db.NoteAEConnection(ctx, renkei.AEConnection{Title: "CT1", At: now, TLS: false, Address: "192.0.2.10:40001"})
	r.db.NoteAEConnection(ctx, renkei.AEConnection{Title: "MR1", At: now, TLS: true, Address: "192.0.2.11:40001"})
	admin := r.as("admin@region")
	st := statusOf(t, admin)
	for id, want := range map[string]string{"http-tls": security.OK, "dicom-tls": security.OK, "ae-tls": security.Attention,
		"audit-export": security.OK, "backup": security.Attention} {
		if st[id].State != want {
			t.Errorf("%s: %s (%s), want %s", id, st[id].State, st[id].Message.En, want)
		}
	}
	if names := entryNames(st["ae-tls"]); !slices.Equal(names, []string{"CT1"}) {
		t.Errorf("AEs without TLS: %v", names)
	}
	if !strings.Contains(st["backup"].Message.En, "does not exist") {
		t.Errorf("backup without its marker: %s", st["backup"].Message.En)
	}
	// The nightly backup succeeds and touches its marker.
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(marker, r.clock.Now(), r.clock.Now())
	if it := statusOf(t, admin)["backup"]; it.State != security.OK {
		t.Errorf("backup after a success: %s %s", it.State, it.Message.En)
	}
}

// TestAuditFHIR: the audit trail as a FHIR R4 Bundle of AuditEvent, coded as IHE ATNA codes it; region admins see
// everything, an institution admin their institution's, others nothing; bad parameters get a clear problem.
func TestAuditFHIR(t *testing.T) {
	r := newRegion(t)
	r.withSecurity(security.Config{})
	clinic := r.as("kato@kita-clinic")
	doctor := r.as("tanaka@chuo-hospital")
	if st := clinic.post("/api/shares", map[string]any{"patientId": "P1", "studies": []string{r.p1a.studyUID}, "toInstitution": "chuo-hospital",
		"purpose": "referral"}); st != 201 {
		t.Fatalf("share: %d %s", st, clinic.body)
	}
	doctor.get("/dicomweb/studies/" + r.p1a.studyUID + "/metadata")
	if doctor.status != 200 {
		t.Fatalf("the shared study: %d", doctor.status)
	}

	type coding struct{ System, Code, Display string }
	type bundle struct {
		ResourceType, Type string
		Entry              []struct {
			FullURL  string
			Resource struct {
				ResourceType, ID, Action, Recorded, Outcome string
				Type                                        coding
				Subtype                                     []coding
				Agent                                       []struct {
					Who struct {
						Identifier struct{ System, Value string }
						Display    string
					}
					Requestor bool
					Network   struct{ Address, Type string }
				}
				Source struct {
					Site     string
					Observer struct{ Display string }
				}
				Entity []struct {
					What struct {
						Type       string
						Identifier struct{ System, Value string }
					}
					Role   coding
					Detail []struct{ Type, ValueString string }
				}
			}
		}
	}
	admin := r.as("admin@region")
	var b bundle
	if st := admin.get("/api/audit/fhir?action=read&_count=10"); st != 200 {
		t.Fatalf("GET /api/audit/fhir: %d %s", st, admin.body)
	}
	if err := json.Unmarshal(admin.body, &b); err != nil {
		t.Fatal(err)
	}
	if b.ResourceType != "Bundle" || b.Type != "searchset" || len(b.Entry) != 1 {
		t.Fatalf("bundle %s with %d entries: %s", b.Type, len(b.Entry), admin.body)
	}
	ev := b.Entry[0].Resource
	if ev.ResourceType != "AuditEvent" || ev.Type.Code != "110103" || ev.Type.System != "http://dicom.nema.org/resources/ontology/DCM" ||
		ev.Action != "R" || ev.Outcome != "0" || ev.Recorded == "" || !strings.HasPrefix(b.Entry[0].FullURL, "urn:uuid:") {
		t.Errorf("the read as an AuditEvent: %+v", ev)
	}
	if len(ev.Agent) != 2 || !ev.Agent[0].Requestor || ev.Agent[0].Who.Identifier.Value != "tanaka@chuo-hospital" ||
		ev.Agent[0].Who.Display != "tanaka@chuo-hospital (chuo-hospital)" || ev.Agent[0].Network.Address != "127.0.0.1" || ev.Agent[0].Network.Type != "2" {
		t.Errorf("the reader: %+v", ev.Agent)
	}
	if ev.Source.Observer.Display != "renkei-test" || ev.Source.Site != "region" {
		t.Errorf("the source: %+v", ev.Source)
	}
	var patient, studyUID string
	for _, en := range ev.Entity {
		switch en.What.Type {
		case "Patient":
			patient = en.What.Identifier.System + "|" + en.What.Identifier.Value
			if len(en.Detail) != 1 || en.Detail[0].ValueString != "kita-clinic" {
				t.Errorf("the patient's data holder: %+v", en.Detail)
			}
		case "ImagingStudy":
			studyUID = en.What.Identifier.Value
		}
	}
	if patient != "urn:renkei:issuer:KITA|P1" || studyUID != "urn:oid:"+r.p1a.studyUID {
		t.Errorf("entities: patient %q study %q", patient, studyUID)
	}

	// The share is a security event (object security attributes changed) in the clinic admin's view too; the
	// hospital's admin sees the read by their physician but not the clinic's own logins.
	var mine bundle
	clinicAdmin := r.as("admin@kita-clinic")
	clinicAdmin.getJSON("/api/audit/fhir?action=share", &mine)
	if len(mine.Entry) != 1 || mine.Entry[0].Resource.Type.Code != "110113" || mine.Entry[0].Resource.Subtype[0].Code != "110135" {
		t.Errorf("the share in the clinic admin's view: %+v", mine.Entry)
	}
	hospitalAdmin := r.as("admin@chuo-hospital")
	var theirs bundle
	hospitalAdmin.getJSON("/api/audit/fhir?action=login", &theirs)
	for _, e := range theirs.Entry {
		if strings.HasSuffix(e.Resource.Agent[0].Who.Identifier.Value, "@kita-clinic") {
			t.Errorf("the hospital's admin sees a clinic login: %+v", e.Resource.Agent[0])
		}
	}
	if len(theirs.Entry) == 0 || theirs.Entry[0].Resource.Type.Code != "110114" {
		t.Errorf("logins as User Authentication: %+v", theirs.Entry)
	}

	if st := doctor.get("/api/audit/fhir"); st != 403 {
		t.Errorf("a physician read the audit trail: %d", st)
	}
	for _, q := range []string{"?_count=0", "?since=yesterday", "?patient=P1", "?since=2026-11-05&until=2026-11-01", "?action=DROP%20TABLE"} {
		if st := admin.get("/api/audit/fhir" + q); st != 400 {
			t.Errorf("%s: %d", q, st)
			continue
		}
		var p struct{ Detail string }
		json.Unmarshal(admin.body, &p)
		if p.Detail == "" {
			t.Errorf("%s: no detail in %s", q, admin.body)
		}
	}
}

// TestSecurityPage: a region admin opens the security status from the admin page in Chromium, sees what needs
// attention with what to do, and verifies the audit trail there.
func TestSecurityPage(t *testing.T) {
	r := newRegion(t)
	r.withSecurity(security.Config{PublicURL: "http://renkei.example.jp", HTTP: "0.0.0.0:8080"})
	newcomer := renkei.User{Login: "new@chuo-hospital", Name: "新人", Institution: r.hospital, Role: renkei.Nurse}
	if err := r.ids.CreateUserWithPassword(context.Background(), renkei.System, &newcomer, "a one-time password 123"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := browser(t)
	defer cancel()
	out := artifacts(t)
	step := stepper(ctx, t, out)
	step("01-admin", r.loginSteps(r.users["admin@region"]), chromedp.WaitVisible("#search"), hashRoute("#/admin"), chromedp.WaitVisible("#security-link"))
	step("02-security", chromedp.Click("#security-link"), chromedp.WaitVisible(`#security-two-factor[data-state="attention"]`),
		chromedp.WaitVisible(`#security-audit-verify[data-state="attention"]`))
	page, err := chromedp.Run(ctx, chromedp.Text("#security-items"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"二要素認証を設定していない利用者", "new@chuo-hospital", "要対応", "対処:", "renkei admin user disable", "バックアップ", "不明"} {
		if !strings.Contains(page, want) {
			t.Errorf("the security page does not say %q:\n%s", want, page)
		}
	}
	step("03-verify", chromedp.Click("#security-verify"), chromedp.WaitVisible(`#security-audit-verify[data-state="ok"]`))
	screenshot(ctx, t, out, "03-verified")
}
