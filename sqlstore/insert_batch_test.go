package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/sqlstore"
)

// TestBatchedInserts sends many instances to the committer at the same moment, so that they share transactions and
// most take the batch's fast path (one INSERT for an instance of a series the batch has already seen), mixed with
// everything the full path decides: duplicates and conflicting copies in the same batch, a new series, a study UID
// reused by another patient, a patient renamed mid-batch, a copy in the trash replaced. The counters a study list
// shows must come out as if the instances had been stored one by one.
func TestBatchedInserts(t *testing.T) { eachBackendDB(t, testBatchedInserts) }

func eachBackendDB(t *testing.T, f func(t *testing.T, db *sqlstore.DB, backend string)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, openTarget(t, b.target(t)), b.name) })
	}
}

type outcomeCount struct{ stored, duplicate, conflict, failed int }

func insertAllAtOnce(t *testing.T, db *sqlstore.DB, ins []*renkei.Instance) (map[string]*outcomeCount, map[*renkei.Instance]error) {
	t.Helper()
	ctx := context.Background()
	var (
		mu    sync.Mutex
		bySOP = map[string]*outcomeCount{}
		errs  = map[*renkei.Instance]error{}
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out, _, err := db.Insert(ctx, in)
			mu.Lock()
			defer mu.Unlock()
			c := bySOP[in.SOPInstanceUID]
			if c == nil {
				c = &outcomeCount{}
				bySOP[in.SOPInstanceUID] = c
			}
			switch {
			case err == nil && out == renkei.Stored:
				c.stored++
			case err == nil && out == renkei.Duplicate:
				c.duplicate++
			case renkei.ErrorKind(err) == renkei.Conflict:
				c.conflict++
			default:
				c.failed++
				errs[in] = err
			}
		}()
	}
	close(start)
	wg.Wait()
	return bySOP, errs
}

func testBatchedInserts(t *testing.T, db *sqlstore.DB, backend string) {
	ctx := context.Background()
	// The study is P1's before the batch (in a batch sent at once, whichever patient came first would own it).
	if _, _, err := db.Insert(ctx, inst("P1", "5.1", "5.1.1", "5.1.1.0", "CT", "a0")); err != nil {
		t.Fatal(err)
	}
	var ins []*renkei.Instance
	for i := 1; i < 80; i++ {
		ins = append(ins, inst("P1", "5.1", "5.1.1", fmt.Sprint("5.1.1.", i), "CT", fmt.Sprint("a", i)))
	}
	for i := range 10 {
		ins = append(ins, inst("P1", "5.1", "5.1.1", fmt.Sprint("5.1.1.", i), "CT", fmt.Sprint("a", i))) // the same again
	}
	for i := 1; i < 10; i++ {
		ins = append(ins, inst("P1", "5.1", "5.1.1", fmt.Sprint("5.1.1.", i), "CT", fmt.Sprint("a", i))) // and again
	}
	for i := 10; i < 20; i++ {
		ins = append(ins, inst("P1", "5.1", "5.1.1", fmt.Sprint("5.1.1.", i), "CT", fmt.Sprint("b", i))) // other bytes
	}
	for i := range 6 {
		ins = append(ins, inst("P1", "5.1", "5.1.2", fmt.Sprint("5.1.2.", i), "MR", fmt.Sprint("m", i)))
	}
	for i := range 4 {
		ins = append(ins, inst("P2", "5.1", "5.1.3", fmt.Sprint("5.1.3.", i), "CT", fmt.Sprint("x", i))) // study of P1
	}
	renamed := inst("P1", "5.1", "5.1.1", "5.1.1.99", "CT", "r")
	renamed.PatientName, renamed.PatientNameKeys = "Yamada^Hanako", []string{"YAMADA^HANAKO", "YAMADAHANAKO"}
	ins = append(ins, renamed)
	// A value PostgreSQL refuses in a text column (SQLite keeps it): on PostgreSQL the statement fails, which spoils
	// the transaction; the batch must run again and fail that instance alone.
	bad := inst("P1", "5.1", "5.1.1", "5.1.1.200", "CT", "bad")
	bad.Source = "C-STORE from \x00"
	ins = append(ins, bad)

	bySOP, errs := insertAllAtOnce(t, db, ins)
	for in, err := range errs {
		if backend == "postgres" && in == bad {
			continue
		}
		t.Errorf("%s: %v", in.SOPInstanceUID, err)
	}
	if c := bySOP[bad.SOPInstanceUID]; backend == "postgres" && (c.failed != 1 || c.stored != 0) {
		t.Errorf("on PostgreSQL the instance with a NUL byte: %+v, want one failure", c)
	}
	for i := range 80 {
		sop := fmt.Sprint("5.1.1.", i)
		c := bySOP[sop]
		want := outcomeCount{stored: 1}
		switch {
		case i == 0:
			want = outcomeCount{duplicate: 1}
		case i < 10:
			want.duplicate = 2
		case i < 20:
			want.conflict = 1
		}
		if *c != want {
			t.Errorf("%s: %+v, want %+v", sop, *c, want)
		}
	}
	for i := range 4 {
		if c := bySOP[fmt.Sprint("5.1.3.", i)]; *c != (outcomeCount{conflict: 1}) {
			t.Errorf("an instance of P2 in P1's study: %+v, want a conflict", *c)
		}
	}
	wantCT := 81 // 80, and the renamed patient's
	if backend == "sqlite" {
		wantCT++ // SQLite stores the NUL byte
	}
	// The name shown is the one of the latest instance stored, which is either, in a batch sent all at once.
	check := func(when, name string, ct, mr int) {
		t.Helper()
		type row struct {
			Name          string
			Series, Insts int
			Mods          []string
		}
		var got []row
		for _, s := range studies(t, db, nil) {
			if name == "" && (s.PatientName == "Yamada^Taro" || s.PatientName == "Yamada^Hanako") {
				s.PatientName = ""
			}
			got = append(got, row{s.PatientName, s.NumberOfSeries, s.NumberOfInstances, s.ModalitiesInStudy})
		}
		if d := cmp.Diff([]row{{name, 2, ct + mr, []string{"CT", "MR"}}}, got); d != "" {
			t.Errorf("%s: studies (-want +got):\n%s", when, d)
		}
		series, err := db.QuerySeries(ctx, &renkei.Query{Level: renkei.SeriesLevel})
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		for _, s := range series {
			counts[s.SeriesInstanceUID] = s.NumberOfInstances
		}
		if d := cmp.Diff(map[string]int{"5.1.1": ct, "5.1.2": mr}, counts); d != "" {
			t.Errorf("%s: series counts (-want +got):\n%s", when, d)
		}
	}
	check("after the batch", "", wantCT, 6)

	// Trash three CT instances, then send them again (other bytes replace a trashed copy) with new ones in the same
	// batches: the counters are recounted, not double-counted.
	for _, sop := range []string{"5.1.1.30", "5.1.1.31", "5.1.1.32"} {
		if _, err := db.Trash(ctx, renkei.TrashRequest{Study: "5.1", Series: "5.1.1", Instance: sop}); err != nil {
			t.Fatal(err)
		}
	}
	check("after trashing 3", "", wantCT-3, 6)
	ins = nil
	for i := 30; i < 33; i++ {
		ins = append(ins, inst("P1", "5.1", "5.1.1", fmt.Sprint("5.1.1.", i), "CT", fmt.Sprint("again", i)))
	}
	for i := 100; i < 140; i++ {
		in := inst("P1", "5.1", "5.1.1", fmt.Sprint("5.1.1.", i), "CT", fmt.Sprint("n", i))
		in.PatientName, in.PatientNameKeys = "Yamada^Hanako", []string{"YAMADA^HANAKO", "YAMADAHANAKO"}
		ins = append(ins, in)
	}
	for _, in := range ins[:3] {
		in.PatientName, in.PatientNameKeys = "Yamada^Hanako", []string{"YAMADA^HANAKO", "YAMADAHANAKO"}
	}
	bySOP, errs = insertAllAtOnce(t, db, ins)
	for in, err := range errs {
		t.Errorf("%s: %v", in.SOPInstanceUID, err)
	}
	for sop, c := range bySOP {
		if *c != (outcomeCount{stored: 1}) {
			t.Errorf("second batch, %s: %+v", sop, *c)
		}
	}
	// Every spelling seen stays searchable.
	for _, name := range []string{"YAMADA^TARO*", "YAMADA^HANAKO*"} {
		q := &renkei.Query{Level: renkei.StudyLevel, Matches: []renkei.Match{{Keyword: "PatientName", Kind: renkei.MatchWildcard, Value: name}}}
		if got := studies(t, db, q); len(got) != 1 {
			t.Errorf("PatientName=%s finds %d studies, want 1", name, len(got))
		}
	}
	check("after the second batch", "Yamada^Hanako", wantCT+40, 6)
}
