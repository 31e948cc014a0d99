package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"renkei"
	"renkei/sqlstore/pgtest"
)

// TestBrowseStudies checks the study list's walk over the grants (browseStudies) against the scope's subqueries
// over the shares themselves (the rule every other query uses), page by page, for a region whose shares cover what
// happens to shares: to an institution and to a user, whole patients and single studies, two shares of one patient,
// a share of the caller's own patient, expired, revoked (by the sharer and by a withdrawn consent), a study that
// arrives after its patient was shared, studies in the trash, and a purged study whose key is given to the next one.
func TestBrowseStudies(t *testing.T) {
	eachInternalDB(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		t0 := time.Now()
		db.Now = func() time.Time { return t0 }
		inst := putHospitals(t, db, "a", "b", "c", "d")
		A, B, C, D := inst[0], inst[1], inst[2], inst[3]
		const user = 77 // a user of A
		n := 0
		add := func(owner int64, patient, date, tm, mod, sex string) string {
			t.Helper()
			n++
			uid := fmt.Sprintf("1.2.%d", n)
			in := &renkei.Instance{Institution: owner, Patient: renkei.PatientKey{Issuer: "I", ID: patient}, PatientName: "Test^" + patient,
				PatientSex: sex, StudyInstanceUID: uid, StudyDate: date, StudyTime: tm, SeriesInstanceUID: uid + ".1", Modality: mod,
				SOPInstanceUID: uid + ".1.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1",
				BlobKey: fmt.Sprintf("%064d", n), Size: 1, ReceivedAt: t0}
			if _, _, err := db.Insert(ctx, in); err != nil {
				t.Fatal(err)
			}
			return uid
		}
		share := func(from int64, patient string, toInst, toUser int64, expires time.Duration, studies ...string) int64 {
			t.Helper()
			sh := &renkei.Share{FromInstitution: from, Patient: renkei.PatientKey{Issuer: "I", ID: patient}, ToInstitution: toInst, ToUser: toUser,
				Purpose: renkei.PurposeReferral, ExpiresAt: t0.Add(expires), WithoutConsent: true, Studies: studies}
			if err := db.CreateShare(ctx, sh, nil); err != nil {
				t.Fatal(err)
			}
			return sh.ID
		}
		trash := func(uid string, restore bool) {
			t.Helper()
			if _, err := db.Trash(ctx, renkei.TrashRequest{Study: uid, Restore: restore}); err != nil {
				t.Fatal(err)
			}
		}

		// Studies on a few dates, several on one day and at one time (the key breaks the tie), one without a date.
		days := []string{"20240105", "20240105", "20240107", "20231231", "", "20240301", "20240105"}
		for i, pid := range []string{"a1", "a2", "b1", "b2", "b3", "c1", "c2", "d1", "d2", "d3"} {
			owner := map[byte]int64{'a': A, 'b': B, 'c': C, 'd': D}[pid[0]]
			for k := range 3 {
				d := days[(i+k)%len(days)]
				add(owner, pid, d, []string{"101500", "101500", "230000"}[k], []string{"CT", "MR", "CR"}[(i+k)%3], []string{"M", "F"}[i%2])
			}
		}
		b2study := "1.2.11" // b2's second study
		share(B, "b1", A, 0, 48*time.Hour)
		share(B, "b1", A, 0, 2*time.Hour) // a second share of the same patient: listed once
		share(B, "b2", A, 0, 48*time.Hour, b2study)
		share(C, "c1", A, 0, time.Hour) // expired for the lists below that look 90 minutes ahead
		revoked := share(C, "c2", A, 0, 48*time.Hour)
		share(D, "d1", 0, user, 48*time.Hour) // to one user of A only
		share(D, "d2", A, 0, 48*time.Hour)    // to A
		share(D, "d2", 0, user, 48*time.Hour) // and to its user too: listed once
		share(D, "d3", A, 0, 48*time.Hour)
		share(D, "d3", 0, user, 72*time.Hour)        // to A and to its user, and not withdrawn: listed once
		share(A, "a1", 0, user, 48*time.Hour)        // A's own patient to A's user: listed once
		share(B, "b3", C, 0, 48*time.Hour, "1.2.13") // to another institution
		if err := db.RevokeShare(ctx, revoked, B, nil); err == nil {
			t.Fatal("B revoked C's share")
		}
		if err := db.RevokeShare(ctx, revoked, C, nil); err != nil {
			t.Fatal(err)
		}
		late := add(B, "b1", "20250101", "000000", "US", "M") // after the share: granted with its patient
		trash("1.2.7", false)                                 // b1's first study, in the trash
		trash("1.2.8", false)                                 // and one out again
		trash("1.2.8", true)
		// A consent withdrawn ends the shares it no longer covers (here all of them, as none had consent).
		cons := &renkei.Consent{Institution: D, Patient: renkei.PatientKey{Issuer: "I", ID: "d2"}, Scope: renkei.ConsentScopeRegion, GivenAt: t0, Method: "paper"}
		if err := db.AddConsent(ctx, cons, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.WithdrawConsent(ctx, cons.ID, D, "test", nil); err != nil {
			t.Fatal(err)
		}

		queries := []struct {
			name string
			q    renkei.Query
		}{
			{"all", renkei.Query{}},
			{"oldest first", renkei.Query{Sort: "date-asc"}},
			{"date range", renkei.Query{Matches: []renkei.Match{{Keyword: "StudyDate", Kind: renkei.MatchRange, Lo: "20240101", Hi: "20241231"}}}},
			{"modality", renkei.Query{Matches: []renkei.Match{{Keyword: "ModalitiesInStudy", Kind: renkei.MatchList, Values: []string{"CT", "US"}}}}},
			{"patient's sex", renkei.Query{Matches: []renkei.Match{{Keyword: "PatientSex", Kind: renkei.MatchSingle, Value: "F"}}}},
		}
		callers := []struct {
			name  string
			scope renkei.Scope
		}{
			{"A's token", renkei.Scope{Institutions: []int64{A}, Grantee: &renkei.Grantee{Institution: A}}},
			{"A's user", renkei.Scope{Institutions: []int64{A}, Grantee: &renkei.Grantee{Institution: A, User: user}}},
			{"C's token", renkei.Scope{Institutions: []int64{C}, Grantee: &renkei.Grantee{Institution: C}}},
		}
		list := func(q renkei.Query, old bool) []string {
			t.Helper()
			if !old && !browsable(&q) {
				t.Fatalf("query %+v is not answered by browseStudies", q)
			}
			return studyUIDs(t, db, q, old)
		}
		for _, at := range []time.Duration{time.Minute, 90 * time.Minute} {
			for _, c := range callers {
				for _, qc := range queries {
					sc := c.scope
					g := *sc.Grantee
					g.At = t0.Add(at)
					sc.Grantee = &g
					q := qc.q
					q.Level, q.Scope = renkei.StudyLevel, &sc
					want := list(q, true)
					if got := list(q, false); !slices.Equal(got, want) {
						t.Errorf("%s, %s, %v later: browse lists\n%v\nthe scope's rule lists\n%v", c.name, qc.name, at, got, want)
					}
					// Page by page, 4 at a time, the pages put together are the whole list.
					var paged []string
					for off := 0; off < len(want)+4; off += 4 {
						q.Limit, q.Offset = 4, off
						page := list(q, false)
						if old := list(q, true); !slices.Equal(page, old) {
							t.Errorf("%s, %s, page at %d: browse lists %v, the scope's rule %v", c.name, qc.name, off, page, old)
						}
						paged = append(paged, page...)
					}
					if !slices.Equal(paged, want) {
						t.Errorf("%s, %s: the pages list %v, the whole list %v", c.name, qc.name, paged, want)
					}
					// An offset past the end is an empty page, up to the largest one a client can send (QIDO-RS and
					// /api/studies take any int): the page's end, limit plus offset, must not wrap around.
					for _, off := range []int{len(want), len(want) + 100, math.MaxInt - 4, math.MaxInt} {
						q.Limit, q.Offset = 4, off
						for _, old := range []bool{false, true} {
							db.noBrowse = old
							recs, err := db.QueryStudies(ctx, &q)
							db.noBrowse = false
							if err != nil || len(recs) != 0 {
								t.Errorf("%s, %s, offset %d (old rule %v): %d studies, %v", c.name, qc.name, off, old, len(recs), err)
							}
						}
					}
					q.Limit, q.Offset = 0, 0
				}
			}
		}

		// What A's user sees, spelled out (one minute later): A's 6, b1's 3 live (one trashed) and the late one,
		// b2's one study, d1's 3 (to the user), d3's 3, c1's 3 (it expires only later); not c2 (revoked), not d2
		// (consent withdrawn).
		q := renkei.Query{Level: renkei.StudyLevel, Scope: &renkei.Scope{Institutions: []int64{A}, Grantee: &renkei.Grantee{Institution: A, User: user, At: t0.Add(time.Minute)}}}
		got := list(q, false)
		if len(got) != 6+3+1+3+3+3 || !slices.Contains(got, late) || !slices.Contains(got, b2study) || slices.Contains(got, "1.2.7") || !slices.Contains(got, "1.2.8") {
			t.Errorf("A's user lists %d studies %v", len(got), got)
		}

		// A purged study's key must not carry its grants to the study that gets the key next (SQLite gives the
		// largest key again once its row is gone).
		trash(late, false)
		db.Now = func() time.Time { return t0.Add(40 * 24 * time.Hour) }
		if _, err := db.Purge(ctx, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		db.Now = func() time.Time { return t0 }
		other := add(C, "c9", "20250101", "000000", "CT", "M")
		for _, old := range []bool{false, true} {
			if got := list(q, old); slices.Contains(got, other) || slices.Contains(got, late) {
				t.Errorf("after a purge (old rule %v), A's user lists %v, with %s or %s", old, got, other, late)
			}
		}

		// After all of the above the table is what the shares give; a row lost by hand is found by the
		// operator's check and put back by its rebuild.
		if n, err := db.CheckGrants(ctx, false); err != nil || n != 0 {
			t.Fatalf("CheckGrants after the region's history: %d rows out of step, %v", n, err)
		}
		if _, err := db.write.ExecContext(ctx, `DELETE FROM study_grants WHERE study_pk = (SELECT pk FROM studies WHERE study_uid = ?)`, b2study); err != nil {
			t.Fatal(err)
		}
		if got := list(q, false); slices.Contains(got, b2study) {
			t.Fatalf("the list still shows %s with its grant deleted: the test does not test the grants", b2study)
		}
		if n, err := db.CheckGrants(ctx, false); err != nil || n != 1 {
			t.Errorf("CheckGrants with one grant deleted by hand: %d, %v; want 1", n, err)
		}
		if n, err := db.CheckGrants(ctx, true); err != nil || n != 0 {
			t.Errorf("CheckGrants rebuilding: %d, %v; want 0", n, err)
		}
		if got, want := list(q, false), list(q, true); !slices.Equal(got, want) {
			t.Errorf("after the rebuild the list is %v, the scope's rule %v", got, want)
		}
	})
}

// TestStudyGrantsConcurrentWrites overlaps, on PostgreSQL (where a node writes in several transactions at once, and
// nodes beside it too; SQLite has one writer), the transaction of a patient's new study, or of a study moving into
// the trash, with the transaction of a share of that patient: each reads what the other has not committed yet, and
// without an order between them the grants missed the new study, or kept a trashed one live, for as long as the
// share lasted, while the scope's rule listed it.
func TestStudyGrantsConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	inst := putHospitals(t, db, "a", "b")
	A, B := inst[0], inst[1]
	t0 := time.Now()
	n := 0
	instance := func(patient string) *renkei.Instance {
		n++
		uid := fmt.Sprintf("1.2.%d", n)
		return &renkei.Instance{Institution: A, Patient: renkei.PatientKey{Issuer: "I", ID: patient}, PatientName: "Test^" + patient,
			StudyInstanceUID: uid, StudyDate: fmt.Sprintf("202401%02d", n), StudyTime: "120000", SeriesInstanceUID: uid + ".1", Modality: "CT",
			SOPInstanceUID: uid + ".1.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1",
			BlobKey: fmt.Sprintf("%064d", n), Size: 1, ReceivedAt: t0}
	}
	for _, p := range []string{"p1", "p2", "p3"} {
		if _, _, err := db.Insert(ctx, instance(p)); err != nil {
			t.Fatal(err)
		}
	}
	shareOf := func(patient string) *renkei.Share {
		return &renkei.Share{FromInstitution: A, Patient: renkei.PatientKey{Issuer: "I", ID: patient}, ToInstitution: B,
			Purpose: renkei.PurposeReferral, ExpiresAt: t0.Add(48 * time.Hour), WithoutConsent: true, CreatedAt: t0}
	}
	// overlap runs first in an open transaction, starts second, lets it finish or wait (at most a moment), then
	// commits the transaction and waits for second.
	overlap := func(first func(tx *sql.Tx) error, second func() error) {
		t.Helper()
		tx, err := db.write.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if err := first(tx); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- second() }()
		var secondErr error
		finished := false
		select {
		case secondErr = <-done:
			finished = true
		case <-time.After(300 * time.Millisecond):
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if !finished {
			secondErr = <-done
		}
		if secondErr != nil {
			t.Fatal(secondErr)
		}
	}
	list := func(old bool) []string {
		t.Helper()
		return studyUIDs(t, db, renkei.Query{Level: renkei.StudyLevel,
			Scope: &renkei.Scope{Institutions: []int64{B}, Grantee: &renkei.Grantee{Institution: B, At: t0.Add(time.Minute)}}}, old)
	}
	compare := func(what string) {
		t.Helper()
		if got, want := list(false), list(true); !slices.Equal(got, want) {
			t.Errorf("%s: browse lists %v, the scope's rule %v", what, got, want)
		}
	}

	// A new study of p1 is being stored (as the committer does) when p1 is shared.
	overlap(func(tx *sql.Tx) error {
		db.batch = &batchStmts{tx: tx, stmts: map[string]*sql.Stmt{}}
		return db.insertOne(ctx, tx, instance("p1")).err
	}, func() error { return db.CreateShare(ctx, shareOf("p1"), nil) })
	compare("a study stored while its patient was shared")

	// p2 is being shared when a new study of p2 is stored.
	overlap(func(tx *sql.Tx) error { return db.createShare(ctx, tx, shareOf("p2")) }, func() error {
		_, _, err := db.Insert(ctx, instance("p2"))
		return err
	})
	compare("a patient shared while a study of it was stored")

	// p3 is being shared when its study moves into the trash.
	overlap(func(tx *sql.Tx) error { return db.createShare(ctx, tx, shareOf("p3")) }, func() error {
		_, err := db.Trash(ctx, renkei.TrashRequest{Study: "1.2.3"})
		return err
	})
	compare("a patient shared while its study moved into the trash")
}

// TestStudyGrantsTwoNodes writes from two nodes on one PostgreSQL at once: one stores new studies of ten patients
// (in batches that span patients) and moves some into the trash and out, the other shares and revokes the same
// patients. None of it may wait forever or fail, and at the end the grants give what the shares give.
func TestStudyGrantsTwoNodes(t *testing.T) {
	ctx := context.Background()
	target := pgtest.URL(t)
	var nodes [2]*DB
	for i := range nodes {
		db, err := Open(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		nodes[i] = db
	}
	store, share := nodes[0], nodes[1]
	inst := putHospitals(t, store, "a", "b")
	A, B := inst[0], inst[1]
	const user = 5 // a user of B
	t0 := time.Now()
	instance := func(n int) *renkei.Instance {
		uid := fmt.Sprintf("1.2.%d", n)
		p := fmt.Sprintf("p%d", n%10)
		return &renkei.Instance{Institution: A, Patient: renkei.PatientKey{Issuer: "I", ID: p}, PatientName: "Test^" + p,
			StudyInstanceUID: uid, StudyDate: fmt.Sprintf("2024%04d", 101+n%28), StudyTime: "120000", SeriesInstanceUID: uid + ".1", Modality: "CT",
			SOPInstanceUID: uid + ".1.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1",
			BlobKey: fmt.Sprintf("%064d", n), Size: 1, ReceivedAt: t0}
	}
	for n := range 10 {
		if _, _, err := store.Insert(ctx, instance(n)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for g := range 4 { // storers: the committer batches what arrives together
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 10 + g; n < 90; n += 4 {
				if _, _, err := store.Insert(ctx, instance(n)); err != nil {
					errs <- fmt.Errorf("store %d: %w", n, err)
					return
				}
				if n%7 == 0 {
					uid := fmt.Sprintf("1.2.%d", n-4)
					if _, err := store.Trash(ctx, renkei.TrashRequest{Study: uid}); err != nil {
						errs <- fmt.Errorf("trash %s: %w", uid, err)
						return
					}
					if n%3 == 0 {
						if _, err := store.Trash(ctx, renkei.TrashRequest{Study: uid, Restore: true}); err != nil {
							errs <- fmt.Errorf("restore %s: %w", uid, err)
							return
						}
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // the sharer
		defer wg.Done()
		for i := range 30 {
			p := fmt.Sprintf("p%d", i%10)
			to, toUser := B, int64(0)
			if i%3 == 1 {
				to, toUser = 0, user
			}
			sh := &renkei.Share{FromInstitution: A, Patient: renkei.PatientKey{Issuer: "I", ID: p}, ToInstitution: to, ToUser: toUser,
				Purpose: renkei.PurposeReferral, ExpiresAt: t0.Add(48 * time.Hour), WithoutConsent: true}
			if err := share.CreateShare(ctx, sh, nil); err != nil {
				errs <- fmt.Errorf("share %s: %w", p, err)
				return
			}
			if i%4 == 3 {
				if err := share.RevokeShare(ctx, sh.ID, A, nil); err != nil {
					errs <- fmt.Errorf("revoke %d: %w", sh.ID, err)
					return
				}
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, u := range []int64{0, user} {
		q := renkei.Query{Level: renkei.StudyLevel, Scope: &renkei.Scope{Institutions: []int64{B}, Grantee: &renkei.Grantee{Institution: B, User: u, At: t0.Add(time.Minute)}}}
		var lists [2][]string
		for i, old := range []bool{false, true} {
			store.noBrowse = old
			recs, err := store.QueryStudies(ctx, &q)
			store.noBrowse = false
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				lists[i] = append(lists[i], r.StudyInstanceUID)
			}
		}
		if !slices.Equal(lists[0], lists[1]) {
			t.Errorf("user %d: browse lists %d studies %v, the scope's rule %d %v", u, len(lists[0]), lists[0], len(lists[1]), lists[1])
		}
	}
}

// TestGrantsRace runs, on PostgreSQL with two nodes, a share of a patient and a new study of the same patient at
// once, each order of the two transactions: the first is held open (its rows written, not committed) while the
// second runs on the other node. Neither saw the other's row, so the new study was once never granted (READ
// COMMITTED: the share's rebuild did not see the uncommitted study, the study's grant did not see the uncommitted
// share), and the grantee's study list lacked a study every other query showed it.
func TestGrantsRace(t *testing.T) {
	ctx := context.Background()
	target := pgtest.URL(t)
	open := func() *DB {
		db, err := Open(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	one, two := open(), open()
	inst := putHospitals(t, one, "a", "b")
	A, B := inst[0], inst[1]
	mk := func(patient, uid string) *renkei.Instance {
		return &renkei.Instance{Institution: A, Patient: renkei.PatientKey{Issuer: "I", ID: patient}, PatientName: "Test^" + patient,
			StudyInstanceUID: uid, StudyDate: "20240105", SeriesInstanceUID: uid + ".1", Modality: "CT", SOPInstanceUID: uid + ".1.1",
			SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1", BlobKey: "k" + uid, Size: 1, ReceivedAt: time.Now()}
	}
	shareOf := func(patient string) *renkei.Share {
		return &renkei.Share{FromInstitution: A, Patient: renkei.PatientKey{Issuer: "I", ID: patient}, ToInstitution: B,
			Purpose: renkei.PurposeReferral, ExpiresAt: time.Now().Add(time.Hour), WithoutConsent: true, CreatedAt: time.Now()}
	}
	for _, in := range []*renkei.Instance{mk("P1", "1.1"), mk("P2", "2.1")} {
		if _, _, err := one.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	// held runs first in a transaction of node one left open, then second on node two, and commits the first once
	// the second has finished or has waited 300 ms for it.
	held := func(first func(tx *sql.Tx) error, second func() error) {
		t.Helper()
		tx, err := one.write.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		one.batch = &batchStmts{tx: tx, stmts: map[string]*sql.Stmt{}}
		if err := first(tx); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- second() }()
		select {
		case err := <-done:
			done <- err
		case <-time.After(300 * time.Millisecond):
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// A new study of P1 written, then P1 shared on the other node.
	held(func(tx *sql.Tx) error { return one.insertOne(ctx, tx, mk("P1", "1.2")).err },
		func() error { return two.CreateShare(ctx, shareOf("P1"), nil) })
	// P2 shared, then a new study of P2 stored on the other node.
	held(func(tx *sql.Tx) error { return one.createShare(ctx, tx, shareOf("P2")) },
		func() error { _, _, err := two.Insert(ctx, mk("P2", "2.2")); return err })

	want := []string{"1.1", "1.2", "2.1", "2.2"}
	for _, db := range []*DB{one, two} {
		for _, old := range []bool{true, false} {
			db.noBrowse = old
			recs, err := db.QueryStudies(ctx, &renkei.Query{Level: renkei.StudyLevel, Sort: "date",
				Scope: &renkei.Scope{Institutions: []int64{B}, Grantee: &renkei.Grantee{Institution: B, At: time.Now()}}})
			db.noBrowse = false
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.StudyInstanceUID)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("B's study list (scope's rule %v) is %v, want %v", old, got, want)
			}
		}
	}
}

// TestCopyGrants copies a SQLite index with shares (renkei admin migrate) to PostgreSQL and checks the study list of
// a grantee there, which walks study_grants: the same studies as on SQLite and as the scope's rule, and still so
// after the target takes new shares and studies (the copied grants' keys must not collide with new ones).
func TestCopyGrants(t *testing.T) {
	ctx := context.Background()
	src, err := Open(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := Open(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	t0 := time.Now()
	inst := putHospitals(t, src, "a", "b")
	A, B := inst[0], inst[1]
	const user = 42 // a user of B
	add := func(db *DB, owner int64, patient, uid, date string) {
		t.Helper()
		in := &renkei.Instance{Institution: owner, Patient: renkei.PatientKey{Issuer: "I", ID: patient}, PatientName: "Test^" + patient,
			StudyInstanceUID: uid, StudyDate: date, StudyTime: "101500", SeriesInstanceUID: uid + ".1", Modality: "CT", SOPInstanceUID: uid + ".1.1",
			SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1", BlobKey: "k" + uid, Size: 1, ReceivedAt: t0}
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	share := func(db *DB, patient string, toInst, toUser int64, studies ...string) {
		t.Helper()
		sh := &renkei.Share{FromInstitution: A, Patient: renkei.PatientKey{Issuer: "I", ID: patient}, ToInstitution: toInst, ToUser: toUser,
			Purpose: renkei.PurposeReferral, ExpiresAt: t0.Add(48 * time.Hour), WithoutConsent: true, Studies: studies}
		if err := db.CreateShare(ctx, sh, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, pid := range []string{"p1", "p2", "p3", "p4"} {
		for k := range 2 {
			add(src, A, pid, fmt.Sprintf("1.%d.%d", i+1, k+1), fmt.Sprintf("2024010%d", i+k+1))
		}
	}
	add(src, B, "q1", "2.1.1", "20240102")
	share(src, "p1", B, 0)
	share(src, "p2", B, 0, "1.2.2")
	share(src, "p3", 0, user)
	if _, err := src.Trash(ctx, renkei.TrashRequest{Study: "1.1.1"}); err != nil {
		t.Fatal(err)
	}
	list := func(db *DB, old bool) []string {
		t.Helper()
		return studyUIDs(t, db, renkei.Query{Level: renkei.StudyLevel, Sort: "date",
			Scope: &renkei.Scope{Institutions: []int64{B}, Grantee: &renkei.Grantee{Institution: B, User: user, At: t0.Add(time.Minute)}}}, old)
	}
	want := list(src, false)
	if d := []string{"1.3.2", "1.3.1", "1.2.2", "2.1.1", "1.1.2"}; !slices.Equal(want, d) {
		t.Fatalf("on SQLite B's user lists %v, want %v", want, d)
	}
	if err := Copy(ctx, dst, src, CopyOptions{Batch: 3}); err != nil {
		t.Fatal(err)
	}
	for _, old := range []bool{false, true} {
		if got := list(dst, old); !slices.Equal(got, want) {
			t.Errorf("on PostgreSQL after the copy (scope's rule %v) B's user lists %v, want %v", old, got, want)
		}
	}
	// The target goes on: a new study of a shared patient, a new share, a restored study.
	dst.Now = func() time.Time { return t0 }
	add(dst, A, "p1", "1.1.3", "20240301")
	share(dst, "p4", B, 0)
	if _, err := dst.Trash(ctx, renkei.TrashRequest{Study: "1.1.1", Restore: true}); err != nil {
		t.Fatal(err)
	}
	want = list(dst, true)
	if got := list(dst, false); !slices.Equal(got, want) || len(got) != 9 {
		t.Errorf("on PostgreSQL after new writes B's user lists %v, the scope's rule %v (want 9)", got, want)
	}
}
