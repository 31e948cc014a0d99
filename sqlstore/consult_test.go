package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"renkei"
	"renkei/sqlstore"
)

// TestConsultInviteAgain: inviting a member again (a double click) makes no second share while theirs is in force;
// once it has ended (a day later) the new invitation makes a new one, which the membership then names.
func TestConsultInviteAgain(t *testing.T) { eachDB(t, testConsultInviteAgain) }

func testConsultInviteAgain(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp, clinic, doc, gp := region(t, db)
	now := time.Now()
	db.Now = func() time.Time { return now }
	p1 := renkei.PatientKey{Issuer: "KITA", ID: "P1"}
	con := &renkei.Consult{StudyUID: "5.1", StudyOwner: clinic.PK, Patient: p1, Title: "相談", CreatedBy: gp.PK, CreatedByName: gp.Name, Institution: clinic.PK}
	if err := db.CreateConsult(ctx, con, nil); err != nil {
		t.Fatal(err)
	}
	invite := func() {
		t.Helper()
		sh := &renkei.Share{FromInstitution: clinic.PK, Patient: p1, Studies: []string{"5.1"}, ToUser: doc.PK, Purpose: renkei.PurposeConsult,
			ExpiresAt: now.Add(24 * time.Hour), WithoutConsent: true}
		if err := db.InviteToConsult(ctx, con.ID, renkei.ConsultMember{User: doc.PK, Login: doc.Login, InvitedBy: gp.Name}, sh, nil); err != nil {
			t.Fatal(err)
		}
	}
	active := func() int {
		t.Helper()
		list, err := db.Shares(ctx, renkei.ShareFilter{FromInstitution: clinic.PK, ToInstitution: hosp.PK, ToUser: doc.PK, ActiveAt: now})
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	invite()
	invite()
	if n := active(); n != 1 {
		t.Errorf("after inviting twice: %d shares in force, want 1", n)
	}
	now = now.Add(25 * time.Hour) // the invitation's share has ended
	if n := active(); n != 0 {
		t.Fatalf("a day later: %d shares in force", n)
	}
	invite()
	if n := active(); n != 1 {
		t.Errorf("invited again a day later: %d shares in force, want 1", n)
	}
	c, err := db.Consult(ctx, con.ID)
	if err != nil || len(c.Members) != 2 {
		t.Errorf("members: %+v %v", c.Members, err)
	}
}
