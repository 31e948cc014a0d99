package sqlstore

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei"
)

// TestPurgeOneStudyHeld holds one study of the trash back with a row that refers to it and that Purge does not know
// of (as share_studies once was, see TestPurgeShared): the other studies are purged all the same and their blobs
// returned, and the error names the study left. Purge was one transaction, and one such row kept the whole trash,
// and every blob in it, from ever being purged.
func TestPurgeOneStudyHeld(t *testing.T) {
	eachInternalDB(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		db.Now = func() time.Time { return t0 }
		for _, s := range []struct{ patient, uid string }{{"P1", "6.1"}, {"P1", "6.2"}, {"P2", "6.3"}, {"P3", "6.4"}} {
			in := &renkei.Instance{Patient: renkei.PatientKey{Issuer: "I", ID: s.patient}, PatientName: "Test^" + s.patient,
				StudyInstanceUID: s.uid, StudyDate: "20240105", SeriesInstanceUID: s.uid + ".1", Modality: "CT", SOPInstanceUID: s.uid + ".1.1",
				SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1", BlobKey: "k" + s.uid, Size: 1, ReceivedAt: t0}
			if _, _, err := db.Insert(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		for _, uid := range []string{"6.1", "6.2", "6.3"} { // 6.4 stays live
			if _, err := db.Trash(ctx, renkei.TrashRequest{Study: uid}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.write.ExecContext(ctx, `CREATE TABLE purge_hold (study_pk INTEGER NOT NULL REFERENCES studies (pk))`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.write.ExecContext(ctx, `INSERT INTO purge_hold (study_pk) SELECT pk FROM studies WHERE study_uid = '6.2'`); err != nil {
			t.Fatal(err)
		}
		trash := func() []string {
			t.Helper()
			recs, err := db.QueryStudies(ctx, &renkei.Query{Level: renkei.StudyLevel, Deleted: true})
			if err != nil {
				t.Fatal(err)
			}
			var uids []string
			for _, r := range recs {
				uids = append(uids, r.StudyInstanceUID)
			}
			slices.Sort(uids)
			return uids
		}

		keys, err := db.Purge(ctx, t0.Add(time.Millisecond))
		if renkei.ErrorKind(err) != renkei.Unavailable || !strings.Contains(err.Error(), "6.2") || !strings.Contains(err.Error(), "index.Purge") {
			t.Errorf("purge with a study held back: %v, want Unavailable from index.Purge naming study 6.2", err)
		}
		slices.Sort(keys)
		if d := cmp.Diff([]string{"k6.1", "k6.3"}, keys); d != "" {
			t.Errorf("blobs purged while one study is held back (-want +got):\n%s", d)
		}
		if d := cmp.Diff([]string{"6.2"}, trash()); d != "" {
			t.Errorf("the trash after the purge (-want +got):\n%s", d)
		}
		// P2 (nothing left) went with its study; P1 stays with the study held back.
		var patients int
		if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM patients`).Scan(&patients); err != nil || patients != 2 {
			t.Errorf("%d patients left (%v), want P1 and P3", patients, err)
		}

		// Once nothing holds it, the next purge takes it.
		if _, err := db.write.ExecContext(ctx, `DELETE FROM purge_hold`); err != nil {
			t.Fatal(err)
		}
		keys, err = db.Purge(ctx, t0.Add(time.Millisecond))
		if err != nil || !slices.Equal(keys, []string{"k6.2"}) || len(trash()) != 0 {
			t.Errorf("the next purge: %v %v, trash %v", keys, err, trash())
		}
	})
}
