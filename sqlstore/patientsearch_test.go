package sqlstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"renkei"
	"renkei/sqlstore"
)

// TestQueryPatients: the patient search on both databases finds a patient whose only study was purged (kept by a
// share) by the start of the ID in any case and by a folded name key, whole or one component; the scope decides
// as for studies: the owner's institution, a patient or study granted, a share in force for the grantee (not one
// expired); OwnOnly ignores grants; an exact ID comes first.
func TestQueryPatients(t *testing.T) { eachDB(t, testQueryPatients) }

func testQueryPatients(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db.Now = func() time.Time { return now }
	hosp, clinic := hospAndClinic(t, db)
	for _, c := range []struct {
		institution int64
		id, uid     string
		keys        []string
	}{
		{hosp, "Px12", "5.1", []string{"SUZUKI^HANAKO", "SUZUKIHANAKO", "\x01SUZUKI", "\x01HANAKO", "鈴木^花子", "鈴木花子", "\x01鈴木", "\x01花子"}},
		{hosp, "PX1", "5.2", []string{"SATO^JIRO", "SATOJIRO", "\x01SATO", "\x01JIRO"}},
		{clinic, "PX13", "5.3", []string{"SUZUKI^ICHIRO", "SUZUKIICHIRO", "\x01SUZUKI", "\x01ICHIRO"}},
	} {
		in := inst(c.id, c.uid, c.uid+".1", c.uid+".1.1", "CT", "k"+c.uid)
		in.Institution, in.PatientNameKeys = c.institution, c.keys
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	// Px12's only study goes; a share (expired) keeps the patient.
	if err := db.CreateShare(ctx, &renkei.Share{FromInstitution: hosp, Patient: renkei.PatientKey{Issuer: "HOSP", ID: "Px12"}, ToInstitution: clinic,
		Purpose: renkei.PurposeReferral, ExpiresAt: now.Add(time.Hour), WithoutConsent: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Trash(ctx, renkei.TrashRequest{Study: "5.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Purge(ctx, now.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	px12, err := db.LocalPatient(ctx, hosp, renkei.PatientKey{Issuer: "HOSP", ID: "Px12"})
	if err != nil {
		t.Fatalf("Px12 after the purge: %v", err)
	}
	own := &renkei.Scope{Institutions: []int64{hosp}}
	find := func(q renkei.PatientQuery) []string {
		t.Helper()
		got, err := db.QueryPatients(ctx, &q)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range got {
			ids = append(ids, p.Key.ID)
			if p.Key.ID == "Px12" && p.LastStudyDate != "" {
				t.Errorf("Px12 has no study left but %q", p.LastStudyDate)
			}
		}
		return ids
	}
	later := now.Add(2 * time.Hour)
	for name, c := range map[string]struct {
		q    renkei.PatientQuery
		want []string
	}{
		"an ID prefix, any case; the exact ID first": {renkei.PatientQuery{IDPrefix: "PX1", Scope: own}, []string{"PX1", "Px12"}},
		"a longer prefix":                           {renkei.PatientQuery{IDPrefix: "PX12", Scope: own}, []string{"Px12"}},
		"a name's start":                            {renkei.PatientQuery{NameKey: "SUZ", Scope: own}, []string{"Px12"}},
		"a given name":                              {renkei.PatientQuery{NameKey: "花", Scope: own}, []string{"Px12"}},
		"a whole name without the delimiter":        {renkei.PatientQuery{NameKey: "鈴木花", Scope: own}, []string{"Px12"}},
		"ID or name":                                {renkei.PatientQuery{IDPrefix: "SATO", NameKey: "SATO", Scope: own}, []string{"PX1"}},
		"the other institution's, by its scope":     {renkei.PatientQuery{NameKey: "SUZUKI", Scope: &renkei.Scope{Institutions: []int64{clinic}}}, []string{"PX13"}},
		"with the share in force":                   {renkei.PatientQuery{NameKey: "SUZUKI", Scope: &renkei.Scope{Institutions: []int64{clinic}, Grantee: &renkei.Grantee{Institution: clinic, At: now}}}, []string{"PX13", "Px12"}},
		"the share expired":                         {renkei.PatientQuery{NameKey: "SUZUKI", Scope: &renkei.Scope{Institutions: []int64{clinic}, Grantee: &renkei.Grantee{Institution: clinic, At: later}}}, []string{"PX13"}},
		"the share, but the owner filter":           {renkei.PatientQuery{NameKey: "SUZUKI", Owner: clinic, Scope: &renkei.Scope{Institutions: []int64{clinic}, Grantee: &renkei.Grantee{Institution: clinic, At: now}}}, []string{"PX13"}},
		"OwnOnly ignores the share":                 {renkei.PatientQuery{NameKey: "SUZUKI", Scope: &renkei.Scope{Institutions: []int64{clinic}, OwnOnly: true, Grantee: &renkei.Grantee{Institution: clinic, At: now}}}, []string{"PX13"}},
		"a patient granted (a patient's own scope)": {renkei.PatientQuery{IDPrefix: "PX", Scope: &renkei.Scope{Patients: []int64{px12.PK}}}, []string{"Px12"}},
		"no scope at all":                           {renkei.PatientQuery{IDPrefix: "PX", Scope: &renkei.Scope{}}, nil},
		"a wildcard is a character":                 {renkei.PatientQuery{IDPrefix: "P%", NameKey: "S*", Scope: own}, nil},
	} {
		if got := find(c.q); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}

// TestCreateReferralTypedPatient: a draft registers the patient typed in with it, found by the search at once, on
// both databases; an ID registered already, in any case, is renkei.Conflict and registers nothing.
func TestCreateReferralTypedPatient(t *testing.T) { eachDB(t, testCreateReferralTypedPatient) }

func testCreateReferralTypedPatient(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	hosp, clinic := hospAndClinic(t, db)
	in := inst("PX1", "5.1", "5.1.1", "5.1.1.1", "CT", "k5.1")
	in.Institution = clinic
	if _, _, err := db.Insert(ctx, in); err != nil {
		t.Fatal(err)
	}
	draft := func(id string) error {
		return db.CreateReferral(ctx, &renkei.Referral{Kind: renkei.KindReferral, FromInstitution: clinic, ToInstitution: hosp, Priority: "routine",
			Patient: renkei.PatientKey{Issuer: "HOSP", ID: id}, NewPatient: &renkei.NewPatient{Name: "=高橋^一郎", BirthDate: "19500401",
				NameKeys: []string{"高橋^一郎", "高橋一郎", "\x01高橋", "\x01一郎"}}}, nil)
	}
	own := &renkei.Scope{Institutions: []int64{clinic}}
	for _, id := range []string{"PX1", "px1", "Px1"} {
		if err := draft(id); renkei.ErrorKind(err) != renkei.Conflict {
			t.Errorf("a typed %s beside PX1: %v", id, err)
		}
	}
	if err := draft("px2"); err != nil {
		t.Fatal(err)
	}
	got, err := db.QueryPatients(ctx, &renkei.PatientQuery{NameKey: "高橋", Scope: own})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Key.ID != "px2" || got[0].BirthDate != "19500401" || got[0].Institution != clinic {
		t.Errorf("the typed patient is found as %+v", got)
	}
	if got, _ := db.QueryPatients(ctx, &renkei.PatientQuery{IDPrefix: "PX", Scope: own}); len(got) != 2 {
		t.Errorf("PX finds %+v", got)
	}
}

// hospAndClinic puts two institutions, "hosp" and "clinic", both with the issuer HOSP (so that their patient IDs
// meet), and returns their keys.
func hospAndClinic(t *testing.T, db *sqlstore.DB) (hosp, clinic int64) {
	t.Helper()
	var pks []int64
	for _, id := range []string{"hosp", "clinic"} {
		in := &renkei.Institution{ID: id, Name: id, Kind: renkei.Hospital, Issuer: "HOSP"}
		if err := db.PutInstitution(context.Background(), in, nil); err != nil {
			t.Fatal(err)
		}
		pks = append(pks, in.PK)
	}
	return pks[0], pks[1]
}
