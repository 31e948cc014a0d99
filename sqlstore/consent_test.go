package sqlstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"renkei"
	"renkei/sqlstore"
)

// TestWithdrawEndsIdentityLink: an identity link discloses a local patient to the region's patient index, so it
// needs the institution's consent for the region (Link checks it); withdrawing that consent ends the link in the
// same transaction, while the other institutions' patients stay one regional patient, a share still covered by a
// narrower consent stays, and the link's making and ending both stay in the audit trail.
func TestWithdrawEndsIdentityLink(t *testing.T) { eachDB(t, testWithdrawEndsIdentityLink) }

func testWithdrawEndsIdentityLink(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp, clinic, doc, gp := region(t, db)
	south := &renkei.Institution{ID: "minami-clinic", Name: "南クリニック", Kind: renkei.Clinic, Issuer: "MINAMI"}
	if err := db.PutInstitution(ctx, south, nil); err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(time.Now().UnixMilli())
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// The clinic's P1 (stored by region) is the same person as the hospital's H1 and the southern clinic's M1.
	for i, p := range []struct {
		inst   int64
		issuer string
		id     string
	}{{hosp.PK, "CHUO", "H1"}, {south.PK, "MINAMI", "M1"}} {
		in := inst(p.id, fmt.Sprintf("9.%d", i), fmt.Sprintf("9.%d.1", i), fmt.Sprintf("9.%d.1.1", i), "CT", fmt.Sprintf("k9%d", i))
		in.Institution, in.Patient.Issuer = p.inst, p.issuer
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	consent := func(inst int64, key renkei.PatientKey, scope string) int64 {
		t.Helper()
		c := &renkei.Consent{Institution: inst, Patient: key, Scope: scope, GivenAt: now, Method: "electronic", RecordedBy: "clerk"}
		must("AddConsent", db.AddConsent(ctx, c, nil))
		return c.ID
	}
	p1, h1, m1 := renkei.PatientKey{Issuer: "KITA", ID: "P1"}, renkei.PatientKey{Issuer: "CHUO", ID: "H1"}, renkei.PatientKey{Issuer: "MINAMI", ID: "M1"}
	wide := consent(clinic.PK, p1, renkei.ConsentScopeRegion)
	consent(clinic.PK, p1, hosp.ID) // to the hospital only: it keeps the hospital's share, not the link
	consent(hosp.PK, h1, renkei.ConsentScopeRegion)
	consent(south.PK, m1, renkei.ConsentScopeRegion)
	local := func(inst int64, key renkei.PatientKey) renkei.LocalPatient {
		t.Helper()
		lp, err := db.LocalPatient(ctx, inst, key)
		must("LocalPatient", err)
		return lp
	}
	lp, hp, mp := local(clinic.PK, p1), local(hosp.PK, h1), local(south.PK, m1)
	regional, err := db.Link(ctx, lp.PK, hp.PK, "admin@region", &renkei.AuditEvent{Actor: "admin@region", Action: renkei.ActionAdmin})
	must("Link", err)
	if _, err := db.Link(ctx, hp.PK, mp.PK, "admin@region", nil); err != nil {
		t.Fatal(err)
	}
	must("CreateShare", db.CreateShare(ctx, &renkei.Share{FromInstitution: clinic.PK, Patient: p1, ToInstitution: hosp.PK,
		Purpose: renkei.PurposeReferral, CreatedBy: gp.PK, ExpiresAt: now.Add(time.Hour)}, nil))
	members := func() []int64 {
		t.Helper()
		list, err := db.RegionalPatient(ctx, regional)
		must("RegionalPatient", err)
		var pks []int64
		for _, l := range list {
			pks = append(pks, l.PK)
		}
		return pks
	}
	if got := members(); !slices.Equal(got, []int64{lp.PK, hp.PK, mp.PK}) {
		t.Fatalf("regional patient %d before the withdrawal: %v", regional, got)
	}

	e := &renkei.AuditEvent{Actor: gp.Login, Action: renkei.ActionAdmin, DataInstitution: clinic.PK, Patient: p1,
		Detail: fmt.Sprintf("recorded the withdrawal of consent %d", wide)}
	must("WithdrawConsent", db.WithdrawConsent(ctx, wide, clinic.PK, gp.Login, e))

	if got := members(); !slices.Equal(got, []int64{hp.PK, mp.PK}) {
		t.Errorf("regional patient %d after the clinic's withdrawal: %v, want the hospital's and the southern clinic's", regional, got)
	}
	if got := local(clinic.PK, p1); got.Regional != 0 {
		t.Errorf("the clinic's patient is still linked to regional patient %d", got.Regional)
	}
	linked, err := db.Linked(ctx, hp.PK)
	must("Linked", err)
	for _, l := range linked {
		if l.PK == lp.PK {
			t.Errorf("the hospital's patient is still linked with the clinic's: %+v", linked)
		}
	}
	if ok, err := db.MaySeePatient(ctx, hosp.PK, doc.PK, lp.PK, now); err != nil || !ok {
		t.Errorf("the share the narrower consent covers ended with the link: %v %v", ok, err)
	}

	events, err := db.AuditEvents(ctx, renkei.AuditFilter{Action: renkei.ActionAdmin})
	must("AuditEvents", err)
	var history []string // oldest first (AuditEvents answers newest first)
	for _, ev := range slices.Backward(events) {
		if strings.Contains(ev.Detail, fmt.Sprintf("regional patient %d", regional)) {
			history = append(history, ev.Detail)
		}
	}
	if len(history) != 2 || !strings.HasPrefix(history[0], "linked local patients") ||
		!strings.Contains(history[1], fmt.Sprintf("identity link ended: local patient %d unlinked from regional patient %d (linked by admin@region", lp.PK, regional)) {
		t.Errorf("the link's history in the audit trail: %q", history)
	}

	// A consent for the region given again lets the link be made again; withdrawing a consent of a patient who is
	// not linked ends nothing more.
	again := consent(clinic.PK, p1, renkei.ConsentScopeRegion)
	if r, err := db.Link(ctx, lp.PK, hp.PK, "admin@region", nil); err != nil || r != regional {
		t.Errorf("linking again after a new consent: %d %v, want regional patient %d", r, err, regional)
	}
	must("Unlink", db.Unlink(ctx, lp.PK, nil))
	e = &renkei.AuditEvent{Actor: gp.Login, Action: renkei.ActionAdmin, Detail: "withdrawal"}
	must("WithdrawConsent of an unlinked patient", db.WithdrawConsent(ctx, again, clinic.PK, gp.Login, e))
	if strings.Contains(e.Detail, "identity link") {
		t.Errorf("a withdrawal for an unlinked patient names a link: %q", e.Detail)
	}
}
