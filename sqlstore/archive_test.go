package sqlstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/sqlstore"
)

func openDB(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func inst(patient, study, series, sop, modality, key string) *renkei.Instance {
	return &renkei.Instance{
		Patient: renkei.PatientKey{Issuer: "HOSP", ID: patient}, PatientName: "Yamada^Taro", PatientNameKeys: []string{"YAMADA^TARO", "YAMADATARO"},
		StudyInstanceUID: study, StudyDate: "20240105", SeriesInstanceUID: series, Modality: modality,
		SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1",
		BlobKey: key, Size: 10, ReceivedAt: time.Now(),
	}
}

func studies(t *testing.T, db *sqlstore.DB, q *renkei.Query) []renkei.StudyRecord {
	t.Helper()
	if q == nil {
		q = &renkei.Query{Level: renkei.StudyLevel}
	}
	recs, err := db.QueryStudies(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestInsertOutcomes(t *testing.T) { eachDB(t, testInsertOutcomes) }

func testInsertOutcomes(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	steps := []struct {
		name    string
		in      *renkei.Instance
		outcome renkei.StoreOutcome
		kind    renkei.Kind // of the error; -1 for none
	}{
		{"new instance", inst("P1", "1.1", "1.1.1", "1.1.1.1", "CT", "k1"), renkei.Stored, -1},
		{"same bytes again is a duplicate", inst("P1", "1.1", "1.1.1", "1.1.1.1", "CT", "k1"), renkei.Duplicate, -1},
		{"same UID, other bytes is refused", inst("P1", "1.1", "1.1.1", "1.1.1.1", "CT", "k2"), 0, renkei.Conflict},
		{"second series", inst("P1", "1.1", "1.1.2", "1.1.2.1", "MR", "k3"), renkei.Stored, -1},
		{"study UID reused for another patient is refused", inst("P2", "1.1", "1.1.3", "1.1.3.1", "CT", "k4"), 0, renkei.Conflict},
		{"series UID reused in another study is refused", inst("P1", "1.2", "1.1.1", "1.2.1.1", "CT", "k5"), 0, renkei.Conflict},
		{"same PatientID, other issuer, is another patient", func() *renkei.Instance {
			i := inst("P1", "1.3", "1.3.1", "1.3.1.1", "CT", "k6")
			i.Patient.Issuer = "CLINIC"
			return i
		}(), renkei.Stored, -1},
	}
	for _, s := range steps {
		outcome, _, err := db.Insert(ctx, s.in)
		if s.kind >= 0 {
			if err == nil || renkei.ErrorKind(err) != s.kind {
				t.Errorf("%s: error %v, want kind %v", s.name, err, s.kind)
			}
			continue
		}
		if err != nil || outcome != s.outcome {
			t.Errorf("%s: outcome %v, err %v; want %v", s.name, outcome, err, s.outcome)
		}
	}
	got := studies(t, db, nil)
	type row struct {
		Study, Issuer string
		Series, Inst  int
		Mods          []string
	}
	var rows []row
	for _, s := range got {
		rows = append(rows, row{s.StudyInstanceUID, s.Patient.Issuer, s.NumberOfSeries, s.NumberOfInstances, s.ModalitiesInStudy})
	}
	want := []row{{"1.3", "CLINIC", 1, 1, []string{"CT"}}, {"1.1", "HOSP", 2, 2, []string{"CT", "MR"}}}
	if d := cmp.Diff(want, rows); d != "" {
		t.Errorf("studies (-want +got):\n%s", d)
	}
}

// TestConcurrentInserts checks group commit: many writers at once all succeed and all are counted.
func TestConcurrentInserts(t *testing.T) { eachDB(t, testConcurrentInserts) }

func testConcurrentInserts(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				in := inst("P1", "1.9", fmt.Sprintf("1.9.%d", w), fmt.Sprintf("1.9.%d.%d", w, i), "CT", fmt.Sprintf("k%d-%d", w, i))
				if _, _, err := db.Insert(ctx, in); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := studies(t, db, nil)
	if len(got) != 1 || got[0].NumberOfSeries != 8 || got[0].NumberOfInstances != 400 {
		t.Fatalf("after 400 concurrent inserts: %+v", got)
	}
}

func TestTrashRestorePurge(t *testing.T) { eachDB(t, testTrashRestorePurge) }

func testTrashRestorePurge(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db.Now = func() time.Time { return now }
	for _, in := range []*renkei.Instance{
		inst("P1", "2.1", "2.1.1", "2.1.1.1", "CT", "shared"),
		inst("P1", "2.1", "2.1.1", "2.1.1.2", "CT", "k2"),
		inst("P1", "2.1", "2.1.2", "2.1.2.1", "MR", "k3"),
		inst("P1", "2.2", "2.2.1", "2.2.1.1", "CT", "shared"), // same bytes under another instance (test only)
	} {
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	count := func() map[string][2]int {
		m := map[string][2]int{}
		for _, s := range studies(t, db, nil) {
			m[s.StudyInstanceUID] = [2]int{s.NumberOfSeries, s.NumberOfInstances}
		}
		return m
	}
	if n, err := db.Trash(ctx, renkei.TrashRequest{Study: "2.1", Series: "2.1.2", Instance: "", Restore: false}); err != nil || n != 1 {
		t.Fatalf("trash series: %d %v", n, err)
	}
	if d := cmp.Diff(map[string][2]int{"2.1": {1, 2}, "2.2": {1, 1}}, count()); d != "" {
		t.Errorf("after trashing a series (-want +got):\n%s", d)
	}
	if _, err := db.Trash(ctx, renkei.TrashRequest{Study: "2.1", Series: "", Instance: "", Restore: false}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string][2]int{"2.2": {1, 1}}, count()); d != "" {
		t.Errorf("after trashing the study (-want +got):\n%s", d)
	}
	if inTrash := studies(t, db, &renkei.Query{Level: renkei.StudyLevel, Deleted: true}); len(inTrash) != 1 || inTrash[0].StudyInstanceUID != "2.1" {
		t.Errorf("trash lists %+v", inTrash)
	}
	if _, err := db.Trash(ctx, renkei.TrashRequest{Study: "2.1", Series: "2.1.2", Instance: "", Restore: true}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string][2]int{"2.1": {1, 1}, "2.2": {1, 1}}, count()); d != "" {
		t.Errorf("after restoring one series (-want +got):\n%s", d)
	}
	if _, err := db.Trash(ctx, renkei.TrashRequest{Study: "9.9", Series: "", Instance: "", Restore: false}); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("trashing an unknown study: %v, want NotFound", err)
	}
	// Purge: only what was trashed before the cutoff goes; a blob still used elsewhere is not returned.
	keys, err := db.Purge(ctx, now.Add(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"k2"}, keys); d != "" {
		t.Errorf("purged blobs (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string][2]int{"2.1": {1, 1}, "2.2": {1, 1}}, count()); d != "" {
		t.Errorf("after purge (-want +got):\n%s", d)
	}
	// A purged instance can be stored again as new.
	if out, _, err := db.Insert(ctx, inst("P1", "2.1", "2.1.1", "2.1.1.2", "CT", "k2b")); err != nil || out != renkei.Stored {
		t.Errorf("store after purge: %v %v", out, err)
	}
}

func TestReopenKeepsData(t *testing.T) { eachBackend(t, testReopenKeepsData) }

func testReopenKeepsData(t *testing.T, path string) {
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Insert(ctx, inst("P1", "3.1", "3.1.1", "3.1.1.1", "CT", "k")); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = sqlstore.Open(ctx, path) // migrations already applied: must not fail or duplicate
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := studies(t, db, nil); len(got) != 1 {
		t.Fatalf("after reopen: %d studies", len(got))
	}
}

// TestEverySpellingStaysSearchable: a patient whose later images carry the name only in kana is still found by the
// romaji of earlier ones, and shown by the latest name.
func TestEverySpellingStaysSearchable(t *testing.T) { eachDB(t, testEverySpellingStaysSearchable) }

func testEverySpellingStaysSearchable(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	a := inst("P1", "4.1", "4.1.1", "4.1.1.1", "CT", "k1")
	a.PatientName, a.PatientNameKeys = "Yamada^Taro", []string{"YAMADA^TARO", "YAMADATARO"}
	b := inst("P1", "4.2", "4.2.1", "4.2.1.1", "CT", "k2")
	b.PatientName, b.PatientNameKeys = "ﾔﾏﾀﾞ^ﾀﾛｳ", []string{"ヤマダ^タロウ", "ヤマダタロウ"}
	for _, in := range []*renkei.Instance{a, b} {
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{"YAMADA*", "ヤマダ*"} {
		got := studies(t, db, &renkei.Query{Level: renkei.StudyLevel, Matches: []renkei.Match{{Keyword: "PatientName", Kind: renkei.MatchWildcard, Value: key}}})
		if len(got) != 2 {
			t.Errorf("PatientName=%s finds %d studies, want both", key, len(got))
		}
		for _, s := range got {
			if s.PatientName != "ﾔﾏﾀﾞ^ﾀﾛｳ" {
				t.Errorf("shown name %q, want the latest", s.PatientName)
			}
		}
	}
}

// TestPurgeShared purges studies that were shared, whole patient or one by one: the purge must not be held back
// by the shares (it once failed on their foreign keys, and the trash was then never emptied), the shares stay
// (listed without the purged study), and a patient with a share or a consent stays while one with nothing left goes.
func TestPurgeShared(t *testing.T) { eachDB(t, testPurgeShared) }

func testPurgeShared(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db.Now = func() time.Time { return now }
	var pks []int64
	for _, id := range []string{"hosp", "clinic"} {
		in := &renkei.Institution{ID: id, Name: id, Kind: renkei.Hospital, Issuer: strings.ToUpper(id)}
		if err := db.PutInstitution(ctx, in, nil); err != nil {
			t.Fatal(err)
		}
		pks = append(pks, in.PK)
	}
	for _, in := range []*renkei.Instance{
		inst("P1", "4.1", "4.1.1", "4.1.1.1", "CT", "ka"), // shared alone, then purged
		inst("P1", "4.2", "4.2.1", "4.2.1.1", "CT", "kb"), // shared with it, kept
		inst("P2", "4.3", "4.3.1", "4.3.1.1", "CT", "kc"), // P2's only study, P2 shared whole, purged
		inst("P3", "4.4", "4.4.1", "4.4.1.1", "CT", "kd"), // P3's only study, nothing else about P3, purged
	} {
		in.Institution = pks[0]
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	share := func(patient string, studies ...string) int64 {
		sh := &renkei.Share{FromInstitution: pks[0], Patient: renkei.PatientKey{Issuer: "HOSP", ID: patient}, ToInstitution: pks[1],
			Purpose: renkei.PurposeReferral, ExpiresAt: now.Add(24 * time.Hour), WithoutConsent: true, Studies: studies}
		if err := db.CreateShare(ctx, sh, nil); err != nil {
			t.Fatal(err)
		}
		return sh.ID
	}
	chosen := share("P1", "4.1", "4.2")
	share("P2")
	for _, uid := range []string{"4.1", "4.3", "4.4"} {
		if _, err := db.Trash(ctx, renkei.TrashRequest{Study: uid}); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := db.Purge(ctx, now.Add(time.Millisecond))
	if err != nil {
		t.Fatalf("purge of shared studies: %v", err)
	}
	slices.Sort(keys)
	if d := cmp.Diff([]string{"ka", "kc", "kd"}, keys); d != "" {
		t.Errorf("purged blobs (-want +got):\n%s", d)
	}
	got, err := db.Shares(ctx, renkei.ShareFilter{ID: chosen})
	if err != nil || len(got) != 1 || !slices.Equal(got[0].Studies, []string{"4.2"}) {
		t.Errorf("the share of chosen studies after the purge: %+v %v, want it with 4.2 only", got, err)
	}
	// P2 (shared) stays a patient the hospital holds: a new study of P2 joins the same patient, and the share.
	if err := db.CreateShare(ctx, &renkei.Share{FromInstitution: pks[0], Patient: renkei.PatientKey{Issuer: "HOSP", ID: "P2"}, ToInstitution: pks[1],
		Purpose: renkei.PurposeReferral, ExpiresAt: now.Add(time.Hour), WithoutConsent: true}, nil); err != nil {
		t.Errorf("sharing P2 after its images were purged: %v", err)
	}
	// P3 had nothing else: gone, so a share of P3 finds no patient.
	err = db.CreateShare(ctx, &renkei.Share{FromInstitution: pks[0], Patient: renkei.PatientKey{Issuer: "HOSP", ID: "P3"}, ToInstitution: pks[1],
		Purpose: renkei.PurposeReferral, ExpiresAt: now.Add(time.Hour), WithoutConsent: true}, nil)
	if renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("sharing P3 after its only study was purged: %v, want NotFound (the patient row is gone)", err)
	}
}

// TestSeriesBackFromTrash stores a new instance into a series that is in the trash while its study is not: the
// series comes back, and the study counts it again (its series and its modality), as a restore would. The counters
// once only added the instance, and the study showed one series and no MR though two series were live.
func TestSeriesBackFromTrash(t *testing.T) { eachDB(t, testSeriesBackFromTrash) }

func testSeriesBackFromTrash(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	for _, in := range []*renkei.Instance{
		inst("P1", "5.1", "5.1.1", "5.1.1.1", "CT", "k1"),
		inst("P1", "5.1", "5.1.2", "5.1.2.1", "MR", "k2"),
	} {
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Trash(ctx, renkei.TrashRequest{Study: "5.1", Series: "5.1.2"}); err != nil {
		t.Fatal(err)
	}
	if out, _, err := db.Insert(ctx, inst("P1", "5.1", "5.1.2", "5.1.2.2", "MR", "k3")); err != nil || out != renkei.Stored {
		t.Fatalf("store into a trashed series: %v %v", out, err)
	}
	got := studies(t, db, nil)
	if len(got) != 1 {
		t.Fatalf("%d studies", len(got))
	}
	type counts struct {
		Series, Instances int
		Modalities        []string
	}
	if d := cmp.Diff(counts{2, 2, []string{"CT", "MR"}}, counts{got[0].NumberOfSeries, got[0].NumberOfInstances, got[0].ModalitiesInStudy}); d != "" {
		t.Errorf("the study after a new instance of its trashed series (-want +got):\n%s", d)
	}
}

// TestPurgeNow removes a study wholly in the trash at once (TrashRequest.Purge): not a live study, not one with a
// live series, not another institution's; the study's UID is then free for a corrected copy of another patient.
func TestPurgeNow(t *testing.T) { eachDB(t, testPurgeNow) }

func testPurgeNow(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	for _, in := range []*renkei.Instance{
		inst("P1", "5.1", "5.1.1", "5.1.1.1", "CT", "pa"), inst("P1", "5.1", "5.1.2", "5.1.2.1", "CT", "pb"),
		inst("P1", "5.2", "5.2.1", "5.2.1.1", "CT", "pc"),
	} {
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	purge := func(study string, scope *renkei.Scope) (int, error) {
		return db.Trash(ctx, renkei.TrashRequest{Study: study, Purge: true, Scope: scope})
	}
	if _, err := purge("5.1", nil); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("purging a live study: %v, want NotFound", err)
	}
	if _, err := db.Trash(ctx, renkei.TrashRequest{Study: "5.1", Series: "5.1.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := purge("5.1", nil); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("purging a study with a live series: %v, want NotFound", err)
	}
	if _, err := db.Trash(ctx, renkei.TrashRequest{Study: "5.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := purge("5.1", &renkei.Scope{Institutions: []int64{999}, OwnOnly: true}); renkei.ErrorKind(err) != renkei.NotFound {
		t.Errorf("purging another institution's study: %v, want NotFound", err)
	}
	if n, err := purge("5.1", nil); err != nil || n != 2 {
		t.Fatalf("purge now: %d %v, want 2 instances", n, err)
	}
	if got := studies(t, db, &renkei.Query{Level: renkei.StudyLevel, Deleted: true}); len(got) != 0 {
		t.Errorf("the trash still lists %+v", got)
	}
	// The UID is free: the corrected study, of another patient, is stored.
	if out, _, err := db.Insert(ctx, inst("P9", "5.1", "5.1.1", "5.1.1.1", "CT", "pa2")); err != nil || out != renkei.Stored {
		t.Errorf("the corrected study after the purge: %v %v", out, err)
	}
}

// TestNestedUnmerge undoes nested merges one by one, the last first: C's regional patient merged into B's, then B's
// into A's; undoing B's merge brings back B with C's patients still merged into it, and C's merge can then be undone
// too (the links once kept only the last merge, and C's was lost).
func TestNestedUnmerge(t *testing.T) { eachDB(t, testNestedUnmerge) }

func testNestedUnmerge(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	in := &renkei.Institution{ID: "hosp", Name: "hosp", Kind: renkei.Hospital, Issuer: "HOSP"}
	if err := db.PutInstitution(ctx, in, nil); err != nil {
		t.Fatal(err)
	}
	pk := map[string]int64{}
	for i, id := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
		x := inst(id, fmt.Sprintf("6.%d", i), fmt.Sprintf("6.%d.1", i), fmt.Sprintf("6.%d.1.1", i), "CT", "n"+id)
		x.Institution = in.PK
		if _, _, err := db.Insert(ctx, x); err != nil {
			t.Fatal(err)
		}
		key := renkei.PatientKey{Issuer: "HOSP", ID: id}
		if err := db.AddConsent(ctx, &renkei.Consent{Institution: in.PK, Patient: key, Scope: renkei.ConsentScopeRegion, GivenAt: time.Now(), Method: "paper"}, nil); err != nil {
			t.Fatal(err)
		}
		lp, err := db.LocalPatient(ctx, in.PK, key)
		if err != nil {
			t.Fatal(err)
		}
		pk[id] = lp.PK
	}
	link := func(a, b string) int64 {
		t.Helper()
		r, err := db.Link(ctx, pk[a], pk[b], "test", nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	members := func(regional int64) []string {
		t.Helper()
		list, err := db.RegionalPatient(ctx, regional)
		if err != nil && renkei.ErrorKind(err) != renkei.NotFound {
			t.Fatal(err)
		}
		var ids []string
		for _, lp := range list {
			ids = append(ids, lp.Key.ID)
		}
		slices.Sort(ids)
		return ids
	}
	a, b, c := link("p1", "p2"), link("p3", "p4"), link("p5", "p6")
	if link("p3", "p5") != b || link("p1", "p3") != a { // C into B, then B into A
		t.Fatal("the merges did not keep the first patient's regional number")
	}
	if got := members(a); len(got) != 6 {
		t.Fatalf("after both merges A holds %v", got)
	}
	if n, err := db.Unmerge(ctx, a, b, nil); err != nil || n != 4 {
		t.Fatalf("undo B's merge into A: %d %v, want B's 4 patients back (C's two with them)", n, err)
	}
	if got, want := members(b), []string{"p3", "p4", "p5", "p6"}; !slices.Equal(got, want) {
		t.Errorf("B after its merge is undone: %v, want %v", got, want)
	}
	if n, err := db.Unmerge(ctx, b, c, nil); err != nil || n != 2 {
		t.Fatalf("then undo C's merge into B: %d %v, want 2", n, err)
	}
	for r, want := range map[int64][]string{a: {"p1", "p2"}, b: {"p3", "p4"}, c: {"p5", "p6"}} {
		if got := members(r); !slices.Equal(got, want) {
			t.Errorf("regional patient %d holds %v, want %v", r, got, want)
		}
	}
}

// TestWriteAfterClose: a write that arrives while the server shuts down (a consult socket's goroutine auditing a
// chat line after the index closed) gets an error, not a panic that takes the process down; Close twice is harmless.
func TestWriteAfterClose(t *testing.T) {
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Audit(context.Background(), &renkei.AuditEvent{Actor: "late", Action: renkei.ActionRead}); renkei.ErrorKind(err) != renkei.Unavailable {
		t.Errorf("audit after Close: %v, want Unavailable", err)
	}
	if _, _, err := db.Insert(context.Background(), inst("P1", "7.1", "7.1.1", "7.1.1.1", "CT", "k")); renkei.ErrorKind(err) != renkei.Unavailable {
		t.Errorf("insert after Close: %v, want Unavailable", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}
