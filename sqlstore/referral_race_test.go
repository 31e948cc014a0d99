package sqlstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"renkei"
	"renkei/sqlstore"
)

// An emergency is redirected by its sender to a third hospital at the moment the first hospital accepts it. Both
// steps read the referral (sent, to the first hospital) before either writes; the accept, second, must be refused
// as for a referral that is not the hospital's (NotFound), not accept a transfer that now goes elsewhere. On
// PostgreSQL a read-committed UPDATE re-checks only its WHERE against the row the first one committed, so the
// compare-and-set must name the receiver and the share it read, not only the status. SQLite takes its write lock
// at BEGIN, so there the two are simply one after the other.
func TestReferralMoveRace(t *testing.T) {
	eachBackend(t, func(t *testing.T, target string) {
		ctx := context.Background()
		db := openTarget(t, target)
		hosp, clinic, doc, gp := region(t, db)
		third := &renkei.Institution{ID: "minami-hospital", Name: "南病院", Kind: renkei.Hospital, Issuer: "MINAMI"}
		if err := db.PutInstitution(ctx, third, nil); err != nil {
			t.Fatal(err)
		}
		share := func(to int64) *renkei.Share {
			return &renkei.Share{FromInstitution: clinic.PK, Patient: renkei.PatientKey{Issuer: "KITA", ID: "P1"}, Studies: []string{"5.1"},
				ToInstitution: to, Purpose: renkei.PurposeEmergency, ExpiresAt: time.Now().Add(time.Hour), WithoutConsent: true}
		}
		r := &renkei.Referral{Kind: renkei.KindEmergency, FromInstitution: clinic.PK, FromUser: gp.PK, FromUserName: gp.Name, ToInstitution: hosp.PK,
			Patient: renkei.PatientKey{Issuer: "KITA", ID: "P1"}, Priority: "stat", Studies: []string{"5.1"}, Letter: renkei.Letter{Purpose: "救急搬送"}}
		if err := db.CreateReferral(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.MoveReferral(ctx, renkei.ReferralMove{ID: r.ID, Institution: clinic.PK, Side: "sender", From: []renkei.ReferralStatus{renkei.StatusDraft},
			To: renkei.StatusSent, Event: renkei.ReferralEvent{By: gp.Name, ByInst: clinic.PK}, Share: share(hosp.PK)}, nil); err != nil {
			t.Fatal(err)
		}

		redirect := renkei.ReferralMove{ID: r.ID, Institution: clinic.PK, Side: "sender", From: []renkei.ReferralStatus{renkei.StatusSent, renkei.StatusReceived},
			To: renkei.StatusSent, NewTo: third.PK, Revoke: true, Share: share(third.PK), Event: renkei.ReferralEvent{By: gp.Name, ByInst: clinic.PK}}
		accept := renkei.ReferralMove{ID: r.ID, Institution: hosp.PK, Side: "receiver", From: []renkei.ReferralStatus{renkei.StatusSent, renkei.StatusReceived},
			To: renkei.StatusAccepted, Event: renkei.ReferralEvent{By: doc.Name, ByInst: hosp.PK}}

		// On PostgreSQL a second session holds the row, so that both steps read it and then queue on it, the redirect
		// first; SQLite runs them one after the other in the same order (raceAfterHold).
		var errs [2]error
		raceAfterHold(t, target, `SELECT 1 FROM referrals WHERE pk = $1 FOR UPDATE`, []any{r.ID},
			func() { errs[0] = db.MoveReferral(ctx, redirect, nil) },
			func() { errs[1] = db.MoveReferral(ctx, accept, nil) })

		if errs[0] != nil {
			t.Fatalf("the redirect, first in line: %v", errs[0])
		}
		if renkei.ErrorKind(errs[1]) != renkei.NotFound {
			t.Errorf("the first hospital accepting as the transfer was redirected: %v, want NotFound (it is not theirs any more)", errs[1])
		}
		got, err := db.Referral(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != renkei.StatusSent || got.ToInstitution != third.PK {
			t.Errorf("after both: %s to institution %d, want sent to %d (the redirect only)", got.Status, got.ToInstitution, third.PK)
		}
		active, err := db.Shares(ctx, renkei.ShareFilter{FromInstitution: clinic.PK, ActiveAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if len(active) != 1 || active[0].ToInstitution != third.PK {
			t.Errorf("shares in force after both: %+v, want the third hospital's only", active)
		}
	})
}

// TestReferralSendAfterEdit: a colleague saves the draft (another hospital, another study) while the letter is being
// sent. The send was prepared from the draft as it stood; the share it makes must go to the institution the sent
// referral goes to, with the studies it lists, not to the hospital just taken off it with the study just removed.
func TestReferralSendAfterEdit(t *testing.T) { eachDB(t, testReferralSendAfterEdit) }

func testReferralSendAfterEdit(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp, clinic, _, gp := region(t, db)
	in := inst("P1", "5.2", "5.2.1", "5.2.1.1", "MR", "k52")
	in.Institution, in.Patient.Issuer = clinic.PK, "KITA"
	if _, _, err := db.Insert(ctx, in); err != nil {
		t.Fatal(err)
	}
	r := &renkei.Referral{Kind: renkei.KindReferral, FromInstitution: clinic.PK, FromUser: gp.PK, FromUserName: gp.Name, ToInstitution: hosp.PK,
		Patient: renkei.PatientKey{Issuer: "KITA", ID: "P1"}, Priority: "routine", Studies: []string{"5.1"}, Letter: renkei.Letter{Purpose: "精査"}}
	if err := db.CreateReferral(ctx, r, nil); err != nil {
		t.Fatal(err)
	}
	// The send, as the sender's page prepared it from the draft with 5.1.
	send := renkei.ReferralMove{ID: r.ID, Institution: clinic.PK, Side: "sender", From: []renkei.ReferralStatus{renkei.StatusDraft}, To: renkei.StatusSent,
		Event: renkei.ReferralEvent{By: gp.Name, ByInst: clinic.PK},
		Share: &renkei.Share{FromInstitution: clinic.PK, Patient: r.Patient, Studies: slices.Clone(r.Studies), ToInstitution: hosp.PK,
			Purpose: renkei.PurposeReferral, ExpiresAt: time.Now().Add(time.Hour), WithoutConsent: true}}
	// Meanwhile the colleague's save: 5.2 instead of 5.1, to another hospital.
	minami := &renkei.Institution{ID: "minami-hospital", Name: "南病院", Kind: renkei.Hospital, Issuer: "MINAMI"}
	if err := db.PutInstitution(ctx, minami, nil); err != nil {
		t.Fatal(err)
	}
	edited := *r
	edited.Studies, edited.ToInstitution = []string{"5.2"}, minami.PK
	if err := db.SaveDraft(ctx, &edited, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.MoveReferral(ctx, send, nil); err != nil {
		t.Fatal(err)
	}
	got, err := db.Referral(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	shares, err := db.Shares(ctx, renkei.ShareFilter{ID: got.Share})
	if err != nil || len(shares) != 1 {
		t.Fatalf("the referral's share %d: %+v %v", got.Share, shares, err)
	}
	if !slices.Equal(shares[0].Studies, got.Studies) || shares[0].ToInstitution != got.ToInstitution {
		t.Errorf("the sent referral goes to %d with %v but its share grants %d %v", got.ToInstitution, got.Studies,
			shares[0].ToInstitution, shares[0].Studies)
	}
}
