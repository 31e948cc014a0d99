package sqlstore_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for raceAfterHold's second session

	"renkei"
)

// TestWithdrawWhileLinking: the clinic records the withdrawal of its patient's consent for the region while the
// region's admin links that patient with the hospital's. Link checks both consents, then writes the link; the
// withdrawal ends the patient's identity link. Whatever the order, the clinic's patient must not stay linked
// without a consent. On PostgreSQL a read-committed Link read the consent before the withdrawal committed, and the
// withdrawal looked for a link before Link had committed one: a second session holds the hospital's link row so
// that Link has checked the consents and waits to write when the withdrawal runs. SQLite takes its write lock at
// BEGIN: there the two are one after the other.
func TestWithdrawWhileLinking(t *testing.T) {
	eachBackend(t, func(t *testing.T, target string) {
		ctx := context.Background()
		db := openTarget(t, target)
		hosp, clinic, _, _ := region(t, db)
		south := &renkei.Institution{ID: "minami-clinic", Name: "南クリニック", Kind: renkei.Clinic, Issuer: "MINAMI"}
		if err := db.PutInstitution(ctx, south, nil); err != nil {
			t.Fatal(err)
		}
		for i, p := range []struct {
			inst   int64
			issuer string
			id     string
		}{{hosp.PK, "CHUO", "H1"}, {south.PK, "MINAMI", "M1"}} {
			in := inst(p.id, "9."+string(rune('0'+i)), "9.1."+string(rune('0'+i)), "9.1.1."+string(rune('0'+i)), "CT", "k9"+string(rune('0'+i)))
			in.Institution, in.Patient.Issuer = p.inst, p.issuer
			if _, _, err := db.Insert(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		p1, h1, m1 := renkei.PatientKey{Issuer: "KITA", ID: "P1"}, renkei.PatientKey{Issuer: "CHUO", ID: "H1"}, renkei.PatientKey{Issuer: "MINAMI", ID: "M1"}
		var wide int64
		for _, c := range []struct {
			inst int64
			key  renkei.PatientKey
		}{{clinic.PK, p1}, {hosp.PK, h1}, {south.PK, m1}} {
			rc := &renkei.Consent{Institution: c.inst, Patient: c.key, Scope: renkei.ConsentScopeRegion, GivenAt: time.Now(), Method: "electronic", RecordedBy: "clerk"}
			if err := db.AddConsent(ctx, rc, nil); err != nil {
				t.Fatal(err)
			}
			if c.inst == clinic.PK {
				wide = rc.ID
			}
		}
		local := func(inst int64, key renkei.PatientKey) renkei.LocalPatient {
			t.Helper()
			lp, err := db.LocalPatient(ctx, inst, key)
			if err != nil {
				t.Fatal(err)
			}
			return lp
		}
		lp, hp, mp := local(clinic.PK, p1), local(hosp.PK, h1), local(south.PK, m1)
		if _, err := db.Link(ctx, hp.PK, mp.PK, "admin@region", nil); err != nil { // the hospital's patient has a link row
			t.Fatal(err)
		}

		var linkErr, withdrawErr error
		raceAfterHold(t, target, `SELECT 1 FROM patient_links WHERE patient_pk = $1 FOR UPDATE`, []any{hp.PK},
			func() {
				_, linkErr = db.Link(ctx, hp.PK, lp.PK, "admin@region", &renkei.AuditEvent{Actor: "admin@region", Action: renkei.ActionAdmin})
			},
			func() {
				withdrawErr = db.WithdrawConsent(ctx, wide, clinic.PK, "clerk", &renkei.AuditEvent{Actor: "clerk", Action: renkei.ActionAdmin, Detail: "withdrawal"})
			})
		if withdrawErr != nil {
			t.Fatalf("WithdrawConsent: %v", withdrawErr)
		}
		if linkErr != nil && renkei.ErrorKind(linkErr) != renkei.Forbidden {
			t.Fatalf("Link: %v, want success (then ended by the withdrawal) or Forbidden (no consent)", linkErr)
		}
		if got := local(clinic.PK, p1); got.Regional != 0 {
			t.Errorf("the clinic's patient is linked to regional patient %d after its consent for the region was withdrawn (Link: %v)", got.Regional, linkErr)
		}
	})
}

// TestWithdrawWhileSharing: the clinic shares its patient with the hospital, or makes a share link, while the
// patient's consent for the region is withdrawn. The withdrawal ends the shares and links in force; whatever the
// order, none may stay in force without a consent. On PostgreSQL a second session holds the patient's row, so that
// the share's INSERT (whose foreign key locks that row) waits after the consent was read, while the withdrawal runs.
// SQLite takes its write lock at BEGIN: there the two are one after the other.
func TestWithdrawWhileSharing(t *testing.T) {
	for _, kind := range []string{"share", "share link"} {
		t.Run(strings.ReplaceAll(kind, " ", "-"), func(t *testing.T) {
			eachBackend(t, func(t *testing.T, target string) {
				ctx := context.Background()
				db := openTarget(t, target)
				hosp, clinic, _, _ := region(t, db)
				p1 := renkei.PatientKey{Issuer: "KITA", ID: "P1"}
				rc := &renkei.Consent{Institution: clinic.PK, Patient: p1, Scope: renkei.ConsentScopeRegion, GivenAt: time.Now(), Method: "electronic", RecordedBy: "clerk"}
				if err := db.AddConsent(ctx, rc, nil); err != nil {
					t.Fatal(err)
				}
				lp, err := db.LocalPatient(ctx, clinic.PK, p1)
				if err != nil {
					t.Fatal(err)
				}
				var createErr, withdrawErr error
				raceAfterHold(t, target, `SELECT 1 FROM patients WHERE pk = $1 FOR UPDATE`, []any{lp.PK},
					func() {
						ev := &renkei.AuditEvent{Actor: "kita@kita-clinic", Action: renkei.ActionShare}
						if kind == "share" {
							createErr = db.CreateShare(ctx, &renkei.Share{FromInstitution: clinic.PK, Patient: p1, ToInstitution: hosp.PK,
								Purpose: renkei.PurposeReferral, ExpiresAt: time.Now().Add(time.Hour)}, ev)
						} else {
							createErr = db.CreateShareLink(ctx, &renkei.ShareLink{Institution: clinic.PK, Patient: p1, TokenHash: "t", PINHash: "p",
								ExpiresAt: time.Now().Add(time.Hour)}, ev)
						}
					},
					func() {
						withdrawErr = db.WithdrawConsent(ctx, rc.ID, clinic.PK, "clerk", &renkei.AuditEvent{Actor: "clerk", Action: renkei.ActionAdmin, Detail: "withdrawal"})
					})
				if withdrawErr != nil {
					t.Fatalf("WithdrawConsent: %v", withdrawErr)
				}
				if createErr != nil && renkei.ErrorKind(createErr) != renkei.Forbidden {
					t.Fatalf("create %s: %v, want success (then ended by the withdrawal) or Forbidden (no consent)", kind, createErr)
				}
				now := time.Now()
				if kind == "share" {
					shares, err := db.Shares(ctx, renkei.ShareFilter{FromInstitution: clinic.PK, ActiveAt: now})
					if err != nil {
						t.Fatal(err)
					}
					if len(shares) != 0 {
						t.Errorf("%d share(s) in force after the patient's consent was withdrawn (create: %v)", len(shares), createErr)
					}
				} else {
					links, err := db.ShareLinks(ctx, clinic.PK, 0)
					if err != nil {
						t.Fatal(err)
					}
					for _, l := range links {
						if l.RevokedAt == nil && l.ExpiresAt.After(now) {
							t.Errorf("share link %d in force after the patient's consent was withdrawn (create: %v)", l.ID, createErr)
						}
					}
				}
			})
		})
	}
}

// raceAfterHold runs first, then second, so that on PostgreSQL first has done its reads and waits to write when
// second runs: a second session holds the rows lockQuery (… FOR UPDATE, $1…) locks, first is started and waits on
// them, second is started and either runs through or waits too, and then the rows are let go. On SQLite, which takes
// its write lock at BEGIN, first runs to its end before second starts: there is no such interleaving to arrange.
func raceAfterHold(t *testing.T, target, lockQuery string, args []any, first, second func()) {
	t.Helper()
	if !strings.HasPrefix(target, "postgres") {
		first()
		second()
		return
	}
	ctx := context.Background()
	raw, err := sql.Open("pgx", target)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	hold, err := raw.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback()
	if _, err := hold.ExecContext(ctx, lockQuery, args...); err != nil {
		t.Fatal(err)
	}
	waiting := func() int {
		var n int
		if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); first() }()
	for deadline := time.Now().Add(5 * time.Second); waiting() < 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first operation did not wait on the held rows")
		}
	}
	secondDone := make(chan struct{})
	go func() { defer wg.Done(); defer close(secondDone); second() }()
	// The second either runs through or waits for the first.
	for deadline := time.Now().Add(5 * time.Second); waiting() < 2 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		select {
		case <-secondDone:
			deadline = time.Time{}
		default:
		}
	}
	if err := hold.Commit(); err != nil {
		t.Error(err)
	}
	wg.Wait()
}
