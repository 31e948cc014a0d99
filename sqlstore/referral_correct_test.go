package sqlstore_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"renkei"
	"renkei/sqlstore"
)

// sentReferral creates and sends a referral of the clinic's P1 to the hospital.
func sentReferral(t *testing.T, db *sqlstore.DB, hosp, clinic *renkei.Institution, gp *renkei.User) *renkei.Referral {
	t.Helper()
	ctx := context.Background()
	r := &renkei.Referral{Kind: renkei.KindReferral, FromInstitution: clinic.PK, FromUser: gp.PK, FromUserName: gp.Name, ToInstitution: hosp.PK,
		Patient: renkei.PatientKey{Issuer: "KITA", ID: "P1"}, Priority: "routine", Studies: []string{"5.1"}, Letter: renkei.Letter{Purpose: "精査", Diagnosis: "肺結節"}}
	if err := db.CreateReferral(ctx, r, nil); err != nil {
		t.Fatal(err)
	}
	send := renkei.ReferralMove{ID: r.ID, Institution: clinic.PK, Side: "sender", From: []renkei.ReferralStatus{renkei.StatusDraft}, To: renkei.StatusSent,
		Event: renkei.ReferralEvent{By: gp.Name, ByInst: clinic.PK},
		Share: &renkei.Share{FromInstitution: clinic.PK, Patient: r.Patient, ToInstitution: hosp.PK, Purpose: renkei.PurposeReferral,
			ExpiresAt: time.Now().Add(time.Hour), WithoutConsent: true}}
	if err := db.MoveReferral(ctx, send, nil); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCorrectEndedReferral: a corrected letter goes on a referral in force, and on one the receiver accepted or
// answered (its letter is in the receiver's record and must be correctable), but not on one that ended without
// the receiver taking the patient: cancelled or declined. That refusal is a Conflict that says why and what to do,
// and writes nothing: no version, no step in the history, no audit event.
func TestCorrectEndedReferral(t *testing.T) { eachDB(t, testCorrectEndedReferral) }

func testCorrectEndedReferral(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp, clinic, doc, gp := region(t, db)
	sender := func(to renkei.ReferralStatus, from ...renkei.ReferralStatus) func(r *renkei.Referral) renkei.ReferralMove {
		return func(r *renkei.Referral) renkei.ReferralMove {
			return renkei.ReferralMove{ID: r.ID, Institution: clinic.PK, Side: "sender", From: from, To: to, Revoke: true,
				Event: renkei.ReferralEvent{By: gp.Name, ByInst: clinic.PK}}
		}
	}
	receiver := func(to renkei.ReferralStatus, from ...renkei.ReferralStatus) func(r *renkei.Referral) renkei.ReferralMove {
		return func(r *renkei.Referral) renkei.ReferralMove {
			m := renkei.ReferralMove{ID: r.ID, Institution: hosp.PK, From: from, To: to, Event: renkei.ReferralEvent{By: doc.Name, ByInst: hosp.PK}}
			switch to {
			case renkei.StatusDeclined:
				m.Reason = "満床のため"
			case renkei.StatusCompleted:
				m.Reply = &renkei.Letter{FollowUp: "経過観察"}
			}
			return m
		}
	}
	received := receiver(renkei.StatusReceived, renkei.StatusSent)
	tests := []struct {
		name  string
		steps []func(r *renkei.Referral) renkei.ReferralMove
		want  string // the refusal's message, in part; "" when the correction is taken
	}{
		{"sent", nil, ""},
		{"cancelled by the sender", []func(*renkei.Referral) renkei.ReferralMove{sender(renkei.StatusCancelled, renkei.StatusSent)}, "was cancelled"},
		{"declined by the receiver", []func(*renkei.Referral) renkei.ReferralMove{received, receiver(renkei.StatusDeclined, renkei.StatusReceived)}, "was declined"},
		{"answered", []func(*renkei.Referral) renkei.ReferralMove{received, receiver(renkei.StatusCompleted, renkei.StatusReceived)}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sentReferral(t, db, hosp, clinic, gp)
			for _, step := range tc.steps {
				if err := db.MoveReferral(ctx, step(r), nil); err != nil {
					t.Fatal(err)
				}
			}
			before, err := db.Referral(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			seq := lastAuditSeq(t, db)
			e := &renkei.AuditEvent{Actor: gp.Login, Action: renkei.ActionReferral, Detail: "letter corrected"}
			v, err := db.AddLetterVersion(ctx, r.ID, clinic.PK, renkei.Letter{Purpose: "精査", Diagnosis: "右肺上葉結節"}, gp.Name, e)
			after, aerr := db.Referral(ctx, r.ID)
			if aerr != nil {
				t.Fatal(aerr)
			}
			versions, verr := db.LetterVersions(ctx, r.ID, false)
			if verr != nil {
				t.Fatal(verr)
			}
			if tc.want == "" {
				if err != nil || v != 2 || after.Letter.Diagnosis != "右肺上葉結節" || len(versions) != 2 {
					t.Errorf("correction: version %d, %v; letter %+v; %d versions", v, err, after.Letter, len(versions))
				}
				return
			}
			if renkei.ErrorKind(err) != renkei.Conflict || !strings.Contains(renkei.ErrorMessage(err), tc.want) ||
				!strings.Contains(renkei.ErrorMessage(err), "write a new one") {
				t.Errorf("correction: %v, want a Conflict saying it %s and to write a new referral", err, tc.want)
			}
			if len(versions) != 1 || after.Version != before.Version || after.Letter.Diagnosis != before.Letter.Diagnosis || len(after.Events) != len(before.Events) ||
				!after.UpdatedAt.Equal(before.UpdatedAt) {
				t.Errorf("the refused correction wrote something: %d versions, version %d→%d, %d→%d steps", len(versions),
					before.Version, after.Version, len(before.Events), len(after.Events))
			}
			if got := lastAuditSeq(t, db); got != seq {
				t.Errorf("the refused correction was audited as made (seq %d→%d)", seq, got)
			}
		})
	}

	// A draft is edited, not corrected.
	draft := &renkei.Referral{Kind: renkei.KindReferral, FromInstitution: clinic.PK, FromUser: gp.PK, FromUserName: gp.Name, ToInstitution: hosp.PK,
		Patient: renkei.PatientKey{Issuer: "KITA", ID: "P1"}, Letter: renkei.Letter{Purpose: "精査"}}
	if err := db.CreateReferral(ctx, draft, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddLetterVersion(ctx, draft.ID, clinic.PK, renkei.Letter{Purpose: "x"}, gp.Name, nil); renkei.ErrorKind(err) != renkei.Conflict {
		t.Errorf("correcting a draft: %v, want Conflict", err)
	}
	// Only the sender corrects its letter.
	r := sentReferral(t, db, hosp, clinic, gp)
	if _, err := db.AddLetterVersion(ctx, r.ID, hosp.PK, renkei.Letter{Purpose: "x"}, doc.Name, nil); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("the receiver correcting the sender's letter: %v, want NotFound", err)
	}
}

func lastAuditSeq(t *testing.T, db *sqlstore.DB) int64 {
	t.Helper()
	list, err := db.AuditEvents(context.Background(), renkei.AuditFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 {
		return 0
	}
	return list[0].Seq
}

// TestCorrectionRacesCancel: the sender's colleague cancels the referral while the correction is being sent. On
// PostgreSQL the cancel holds the row when the correction starts, and commits once the correction waits for it:
// the correction must then see the cancel and be refused, not add its version to the cancelled referral (a check
// read before the wait would still say "sent"). SQLite takes its write lock at BEGIN: there the two cannot
// interleave, and the sequential case is TestCorrectEndedReferral's.
func TestCorrectionRacesCancel(t *testing.T) {
	target := backends[1].target(t)
	ctx := context.Background()
	db := openTarget(t, target)
	hosp, clinic, _, gp := region(t, db)
	r := sentReferral(t, db, hosp, clinic, gp)

	raw, err := sql.Open("pgx", target)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cancel, err := raw.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel.Rollback()
	if _, err := cancel.ExecContext(ctx, `UPDATE referrals SET status = 'cancelled' WHERE pk = $1`, r.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.AddLetterVersion(ctx, r.ID, clinic.PK, renkei.Letter{Purpose: "精査", Diagnosis: "訂正"}, gp.Name, nil)
		done <- err
	}()
	queued := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !queued; time.Sleep(5 * time.Millisecond) {
		var waiting int
		if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).
			Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		queued = waiting > 0
	}
	if !queued {
		t.Fatal("the correction did not wait for the cancel's row lock")
	}
	if err := cancel.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; renkei.ErrorKind(err) != renkei.Conflict || !strings.Contains(renkei.ErrorMessage(err), "cancelled") {
		t.Errorf("a correction racing the cancel: %v, want Conflict (cancelled)", err)
	}
	versions, err := db.LetterVersions(ctx, r.ID, false)
	if err != nil || len(versions) != 1 {
		t.Errorf("versions after the race: %d %v, want the first only", len(versions), err)
	}
}
