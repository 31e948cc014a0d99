package sqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"renkei"
)

// TestBatchFastPath hands the committer's batch function one batch of known content (the committer goroutine is
// idle: nothing else inserts), so that what takes the fast path is certain rather than left to scheduling.
func TestBatchFastPath(t *testing.T) {
	eachInternalDB(t, func(t *testing.T, db *DB) {
		mk := func(sop, source string) *insertReq {
			return &insertReq{res: make(chan insertRes, 1), inst: &renkei.Instance{
				Patient: renkei.PatientKey{Issuer: "HOSP", ID: "P1"}, PatientName: "Yamada^Taro", PatientNameKeys: []string{"YAMADA^TARO"},
				StudyInstanceUID: "7.1", StudyDate: "20240105", SeriesInstanceUID: "7.1.1", Modality: "CT",
				SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1",
				BlobKey: "k" + sop, Size: 10, ReceivedAt: time.Now(), Source: source,
				Audit: &renkei.AuditEvent{Actor: "test", ActorKind: renkei.TokenPrincipal, Action: renkei.ActionStore, Study: "7.1"},
			}}
		}
		run := func(batch []*insertReq) []insertRes {
			db.commitBatch(batch)
			var out []insertRes
			for _, r := range batch {
				out = append(out, <-r.res)
			}
			return out
		}

		// A clean batch of 20 instances of one series: the first goes the full way, the rest are one INSERT
		// each. On PostgreSQL that is what the round trips show.
		var batch []*insertReq
		for i := range 20 {
			batch = append(batch, mk(fmt.Sprint("7.1.1.", i), "STOW-RS"))
		}
		before := db.RoundTrips()
		for i, r := range run(batch) {
			if r.err != nil || r.outcome != renkei.Stored {
				t.Fatalf("instance %d: %v %v", i, r.outcome, r.err)
			}
		}
		if db.dialect == postgres {
			// BEGIN+COMMIT 2, the first instance ~10, 19 INSERTs, 2 counters, audit lock, head and one insert.
			if trips := db.RoundTrips() - before; trips > 40 {
				t.Errorf("a batch of 20 instances of one series took %d round trips, want at most 40 (the fast path was not taken)", trips)
			}
		}

		// A batch whose fast path fails on PostgreSQL (a NUL byte, which its text columns refuse): the batch runs
		// again behind savepoints, and only that instance fails.
		batch = []*insertReq{mk("7.1.1.100", "STOW-RS"), mk("7.1.1.101", "bad \x00"), mk("7.1.1.102", "STOW-RS"), mk("7.1.1.5", "STOW-RS")}
		res := run(batch)
		for i, r := range res {
			wantErr := db.dialect == postgres && i == 1
			switch {
			case wantErr && r.err == nil:
				t.Errorf("instance %d with a NUL byte was stored on PostgreSQL", i)
			case !wantErr && r.err != nil:
				t.Errorf("instance %d: %v", i, r.err)
			}
		}
		if res[3].outcome != renkei.Duplicate {
			t.Errorf("an instance of the first batch sent again: %v, want a duplicate", res[3].outcome)
		}
		recs, err := db.QueryStudies(context.Background(), &renkei.Query{Level: renkei.StudyLevel})
		if err != nil {
			t.Fatal(err)
		}
		want := 23
		if db.dialect == postgres {
			want = 22
		}
		if len(recs) != 1 || recs[0].NumberOfInstances != want {
			t.Errorf("studies %+v, want one of %d instances", recs, want)
		}

		// The next batch of the same series goes the fast way from its first instance: the rows are remembered
		// from the earlier batches and checked by the INSERT itself.
		batch = nil
		for i := 200; i < 220; i++ {
			batch = append(batch, mk(fmt.Sprint("7.1.1.", i), "STOW-RS"))
		}
		before = db.RoundTrips()
		for i, r := range run(batch) {
			if r.err != nil || r.outcome != renkei.Stored {
				t.Fatalf("third batch, instance %d: %v %v", i, r.outcome, r.err)
			}
		}
		if db.dialect == postgres {
			// BEGIN+COMMIT 2, 20 INSERTs, 2 counters, audit lock, head and one insert.
			if trips := db.RoundTrips() - before; trips > 28 {
				t.Errorf("a batch of 20 instances of a remembered series took %d round trips, want at most 28", trips)
			}
		}
		// The remembered rows change behind the cache's back (the study goes to the trash): the INSERT's check
		// fails, the full path runs, and the study comes back with only what is live.
		if _, err := db.Trash(context.Background(), renkei.TrashRequest{Study: "7.1"}); err != nil {
			t.Fatal(err)
		}
		for i, r := range run([]*insertReq{mk("7.1.1.300", "STOW-RS"), mk("7.1.1.301", "STOW-RS")}) {
			if r.err != nil || r.outcome != renkei.Stored {
				t.Fatalf("after the trash, instance %d: %v %v", i, r.outcome, r.err)
			}
		}
		recs, err = db.QueryStudies(context.Background(), &renkei.Query{Level: renkei.StudyLevel})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].NumberOfInstances != 2 {
			t.Errorf("after trashing the study and sending 2 more: %+v, want one study of 2 instances", recs)
		}
		if _, err := db.VerifyAudit(context.Background(), nil); err != nil {
			t.Errorf("audit chain: %v", err)
		}
	})
}
