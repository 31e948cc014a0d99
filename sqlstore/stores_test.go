package sqlstore_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/sqlstore"
)

// The stores besides the archive, each through its main path, on both databases: what the other packages' tests
// exercise on SQLite only.

// region adds a hospital and a clinic, a physician at each, and a study of the clinic's patient P1.
func region(t *testing.T, db *sqlstore.DB) (hosp, clinic *renkei.Institution, doc, gp *renkei.User) {
	t.Helper()
	ctx := context.Background()
	hosp = &renkei.Institution{ID: "chuo-hospital", Name: "中央病院", Kind: renkei.Hospital, Issuer: "CHUO", CareFunctions: []string{"急性期"}}
	clinic = &renkei.Institution{ID: "kita-clinic", Name: "北町クリニック", Kind: renkei.Clinic, Issuer: "KITA"}
	for _, in := range []*renkei.Institution{hosp, clinic} {
		if err := db.PutInstitution(ctx, in, nil); err != nil {
			t.Fatal(err)
		}
	}
	doc = &renkei.User{Login: "tanaka@chuo-hospital", Name: "田中 一郎", Institution: *hosp, Role: renkei.Physician, CreatedAt: time.Now()}
	gp = &renkei.User{Login: "kita@kita-clinic", Name: "北 花子", Institution: *clinic, Role: renkei.Physician, CreatedAt: time.Now()}
	for _, u := range []*renkei.User{doc, gp} {
		if err := db.CreateUser(ctx, u, "argon2id$hash", nil); err != nil {
			t.Fatal(err)
		}
	}
	in := inst("P1", "5.1", "5.1.1", "5.1.1.1", "CT", "k51")
	in.Institution, in.Patient.Issuer = clinic.PK, "KITA"
	if _, _, err := db.Insert(ctx, in); err != nil {
		t.Fatal(err)
	}
	return hosp, clinic, doc, gp
}

func TestIdentity(t *testing.T) { eachDB(t, testIdentity) }

func testIdentity(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp, _, doc, _ := region(t, db)
	if got, err := db.Institution(ctx, "chuo-hospital"); err != nil || got.PK != hosp.PK || !slices.Equal(got.CareFunctions, []string{"急性期"}) {
		t.Errorf("Institution: %+v %v", got, err)
	}
	dup := &renkei.User{Login: doc.Login, Institution: *hosp, Role: renkei.Physician, CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, dup, "x", nil); renkei.ErrorKind(err) != renkei.Conflict {
		t.Errorf("a second user with the same login: %v, want Conflict", err)
	}
	secret, must := "JBSWY3DPEHPK3PXP", false
	if err := db.UpdateUser(ctx, doc.PK, renkei.UserUpdate{TOTPSecret: &secret, MustChange: &must, RecoveryCodes: []string{"h1", "h2"}}, nil); err != nil {
		t.Fatal(err)
	}
	u, cred, err := db.UserByLogin(ctx, doc.Login)
	if err != nil || u.PK != doc.PK || !u.HasTOTP || u.MustChangePassword || cred.PasswordHash != "argon2id$hash" {
		t.Errorf("UserByLogin: %+v %+v %v", u, cred, err)
	}
	if ok, err := db.UseTOTPStep(ctx, doc.PK, 100); !ok || err != nil {
		t.Errorf("first use of a TOTP step: %v %v", ok, err)
	}
	if ok, _ := db.UseTOTPStep(ctx, doc.PK, 100); ok {
		t.Error("a TOTP step was accepted twice")
	}
	if ok, _ := db.UseRecoveryCode(ctx, doc.PK, "h1"); !ok {
		t.Error("recovery code refused")
	}
	if ok, _ := db.UseRecoveryCode(ctx, doc.PK, "h1"); ok {
		t.Error("a recovery code was accepted twice")
	}
	if n, _ := db.RecoveryCodesLeft(ctx, doc.PK); n != 1 {
		t.Errorf("%d recovery codes left, want 1", n)
	}
	now := time.UnixMilli(time.Now().UnixMilli())
	s := &renkei.Session{IDHash: "sess1", User: doc.PK, CSRF: "c", CreatedAt: now, LastSeen: now, SecondFactorAt: &now, Source: "10.0.0.1"}
	if err := db.CreateSession(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Session(ctx, "sess1"); err != nil || got.User != doc.PK || got.SecondFactorAt == nil {
		t.Errorf("Session: %+v %v", got, err)
	}
	tok := &renkei.APIToken{Institution: hosp.PK, Name: "gateway", Write: true, CreatedBy: "admin", CreatedAt: now}
	if err := db.CreateToken(ctx, tok, "tokhash", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := db.TokenByHash(ctx, "tokhash"); err != nil || !got.Write || got.Issuer != "CHUO" {
		t.Errorf("TokenByHash: %+v %v", got, err)
	}
	if err := db.RevokeToken(ctx, tok.PK, hosp.PK, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.TokenByHash(ctx, "tokhash"); got.RevokedAt == nil {
		t.Error("token not revoked")
	}
	disabled := true
	if err := db.UpdateUser(ctx, doc.PK, renkei.UserUpdate{Disabled: &disabled, EndSessions: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Session(ctx, "sess1"); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("session of a disabled user: %v, want NotFound", err)
	}
}

func TestShares(t *testing.T) { eachDB(t, testShares) }

func testShares(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp, clinic, doc, gp := region(t, db)
	now := time.Now()
	sh := &renkei.Share{FromInstitution: clinic.PK, Patient: renkei.PatientKey{Issuer: "KITA", ID: "P1"}, Studies: []string{"5.1"},
		ToInstitution: hosp.PK, Purpose: renkei.PurposeReferral, CreatedBy: gp.PK, CreatedByName: gp.Name, ExpiresAt: now.Add(time.Hour), WithoutConsent: true}
	if err := db.CreateShare(ctx, sh, nil); err != nil {
		t.Fatal(err)
	}
	list, err := db.Shares(ctx, renkei.ShareFilter{ToInstitution: hosp.PK, ActiveAt: now})
	if err != nil || len(list) != 1 || !slices.Equal(list[0].Studies, []string{"5.1"}) {
		t.Fatalf("Shares: %+v %v", list, err)
	}
	g, err := db.Grants(ctx, hosp.PK, doc.PK, now)
	if err != nil || len(g.Studies) != 1 {
		t.Fatalf("Grants: %+v %v", g, err)
	}
	// The hospital's scope finds the shared study, through the shares in force; without the share it finds nothing.
	sc := &renkei.Scope{Institutions: []int64{hosp.PK}, Grantee: &renkei.Grantee{Institution: hosp.PK, User: doc.PK, At: now}}
	for _, q := range []*renkei.Query{
		{Level: renkei.StudyLevel, Scope: sc},
		{Level: renkei.StudyLevel, Scope: sc, Matches: []renkei.Match{{Keyword: "PatientID", Kind: renkei.MatchSingle, Value: "P1"}}},
	} {
		if got := studies(t, db, q); len(got) != 1 || got[0].StudyInstanceUID != "5.1" {
			t.Errorf("hospital's query %+v finds %+v", q.Matches, got)
		}
	}
	if err := db.RevokeShare(ctx, sh.ID, clinic.PK, nil); err != nil {
		t.Fatal(err)
	}
	if got := studies(t, db, &renkei.Query{Level: renkei.StudyLevel, Scope: sc}); len(got) != 0 {
		t.Errorf("after revoking, the hospital still finds %d studies", len(got))
	}
	if err := db.RevokeShare(ctx, sh.ID, hosp.PK, nil); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("revoking another institution's share: %v, want NotFound", err)
	}
}

// TestWildcards: DICOM wildcards (SQLite's GLOB; glob() on PostgreSQL) match the same rows on both databases.
func TestWildcards(t *testing.T) { eachDB(t, testWildcards) }

func testWildcards(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	for i, id := range []string{"A1", "A12", "B1", "a1", "[x]1", "A%1", "A_1"} {
		in := inst(id, fmt.Sprint("6.", i), fmt.Sprint("6.", i, ".1"), fmt.Sprint("6.", i, ".1.1"), "CT", fmt.Sprint("k6", i))
		in.ReferringPhysicianKey = "\x1fSATO^KEN\x1f"
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		pattern string
		want    []string
	}{
		{"A*", []string{"A%1", "A1", "A12", "A_1"}},
		{"A?", []string{"A1"}},
		{"*1", []string{"A%1", "A1", "A_1", "B1", "[x]1", "a1"}},
		{"?1", []string{"A1", "B1", "a1"}},
		{"[x]*", []string{"[x]1"}},
		{"A%*", []string{"A%1"}},
		{"A_?", []string{"A_1"}},
		{"*2", []string{"A12"}},
	} {
		got := studies(t, db, &renkei.Query{Level: renkei.StudyLevel, Matches: []renkei.Match{{Keyword: "PatientID", Kind: renkei.MatchWildcard, Value: c.pattern}}})
		var ids []string
		for _, s := range got {
			ids = append(ids, s.Patient.ID)
		}
		slices.Sort(ids)
		if d := cmp.Diff(c.want, ids); d != "" {
			t.Errorf("PatientID=%s (-want +got):\n%s", c.pattern, d)
		}
	}
	if got := studies(t, db, &renkei.Query{Level: renkei.StudyLevel, Matches: []renkei.Match{{Keyword: "ReferringPhysicianName", Kind: renkei.MatchWildcard, Value: "SATO*"}}}); len(got) != 7 {
		t.Errorf("ReferringPhysicianName=SATO* finds %d studies, want 7", len(got))
	}
}

func TestAuditChain(t *testing.T) { eachDB(t, testAuditChain) }

func testAuditChain(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(nil)
	db.AuditKey = &sqlstore.AuditKey{ID: "k1", Private: priv}
	for i := range 25 {
		e := &renkei.AuditEvent{Actor: "u@h", ActorKind: renkei.UserPrincipal, ActorID: 1, Institution: 1, Role: renkei.Physician,
			Action: renkei.ActionRead, DataInstitution: 1, Patient: renkei.PatientKey{Issuer: "H", ID: fmt.Sprint("P", i%3)}, Study: "1.2"}
		if err := db.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.CheckpointAudit(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := db.VerifyAudit(ctx, map[string]ed25519.PublicKey{"k1": pub})
	if err != nil || len(rep.Problems) != 0 || rep.Events != 25 || rep.Checkpoints != 1 || rep.LastSeq != 25 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	got, err := db.AuditEvents(ctx, renkei.AuditFilter{DataInstitution: 1, Patient: &renkei.PatientKey{Issuer: "H", ID: "P1"}})
	if err != nil || len(got) != 8 || got[0].Seq != 23 {
		t.Errorf("AuditEvents of P1: %d events, first %+v, %v", len(got), got, err)
	}
}

// TestAuditTwoNodes: two handles on one index (two renkei nodes on one PostgreSQL; two processes on one SQLite file)
// append at once, through group commit, admin transactions and the trash; the chain stays one chain.
func TestAuditTwoNodes(t *testing.T) { eachBackend(t, testAuditTwoNodes) }

func testAuditTwoNodes(t *testing.T, target string) {
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(nil)
	nodes := []*sqlstore.DB{openTarget(t, target), openTarget(t, target)}
	for _, db := range nodes {
		db.AuditKey = &sqlstore.AuditKey{ID: "k1", Private: priv}
	}
	const perWriter = 40
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for n, db := range nodes {
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					e := &renkei.AuditEvent{Actor: fmt.Sprintf("node%d-w%d", n, w), ActorKind: renkei.UserPrincipal, Action: renkei.ActionRead,
						Detail: fmt.Sprint(i)}
					var err error
					switch w {
					case 0: // group commit
						err = db.Audit(ctx, e)
					case 1: // an instance and its event
						in := inst(fmt.Sprint("N", n), fmt.Sprint("7.", n), fmt.Sprint("7.", n, ".1"), fmt.Sprint("7.", n, ".1.", i), "CT", fmt.Sprint("k7", n, i))
						in.Audit = e
						_, _, err = db.Insert(ctx, in)
					case 2: // an admin transaction and its event
						err = db.PutInstitution(ctx, &renkei.Institution{ID: fmt.Sprint("inst-", n, "-", i), Name: "x", Kind: renkei.Clinic}, e)
					}
					if err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rep, err := nodes[1].VerifyAudit(ctx, map[string]ed25519.PublicKey{"k1": pub})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(nodes) * 3 * perWriter); len(rep.Problems) != 0 || rep.Events != want || rep.LastSeq != want {
		t.Fatalf("after concurrent appends from two nodes: %d events (want %d), last %d, problems %+v", rep.Events, want, rep.LastSeq, rep.Problems)
	}
}

func TestClinical(t *testing.T) { eachDB(t, testClinical) }

func testClinical(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp, clinic, doc, gp := region(t, db)
	lp, err := db.LocalPatient(ctx, clinic.PK, renkei.PatientKey{Issuer: "KITA", ID: "P1"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &renkei.Record{Allergies: []renkei.Allergy{{Fact: renkei.Fact{Institution: clinic.PK, PatientPK: lp.PK, Author: gp.Name}, Substance: "ペニシリン"}}}
	if err := db.AddFacts(ctx, rec, nil); err != nil {
		t.Fatal(err)
	}
	got, err := db.Facts(ctx, []int64{lp.PK})
	if err != nil || len(got.Allergies) != 1 || got.Allergies[0].Substance != "ペニシリン" {
		t.Fatalf("Facts: %+v %v", got, err)
	}
	r := &renkei.Referral{Kind: renkei.KindReferral, FromInstitution: clinic.PK, FromUser: gp.PK, FromUserName: gp.Name, ToInstitution: hosp.PK,
		Patient: renkei.PatientKey{Issuer: "KITA", ID: "P1"}, Priority: "routine", Studies: []string{"5.1"}, Letter: renkei.Letter{Purpose: "精査"}}
	if err := db.CreateReferral(ctx, r, nil); err != nil {
		t.Fatal(err)
	}
	r.Letter.Diagnosis = "肺結節"
	if err := db.SaveDraft(ctx, r, nil); err != nil {
		t.Fatal(err)
	}
	send := renkei.ReferralMove{ID: r.ID, Institution: clinic.PK, Side: "sender", From: []renkei.ReferralStatus{renkei.StatusDraft}, To: renkei.StatusSent,
		Event: renkei.ReferralEvent{By: gp.Name, ByInst: clinic.PK},
		Share: &renkei.Share{FromInstitution: clinic.PK, Patient: r.Patient, ToInstitution: hosp.PK, Purpose: renkei.PurposeReferral, ExpiresAt: time.Now().Add(time.Hour), WithoutConsent: true}}
	if err := db.MoveReferral(ctx, send, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.MoveReferral(ctx, send, nil); renkei.ErrorKind(err) != renkei.Conflict {
		t.Errorf("sending twice: %v, want Conflict", err)
	}
	if err := db.SaveDraft(ctx, r, nil); renkei.ErrorKind(err) != renkei.Conflict {
		t.Errorf("editing a sent referral: %v, want Conflict", err)
	}
	if v, err := db.AddLetterVersion(ctx, r.ID, clinic.PK, renkei.Letter{Purpose: "精査", Diagnosis: "肺結節疑い"}, gp.Name, nil); err != nil || v != 2 {
		t.Errorf("AddLetterVersion: %d %v", v, err)
	}
	done := renkei.ReferralMove{ID: r.ID, Institution: hosp.PK, From: []renkei.ReferralStatus{renkei.StatusSent, renkei.StatusReceived}, To: renkei.StatusCompleted,
		Event: renkei.ReferralEvent{By: doc.Name, ByInst: hosp.PK}, Reply: &renkei.Letter{FollowUp: "経過観察"}}
	if err := db.MoveReferral(ctx, done, nil); err != nil {
		t.Fatal(err)
	}
	got2, err := db.Referral(ctx, r.ID)
	if err != nil || got2.Status != renkei.StatusCompleted || got2.Reply == nil || got2.Reply.FollowUp != "経過観察" || got2.Letter.Diagnosis != "肺結節疑い" {
		t.Errorf("Referral: %+v %v", got2, err)
	}
	vs, err := db.LetterVersions(ctx, r.ID, false)
	if err != nil || len(vs) < 2 {
		t.Errorf("LetterVersions: %+v %v", vs, err)
	}
	// The board finds it by part of the name, in any case of ASCII letters, as on SQLite.
	for _, who := range []string{"P1", "yamada", "Taro"} {
		list, err := db.Referrals(ctx, renkei.ReferralFilter{Institution: hosp.PK, Patient: who})
		if err != nil || len(list) != 1 {
			t.Errorf("Referrals(Patient=%s): %d %v", who, len(list), err)
		}
	}
}

func TestDirectory(t *testing.T) { eachDB(t, testDirectory) }

func testDirectory(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp, _, _, _ := region(t, db)
	v0, err := db.DirectoryVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutProfile(ctx, &renkei.Profile{Institution: hosp.PK, Specialties: []string{"循環器内科"}, Latitude: 35.6, Longitude: 139.7, UpdatedBy: "admin"}, nil); err != nil {
		t.Fatal(err)
	}
	beds := 3
	items := []renkei.CapacityItem{{Key: "emergency", Emergency: "yes", UpdatedBy: "clerk"}, {Key: "beds:急性期", Beds: &beds, UpdatedBy: "clerk"}}
	if err := db.PutCapacity(ctx, hosp.PK, items, nil); err != nil {
		t.Fatal(err)
	}
	beds = 2
	if err := db.PutCapacity(ctx, hosp.PK, items[1:], nil); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.DirectoryVersion(ctx); v <= v0 {
		t.Errorf("directory version %d after writes, was %d", v, v0)
	}
	dir, err := db.Directory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range dir {
		if e.Institution.PK != hosp.PK {
			continue
		}
		found = true
		if !slices.Equal(e.Profile.Specialties, []string{"循環器内科"}) || len(e.Capacity) != 2 {
			t.Errorf("directory entry: %+v", e)
		}
		for _, c := range e.Capacity {
			if c.Key == "beds:急性期" && (c.Beds == nil || *c.Beds != 2) {
				t.Errorf("beds: %+v", c)
			}
		}
	}
	if !found {
		t.Errorf("the hospital is not in the directory: %+v", dir)
	}
	// An institution written (new, renamed) changes the version too: the directory's entries carry it.
	v1, _ := db.DirectoryVersion(ctx)
	hosp.Name = "中央総合病院"
	if err := db.PutInstitution(ctx, hosp, nil); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.DirectoryVersion(ctx); v <= v1 {
		t.Errorf("directory version %d after the hospital was renamed, was %d", v, v1)
	}
	hist, err := db.CapacityHistory(ctx, hosp.PK, time.Now().Add(-time.Hour))
	if err != nil || len(hist) != 3 {
		t.Errorf("CapacityHistory: %d items, %v", len(hist), err)
	}
}

// TestTwoNodesOneStudy: two handles (two nodes) store instances of the same new patient, study and series at once;
// every instance is stored once and counted, whichever node created the rows.
func TestTwoNodesOneStudy(t *testing.T) { eachBackend(t, testTwoNodesOneStudy) }

func testTwoNodesOneStudy(t *testing.T, target string) {
	ctx := context.Background()
	nodes := []*sqlstore.DB{openTarget(t, target), openTarget(t, target)}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for round := range 5 {
		for n, db := range nodes {
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sop := fmt.Sprint("8.", round, ".1.", n, ".", w)
					if _, _, err := db.Insert(ctx, inst(fmt.Sprint("R", round), fmt.Sprint("8.", round), fmt.Sprint("8.", round, ".1"), sop, "CT", "k"+sop)); err != nil {
						errs <- err
					}
				}()
			}
		}
		wg.Wait()
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := studies(t, nodes[0], nil)
	if len(got) != 5 {
		t.Fatalf("%d studies, want 5", len(got))
	}
	for _, s := range got {
		if s.NumberOfSeries != 1 || s.NumberOfInstances != 8 {
			t.Errorf("study %s: %d series, %d instances; want 1 and 8", s.StudyInstanceUID, s.NumberOfSeries, s.NumberOfInstances)
		}
	}
}
