package dicomsvc_test

import (
	"context"
	"net"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/archive"
	"renkei/dicom"
	"renkei/dicomsvc"
	"renkei/dimse"
	"renkei/internal/dicomtest"
)

// Storage commitment with renkei's own SCU (dcmtk has no storage commitment SCU): the result comes back as an
// N-EVENT-REPORT on the same association, or on a new one to the requestor's registered address when the requestor
// went away.
func TestStorageCommitment(t *testing.T) {
	slow := &slowIndex{}
	e, files := queryEnv(t, func(s *dicomsvc.Service) {
		slow.Index = s.Archive.Index
		s.Archive.Index = slow
	})
	byName := map[string]dicomtest.Sample{}
	for _, s := range files {
		byName[s.Name] = s
	}
	ct, mr, cr := byName["ct-explicit-le"], byName["mr-explicit-le"], byName["cr-explicit-le"]
	if _, err := e.archive.Delete(e.ctx(), cr.StudyInstanceUID, cr.SeriesInstanceUID, cr.SOPInstanceUID); err != nil {
		t.Fatal(err)
	}
	unknown := dicomtest.UID("commit/unknown")
	refs := []dimse.SOPReference{
		{SOPClassUID: ct.SOPClassUID, SOPInstanceUID: ct.SOPInstanceUID},
		{SOPClassUID: mr.SOPClassUID, SOPInstanceUID: mr.SOPInstanceUID},
		{SOPClassUID: ct.SOPClassUID, SOPInstanceUID: unknown},
		{SOPClassUID: ct.SOPClassUID, SOPInstanceUID: mr.SOPInstanceUID}, // stored, but as MR
		{SOPClassUID: cr.SOPClassUID, SOPInstanceUID: cr.SOPInstanceUID}, // in the trash
	}
	wantOK := []string{ct.SOPInstanceUID, mr.SOPInstanceUID}
	wantFailed := map[string]uint16{unknown: 0x0112, mr.SOPInstanceUID: 0x0119, cr.SOPInstanceUID: 0x0112}

	reports := make(chan *dimse.EventReport, 4)
	onReport := func(ctx context.Context, a *dimse.Association, ev *dimse.EventReport) dimse.Status {
		reports <- ev
		return dimse.Success()
	}
	// The requestor listens too, for reports on a new association.
	scu := &dimse.Server{AETitle: "COMMITSCU", Handlers: dimse.Handlers{EventReport: onReport}, Logger: testLogger()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go scu.Serve(ln)
	t.Cleanup(func() {
		// Shutdown waits for renkei to release the association it reported on.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		scu.Shutdown(ctx)
	})
	e.register(renkei.AE{Title: "COMMITSCU", Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port})

	check := func(t *testing.T, ev *dimse.EventReport, tx string) {
		t.Helper()
		gotTx, ok, failed, err := dimse.CommitmentResult(ev)
		if err != nil || gotTx != tx || ev.EventTypeID != 2 {
			t.Fatalf("report %s, event type %d: %v", gotTx, ev.EventTypeID, err)
		}
		var gotOK []string
		for _, r := range ok {
			gotOK = append(gotOK, r.SOPInstanceUID)
		}
		sort.Strings(gotOK)
		sort.Strings(wantOK)
		if d := cmp.Diff(wantOK, gotOK); d != "" {
			t.Errorf("committed (-want +got):\n%s", d)
		}
		gotFailed := map[string]uint16{}
		for _, r := range failed {
			gotFailed[r.SOPInstanceUID] = r.FailureReason
		}
		if d := cmp.Diff(wantFailed, gotFailed); d != "" {
			t.Errorf("failed (-want +got):\n%s", d)
		}
	}
	wait := func(t *testing.T) *dimse.EventReport {
		t.Helper()
		select {
		case ev := <-reports:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no N-EVENT-REPORT")
		}
		return nil
	}
	dial := func(t *testing.T) *dimse.Association {
		d := dimse.Dialer{Handlers: dimse.Handlers{EventReport: onReport}, Logger: testLogger()}
		a, err := d.Dial(context.Background(), e.addr, "COMMITSCU", "RENKEI", []dimse.PresentationContext{
			{AbstractSyntax: dimse.StorageCommitmentPushModel, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	t.Run("same association", func(t *testing.T) {
		a := dial(t)
		defer a.Release(context.Background())
		st, err := a.RequestCommitment(context.Background(), "1.2.3.100", refs)
		if err != nil || !st.IsSuccess() {
			t.Fatalf("N-ACTION: %v %v", st, err)
		}
		check(t, wait(t), "1.2.3.100")
	})
	t.Run("new association", func(t *testing.T) {
		a := dial(t)
		slow.delay.Store(int64(300 * time.Millisecond)) // the commitment takes a while…
		defer slow.delay.Store(0)
		st, err := a.RequestCommitment(context.Background(), "1.2.3.200", refs)
		if err != nil || !st.IsSuccess() {
			t.Fatalf("N-ACTION: %v %v", st, err)
		}
		a.Abort() // …and the requestor is gone before the result: renkei calls COMMITSCU at its registered address
		check(t, wait(t), "1.2.3.200")
	})
}

// slowIndex delays instance queries, so that a storage commitment result comes after its requestor left.
type slowIndex struct {
	archive.Index
	delay atomic.Int64
}

func (s *slowIndex) QueryInstances(ctx context.Context, q *renkei.Query) ([]renkei.InstanceRecord, error) {
	time.Sleep(time.Duration(s.delay.Load()))
	return s.Index.QueryInstances(ctx, q)
}

// flakyRegistry fails every look-up once down is set, as a registry whose database went away.
type flakyRegistry struct {
	dicomsvc.AERegistry
	down atomic.Bool
}

func (f *flakyRegistry) LookupAE(ctx context.Context, title string) (renkei.AE, error) {
	if f.down.Load() {
		return renkei.AE{}, renkei.Errorf("test.LookupAE", renkei.Unavailable, "the registry is down")
	}
	return f.AERegistry.LookupAE(ctx, title)
}

// TestStorageCommitmentRegistryDown: when the AE registry cannot be read after the association was accepted, no
// instance was checked: each is reported failed with 0x0110 (processing failure), never 0x0112 (no such object),
// which would tell the modality renkei lost it.
func TestStorageCommitmentRegistryDown(t *testing.T) {
	flaky := &flakyRegistry{}
	e, files := queryEnv(t, func(s *dicomsvc.Service) {
		flaky.AERegistry = s.AEs
		s.AEs = flaky
	})
	ct := files[0]
	ctx := context.Background()
	reports := make(chan *dimse.EventReport, 1)
	d := dimse.Dialer{Handlers: dimse.Handlers{EventReport: func(ctx context.Context, a *dimse.Association, ev *dimse.EventReport) dimse.Status {
		reports <- ev
		return dimse.Success()
	}}, Logger: testLogger()}
	a, err := d.Dial(ctx, e.addr, "GOSCU", "RENKEI", []dimse.PresentationContext{
		{AbstractSyntax: dimse.StorageCommitmentPushModel, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(ctx)
	flaky.down.Store(true)
	if st, err := a.RequestCommitment(ctx, "1.2.3.300", []dimse.SOPReference{{SOPClassUID: ct.SOPClassUID, SOPInstanceUID: ct.SOPInstanceUID}}); err != nil || !st.IsSuccess() {
		t.Fatalf("N-ACTION: %v %v", st, err)
	}
	var ev *dimse.EventReport
	select {
	case ev = <-reports:
	case <-time.After(5 * time.Second):
		t.Fatal("no N-EVENT-REPORT")
	}
	_, ok, failed, err := dimse.CommitmentResult(ev)
	if err != nil || len(ok) != 0 || len(failed) != 1 || failed[0].FailureReason != 0x0110 {
		t.Errorf("committed %v, failed %+v, %v; want one failure 0x0110", ok, failed, err)
	}
}
