package sqlstore_test

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"renkei"
	"renkei/sqlstore"
)

// TestOtherStores goes once through the stores the other tests leave out (consent, patient links, share links,
// consults, gateways, security status, alerts and the monitor's cursor), on both databases: every statement they
// run must parse and bind on PostgreSQL too.
func TestOtherStores(t *testing.T) { eachDB(t, testOtherStores) }

func testOtherStores(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp, clinic, doc, gp := region(t, db)
	now := time.UnixMilli(time.Now().UnixMilli())
	p1 := renkei.PatientKey{Issuer: "KITA", ID: "P1"}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Consent and a share that needs it.
	c := &renkei.Consent{Institution: clinic.PK, Patient: p1, Scope: "region", GivenAt: now, Method: "paper", RecordedBy: gp.Login, RecordedAt: now}
	must("AddConsent", db.AddConsent(ctx, c, nil))
	lp, err := db.LocalPatient(ctx, clinic.PK, p1)
	must("LocalPatient", err)
	cs, err := db.Consents(ctx, clinic.PK, lp.PK)
	must("Consents", err)
	if len(cs) != 1 {
		t.Errorf("Consents: %+v", cs)
	}
	must("CreateShare with consent", db.CreateShare(ctx, &renkei.Share{FromInstitution: clinic.PK, Patient: p1, ToInstitution: hosp.PK,
		Purpose: renkei.PurposeReferral, CreatedBy: gp.PK, ExpiresAt: now.Add(time.Hour)}, nil))
	if ok, err := db.MaySeePatient(ctx, hosp.PK, doc.PK, lp.PK, now); err != nil || !ok {
		t.Errorf("MaySeePatient after the share: %v %v", ok, err)
	}

	// The same person at the hospital, linked as one regional patient.
	in := inst("H1", "9.1", "9.1.1", "9.1.1.1", "CT", "k91")
	in.Institution, in.Patient.Issuer = hosp.PK, "CHUO"
	in.PatientBirthDate, in.PatientSex = "19500101", "M"
	if _, _, err := db.Insert(ctx, in); err != nil {
		t.Fatal(err)
	}
	hp, err := db.LocalPatient(ctx, hosp.PK, renkei.PatientKey{Issuer: "CHUO", ID: "H1"})
	must("LocalPatient", err)
	if _, err := db.LinkProposals(ctx, 10); err != nil {
		t.Errorf("LinkProposals: %v", err)
	}
	if _, err := db.FindPatients(ctx, "19500101", "YAMADA^TARO", "", 10); err != nil {
		t.Errorf("FindPatients: %v", err)
	}
	must("AddConsent", db.AddConsent(ctx, &renkei.Consent{Institution: hosp.PK, Patient: renkei.PatientKey{Issuer: "CHUO", ID: "H1"}, Scope: "region",
		GivenAt: now, Method: "paper", RecordedBy: doc.Login, RecordedAt: now}, nil))
	regional, err := db.Link(ctx, lp.PK, hp.PK, "admin", nil)
	must("Link", err)
	if got, err := db.RegionalPatient(ctx, regional); err != nil || len(got) != 2 {
		t.Errorf("RegionalPatient: %+v %v", got, err)
	}
	must("Unlink", db.Unlink(ctx, hp.PK, nil))

	// A share link with its PIN attempts.
	l := &renkei.ShareLink{Institution: clinic.PK, Patient: p1, Studies: []string{"5.1"}, CreatedBy: gp.PK, CreatedByName: gp.Name,
		ExpiresAt: now.Add(time.Hour), TokenHash: "tok", PINHash: "pin"}
	must("CreateShareLink", db.CreateShareLink(ctx, l, nil))
	got, err := db.ShareLinkByToken(ctx, "tok")
	if err != nil || len(got.Studies) != 1 || got.Studies[0] != "5.1" {
		t.Errorf("ShareLinkByToken: %+v %v", got, err)
	}
	if _, err := db.BeginPINAttempt(ctx, l.ID, 10); err != nil {
		t.Errorf("BeginPINAttempt: %v", err)
	}
	if _, err := db.PINWrong(ctx, l.ID, 10, nil, nil); err != nil {
		t.Errorf("PINWrong: %v", err)
	}
	must("PINRight", db.PINRight(ctx, l.ID, "view", "10.0.0.9", now.Add(30*time.Minute), nil))
	if ok, err := db.ShareLinkView(ctx, l.ID, "view", now); err != nil || !ok {
		t.Errorf("ShareLinkView: %v %v", ok, err)
	}

	// A consult with a member and an event.
	con := &renkei.Consult{StudyUID: "5.1", StudyOwner: clinic.PK, Patient: p1, Title: "相談", CreatedBy: gp.PK, CreatedByName: gp.Name, Institution: clinic.PK}
	must("CreateConsult", db.CreateConsult(ctx, con, nil))
	must("InviteToConsult", db.InviteToConsult(ctx, con.ID, renkei.ConsultMember{User: doc.PK, Login: doc.Login, InvitedBy: gp.Login}, nil, nil))
	must("AddConsultEvent", db.AddConsultEvent(ctx, con.ID, renkei.ConsultEvent{At: now, Login: doc.Login, Kind: "chat", Body: "こんにちは"}))
	if cs, err := db.ConsultsOf(ctx, doc.PK); err != nil || len(cs) != 1 {
		t.Errorf("ConsultsOf: %+v %v", cs, err)
	}

	// A gateway's heartbeat and a fetch request.
	tok := &renkei.APIToken{Institution: hosp.PK, Name: "gw", Write: true, CreatedAt: now}
	must("CreateToken", db.CreateToken(ctx, tok, "gwhash", nil))
	must("SaveGatewayReport", db.SaveGatewayReport(ctx, renkei.GatewayReport{Token: tok.PK, Institution: hosp.PK, Name: "gw", Instances: 3, SeenAt: now}))
	must("SaveGatewayReport again", db.SaveGatewayReport(ctx, renkei.GatewayReport{Token: tok.PK, Institution: hosp.PK, Name: "gw", Instances: 1, SeenAt: now}))
	if gs, err := db.GatewayReports(ctx, hosp.PK); err != nil || len(gs) != 1 || gs[0].Instances != 1 {
		t.Errorf("GatewayReports: %+v %v", gs, err)
	}

	// Security status: AE transports, verifications, accounts, export cursor.
	must("NoteAEConnection", db.NoteAEConnection(ctx, renkei.AEConnection{Title: "CT1", At: now, TLS: true, Address: "10.0.0.5"}))
	if m, err := db.AEConnections(ctx); err != nil || !m["CT1"].TLS {
		t.Errorf("AEConnections: %+v %v", m, err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	db.AuditKey = &sqlstore.AuditKey{ID: "k", Private: priv}
	if _, err := db.VerifyAndRecordAudit(ctx, map[string]ed25519.PublicKey{"k": priv.Public().(ed25519.PublicKey)}, "admin shell"); err != nil {
		t.Errorf("VerifyAndRecordAudit: %v", err)
	}
	if v, err := db.LastAuditVerification(ctx); err != nil || v.By != "admin shell" {
		t.Errorf("LastAuditVerification: %+v %v", v, err)
	}
	if _, err := db.Accounts(ctx); err != nil {
		t.Errorf("Accounts: %v", err)
	}
	must("SetExportCursor", db.SetExportCursor(ctx, "siem", 3))
	if seq, err := db.ExportCursor(ctx, "siem"); err != nil || seq != 3 {
		t.Errorf("ExportCursor: %d %v", seq, err)
	}

	// The monitor: its cursor, an alert raised with the cursor's move, acknowledged.
	must("Audit", db.Audit(ctx, &renkei.AuditEvent{Actor: doc.Login, ActorKind: renkei.UserPrincipal, ActorID: doc.PK, Action: renkei.ActionRead}))
	from, _, err := db.MonitorCursor(ctx, "rules", 0)
	must("MonitorCursor", err)
	head, err := db.AuditHead(ctx)
	must("AuditHead", err)
	a := &renkei.Alert{Rule: "bulk-access", Subject: "user:1", Severity: "high", Institution: hosp.PK, ActorKind: renkei.UserPrincipal, ActorID: doc.PK,
		Events: []int64{head}, Count: 1, FirstAt: now, LastAt: now}
	must("CommitMonitor", db.CommitMonitor(ctx, "rules", from, head, []byte(`{}`), []*renkei.Alert{a}))
	as, err := db.Alerts(ctx, renkei.AlertFilter{})
	if err != nil || len(as) != 1 {
		t.Fatalf("Alerts: %+v %v", as, err)
	}
	must("AcknowledgeAlert", db.AcknowledgeAlert(ctx, as[0].ID, 0, "admin", nil))
	if evs, err := db.AlertEvents(ctx, as[0].ID); err != nil || len(evs) != 1 {
		t.Errorf("AlertEvents: %d %v", len(evs), err)
	}
}

// TestWithdrawConsentEndsLinks: a share link shows a patient's images outside the region and needs the patient's
// consent to disclose in the region; once the last such consent is withdrawn, the institution's links of the
// patient end at once, as its shares do. They once stayed open, and the family's URL and PIN showed the images after
// the patient had withdrawn.
func TestWithdrawConsentEndsLinks(t *testing.T) { eachDB(t, testWithdrawConsentEndsLinks) }

func testWithdrawConsentEndsLinks(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	_, clinic, _, gp := region(t, db)
	now := time.UnixMilli(time.Now().UnixMilli())
	p1 := renkei.PatientKey{Issuer: "KITA", ID: "P1"}
	var consents []int64
	for range 2 {
		c := &renkei.Consent{Institution: clinic.PK, Patient: p1, Scope: "region", GivenAt: now, Method: "paper", RecordedBy: gp.Login, RecordedAt: now}
		if err := db.AddConsent(ctx, c, nil); err != nil {
			t.Fatal(err)
		}
		consents = append(consents, c.ID)
	}
	l := &renkei.ShareLink{Institution: clinic.PK, Patient: p1, CreatedBy: gp.PK, CreatedByName: gp.Name, ExpiresAt: now.Add(time.Hour),
		TokenHash: "tok", PINHash: "pin"}
	if err := db.CreateShareLink(ctx, l, nil); err != nil {
		t.Fatal(err)
	}
	revoked := func() bool {
		t.Helper()
		got, err := db.ShareLinkByToken(ctx, "tok")
		if err != nil {
			t.Fatal(err)
		}
		return got.RevokedAt != nil
	}
	if err := db.WithdrawConsent(ctx, consents[0], clinic.PK, gp.Login, nil); err != nil {
		t.Fatal(err)
	}
	if revoked() {
		t.Error("the link ended while another consent for the region remained")
	}
	if err := db.WithdrawConsent(ctx, consents[1], clinic.PK, gp.Login, nil); err != nil {
		t.Fatal(err)
	}
	if !revoked() {
		t.Error("the link still shows the images after the patient withdrew the last consent for the region")
	}
}
