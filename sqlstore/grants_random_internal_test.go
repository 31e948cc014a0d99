package sqlstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"renkei"
)

// TestGrantsRandom runs a random sequence of what changes shares and studies (new studies, shares of whole patients
// and of chosen studies to institutions and users, revocations, consents withdrawn, trash, restore, purge, more
// instances of a study in or out of the trash) and checks after each step that the study list's walk over the
// grants lists what the scope's rule lists.
func TestGrantsRandom(t *testing.T) {
	eachInternalDB(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		db.Now = func() time.Time { return now }
		inst := putHospitals(t, db, "a", "b", "c")
		rng := rand.New(rand.NewPCG(1, 2))
		type study struct {
			owner   int64
			patient string
			uid     string
		}
		var studies []study
		var shares []int64
		var consents []struct{ id, inst int64 }
		n := 0
		for step := range 300 {
			op := rng.IntN(10)
			owner := inst[rng.IntN(2)] // a and b own; c only receives
			patient := fmt.Sprintf("p%d", rng.IntN(4))
			var err error
			what := ""
			switch {
			case op < 3 || len(studies) == 0:
				n++
				uid := fmt.Sprintf("1.%d", n)
				what = "study " + uid
				in := &renkei.Instance{Institution: owner, Patient: renkei.PatientKey{Issuer: "I", ID: patient}, PatientName: "T^" + patient,
					StudyInstanceUID: uid, StudyDate: fmt.Sprintf("202401%02d", 1+rng.IntN(5)), StudyTime: "101500", SeriesInstanceUID: uid + ".1",
					Modality: "CT", SOPInstanceUID: uid + ".1.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1",
					BlobKey: "k" + uid, Size: 1, ReceivedAt: now}
				if _, _, err = db.Insert(ctx, in); err == nil {
					studies = append(studies, study{owner, patient, uid})
				}
			case op < 5:
				s := studies[rng.IntN(len(studies))]
				sh := &renkei.Share{FromInstitution: s.owner, Patient: renkei.PatientKey{Issuer: "I", ID: s.patient}, Purpose: renkei.PurposeReferral,
					ExpiresAt: now.Add(time.Duration(1+rng.IntN(5)) * time.Hour), WithoutConsent: rng.IntN(3) > 0}
				if rng.IntN(2) == 0 {
					sh.ToInstitution = inst[1+rng.IntN(2)]
				} else {
					sh.ToUser = 77
				}
				if rng.IntN(2) == 0 {
					sh.Studies = []string{s.uid}
				}
				what = fmt.Sprintf("share %+v", *sh)
				if err = db.CreateShare(ctx, sh, nil); err == nil {
					shares = append(shares, sh.ID)
				}
			case op < 6 && len(shares) > 0:
				id := shares[rng.IntN(len(shares))]
				what = fmt.Sprintf("revoke %d", id)
				err = db.RevokeShare(ctx, id, 0, nil)
			case op < 7:
				s := studies[rng.IntN(len(studies))]
				if rng.IntN(2) == 0 && len(consents) > 0 {
					c := consents[rng.IntN(len(consents))]
					what = fmt.Sprintf("withdraw %d", c.id)
					err = db.WithdrawConsent(ctx, c.id, c.inst, "t", nil)
				} else {
					c := &renkei.Consent{Institution: s.owner, Patient: renkei.PatientKey{Issuer: "I", ID: s.patient}, Scope: renkei.ConsentScopeRegion, GivenAt: now, Method: "paper"}
					what = "consent " + s.patient
					if err = db.AddConsent(ctx, c, nil); err == nil {
						consents = append(consents, struct{ id, inst int64 }{c.ID, s.owner})
					}
				}
			case op < 8 && rng.IntN(2) == 0:
				// One more instance of a study, perhaps in the trash (it comes back), perhaps purged (made anew).
				s := studies[rng.IntN(len(studies))]
				n++
				what = fmt.Sprintf("instance %d of %s", n, s.uid)
				_, _, err = db.Insert(ctx, &renkei.Instance{Institution: s.owner, Patient: renkei.PatientKey{Issuer: "I", ID: s.patient},
					PatientName: "T^" + s.patient, StudyInstanceUID: s.uid, StudyDate: "20240102", StudyTime: "101500", SeriesInstanceUID: s.uid + ".1",
					Modality: "CT", SOPInstanceUID: fmt.Sprintf("%s.1.%d", s.uid, n), SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
					TransferSyntaxUID: "1.2.840.10008.1.2.1", BlobKey: fmt.Sprintf("k%d", n), Size: 1, ReceivedAt: now})
			case op < 9:
				s := studies[rng.IntN(len(studies))]
				restore := rng.IntN(2) == 0
				what = fmt.Sprintf("trash %s (restore %v)", s.uid, restore)
				_, err = db.Trash(ctx, renkei.TrashRequest{Study: s.uid, Restore: restore})
			default:
				now = now.Add(time.Duration(rng.IntN(90)) * time.Minute)
				what = "purge at " + now.String()
				_, err = db.Purge(ctx, now.Add(-30*time.Minute))
			}
			if err != nil && renkei.ErrorKind(err) != renkei.NotFound && renkei.ErrorKind(err) != renkei.Forbidden {
				t.Fatalf("step %d, %s: %v", step, what, err)
			}
			for _, sc := range []renkei.Scope{
				{Institutions: []int64{inst[1]}, Grantee: &renkei.Grantee{Institution: inst[1], User: 77, At: now.Add(time.Minute)}},
				{Institutions: []int64{inst[2]}, Grantee: &renkei.Grantee{Institution: inst[2], At: now.Add(2 * time.Hour)}},
			} {
				var got [2][]string
				for i, old := range []bool{false, true} {
					db.noBrowse = old
					recs, err := db.QueryStudies(ctx, &renkei.Query{Level: renkei.StudyLevel, Scope: &sc})
					db.noBrowse = false
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range recs {
						got[i] = append(got[i], r.StudyInstanceUID)
					}
				}
				if !slices.Equal(got[0], got[1]) {
					t.Fatalf("step %d, after %s: institution %d's list walks %v, the scope's rule %v", step, what, sc.Grantee.Institution, got[0], got[1])
				}
			}
		}
	})
}
