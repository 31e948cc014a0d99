package dicomsvc_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"renkei"
	"renkei/archive"
	"renkei/dicom"
	"renkei/dicomsvc"
	"renkei/dimse"
	"renkei/internal/dicomtest"
	"renkei/internal/testclock"
)

// countingIndex counts the queries of instances the system makes (the retrieve's re-reads of the trash state; the
// retrieve's own listing runs as its AE).
type countingIndex struct {
	archive.Index
	mu     sync.Mutex
	system int
}

func (x *countingIndex) QueryInstances(ctx context.Context, q *renkei.Query) ([]renkei.InstanceRecord, error) {
	if p := renkei.PrincipalFrom(ctx); p != nil && p.Kind == renkei.SystemPrincipal {
		x.mu.Lock()
		x.system++
		x.mu.Unlock()
	}
	return x.Index.QueryInstances(ctx, q)
}

func (x *countingIndex) systemQueries() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.system
}

// storeCTStudy stores a CT study of n small instances in the clinic's archive and returns their SOP Instance UIDs
// in instance number order (the order a retrieve sends them).
func storeCTStudy(t *testing.T, e *env, seed int64, n int) (study string, uids []string) {
	t.Helper()
	for i := 1; i <= n; i++ {
		path := filepath.Join(e.dir, fmt.Sprintf("ct-%d-%d.dcm", seed, i))
		o := dicomtest.CTOptions{PatientID: "TRASH" + strconv.FormatInt(seed, 10), Seed: seed, InstanceNumber: i, Rows: 16, Cols: 16}
		if err := dicomtest.CT(path, o); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		res := e.archive.Store(e.ctx(), f, archive.StoreRequest{Source: "test", Issuer: "CLINIC_X"})
		f.Close()
		if res.Failure != 0 {
			t.Fatalf("store: %#x %v", res.Failure, res.Err)
		}
	}
	recs, err := e.archive.QueryInstances(e.ctx(), &renkei.Query{Level: renkei.InstanceLevel, NoAttrs: true,
		Matches: []renkei.Match{{Keyword: "PatientID", Kind: renkei.MatchSingle, Value: "TRASH" + strconv.FormatInt(seed, 10)}}})
	if err != nil || len(recs) != n {
		t.Fatalf("the stored study: %d instances, %v", len(recs), err)
	}
	for _, r := range recs {
		uids = append(uids, r.SOPInstanceUID)
	}
	return recs[0].Series.Study.StudyInstanceUID, uids
}

// trashingStore receives a retrieve's C-STOREs in order; on the after-th it calls trash, before answering.
type trashingStore struct {
	mu    sync.Mutex
	got   []string
	after int
	trash func()
}

func (s *trashingStore) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
	io.Copy(io.Discard, data)
	s.mu.Lock()
	s.got = append(s.got, req.SOPInstanceUID)
	n := len(s.got)
	s.mu.Unlock()
	if n == s.after && s.trash != nil {
		s.trash()
	}
	return dimse.Success()
}

func (s *trashingStore) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// TestRetrieveTrashedMeanwhile: a study, or one instance of it, is moved to the trash while a C-GET or C-MOVE sends
// it. What was sent before stays sent; what was not is not sent afterwards: each such sub-operation fails, its UID in
// the Failed SOP Instance UID List, and the retrieve ends with 0xB000 (PS3.4 C.4.2.3.1). The trash state is read
// again at most every 250 ms (the test's clock passes a second at the DELETE) or every 100 instances; the instance
// opened ahead while the DELETE ran may still go.
func TestRetrieveTrashedMeanwhile(t *testing.T) {
	clk := testclock.New(time.Now())
	e := newEnv(t, func(s *dicomsvc.Service) { s.Now = clk.Now })
	const n, after = 12, 4

	tests := []struct {
		name  string
		move  bool
		trash func(study string, uids []string) renkei.TrashRequest
		// wantSent reports whether instance i may have been sent (and then must not be in the failed list).
		sent func(i int) (must, may bool)
	}{
		{"C-GET, the study deleted", false, func(study string, _ []string) renkei.TrashRequest { return renkei.TrashRequest{Study: study} },
			func(i int) (bool, bool) { return i < after, i <= after }},
		{"C-MOVE, the study deleted", true, func(study string, _ []string) renkei.TrashRequest { return renkei.TrashRequest{Study: study} },
			func(i int) (bool, bool) { return i < after, i <= after }},
		{"C-MOVE, its last instance deleted", true, func(study string, uids []string) renkei.TrashRequest {
			return renkei.TrashRequest{Study: study, Instance: uids[n-1]}
		}, func(i int) (bool, bool) { return i < n-1, i < n-1 }},
	}
	for ti, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			study, uids := storeCTStudy(t, e, int64(7100+ti), n)
			store := &trashingStore{after: after}
			store.trash = func() {
				if _, err := e.archive.Index.Trash(e.ctx(), tc.trash(study, uids)); err != nil {
					t.Error(err)
				}
				clk.Advance(time.Second)
			}
			id := studyKeys(study)
			var res dimse.RetrieveResult
			var err error
			if tc.move {
				e.storePeer(t, renkei.AE{Title: "DEST"}, store)
				a, derr := dimse.Dial(context.Background(), e.addr, "MOVESCU", "RENKEI", []dimse.PresentationContext{
					{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
				if derr != nil {
					t.Fatal(derr)
				}
				defer a.Release(context.Background())
				res, err = a.Move(context.Background(), dimse.StudyRootQueryRetrieveInformationModelMove, "DEST", id)
			} else {
				a, derr := dimse.Dial(context.Background(), e.addr, "GETSCU", "RENKEI", []dimse.PresentationContext{
					{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}},
					{AbstractSyntax: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}, SCPRole: true}})
				if derr != nil {
					t.Fatal(derr)
				}
				defer a.Release(context.Background())
				res, err = a.Get(context.Background(), dimse.StudyRootQueryRetrieveInformationModelGet, id, store)
			}
			if err != nil {
				t.Fatal(err)
			}
			got := store.received()
			failed := map[string]bool{}
			for _, u := range res.FailedSOPInstanceUIDs {
				failed[u] = true
			}
			for i, u := range uids {
				must, may := tc.sent(i)
				sent := slices.Contains(got, u)
				switch {
				case must && !sent:
					t.Errorf("instance %d, sent before the DELETE, did not arrive", i+1)
				case !may && sent:
					t.Errorf("instance %d was sent after the DELETE", i+1)
				case sent == failed[u]:
					t.Errorf("instance %d: sent %v, in the failed list %v", i+1, sent, failed[u])
				}
			}
			so := res.SubOperations
			if res.Status.Code != dimse.StatusSubOperationsWarning || int(so.Completed) != len(got) || int(so.Failed) != n-len(got) ||
				so.Warning != 0 || so.Remaining != 0 {
				t.Errorf("final response: %v %+v, %d sent", res.Status, so, len(got))
			}
		})
	}
}

// TestRetrieveTrashRecheckIsCheap: a retrieve of 500 instances of which none is deleted re-reads their trash state
// a few times, not once per instance, and sends them all. The clock moves a millisecond at each reading (about one
// per instance), so that the retrieve lasts past the 250 ms of the listing and the re-reads come every 100
// instances: three or four of them, never more than five.
func TestRetrieveTrashRecheckIsCheap(t *testing.T) {
	clk := testclock.New(time.Now())
	e := newEnv(t, func(s *dicomsvc.Service) {
		s.Now = func() time.Time { clk.Advance(time.Millisecond); return clk.Now() }
	})
	count := &countingIndex{Index: e.archive.Index}
	e.archive.Index = count
	const n = 500
	study, _ := storeCTStudy(t, e, 7200, n)
	store := &trashingStore{}
	a, err := dimse.Dial(context.Background(), e.addr, "GETSCU", "RENKEI", []dimse.PresentationContext{
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}},
		{AbstractSyntax: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}, SCPRole: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(context.Background())
	id := studyKeys(study)
	res, err := a.Get(context.Background(), dimse.StudyRootQueryRetrieveInformationModelGet, id, store)
	if err != nil || !res.Status.IsSuccess() || res.SubOperations.Completed != n || len(store.received()) != n {
		t.Fatalf("C-GET: %v %+v %v, %d received", res.Status, res.SubOperations, err, len(store.received()))
	}
	if got := count.systemQueries(); got < 1 || got > n/100 {
		t.Errorf("%d re-reads of the trash state for %d instances, want 1 to %d", got, n, n/100)
	}
	t.Logf("%d re-reads of the trash state for %d instances", count.systemQueries(), n)
}

// TestMovescuTrashedMeanwhile is the C-MOVE of TestRetrieveTrashedMeanwhile with dcmtk's movescu as the requestor:
// it reads the final response (0xB000, its counts and the failed list) as a workstation would.
func TestMovescuTrashedMeanwhile(t *testing.T) {
	needTools(t, "movescu")
	clk := testclock.New(time.Now())
	e := newEnv(t, func(s *dicomsvc.Service) { s.Now = clk.Now })
	const n, after = 12, 4
	study, _ := storeCTStudy(t, e, 7300, n)
	store := &trashingStore{after: after}
	store.trash = func() {
		if _, err := e.archive.Index.Trash(e.ctx(), renkei.TrashRequest{Study: study}); err != nil {
			t.Error(err)
		}
		clk.Advance(time.Second)
	}
	e.storePeer(t, renkei.AE{Title: "DEST"}, store)
	// movescu exits with 68 on a final warning status.
	out, _ := runErr("movescu", "-v", "-S", "-aec", "RENKEI", "-aem", "DEST", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study, e.host, e.port)
	if !strings.Contains(out, "Received Final Move Response (Warning: SubOperationsCompleteOneOrMoreFailures)") {
		t.Errorf("movescu did not read 0xB000 as the final status:\n%s", out)
	}
	if got := len(store.received()); got < after || got > after+1 {
		t.Errorf("%d of %d instances sent, the study deleted at the %dth", got, n, after)
	}
}
