package dimse_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"renkei/dicom"
	"renkei/dimse"
)

// instancesOf offers samples for retrieval; they are sent as stored only (the archive's transcoding is not here).
func instancesOf(ss ...sample) []dimse.Instance {
	var out []dimse.Instance
	for _, s := range ss {
		out = append(out, dimse.Instance{SOPClassUID: s.sopClass, SOPInstanceUID: s.sopInstance, TransferSyntaxUID: s.ts,
			Open: func(ctx context.Context, ts string) (io.ReadCloser, error) {
				if ts != s.ts {
					return nil, fmt.Errorf("cannot transcode %s to %s here", s.ts, ts)
				}
				return io.NopCloser(bytes.NewReader(s.dataSet)), nil
			}})
	}
	return out
}

// retrieveAll answers every C-MOVE/C-GET with the given instances, after checking the identifier's level.
func retrieveAll(instances []dimse.Instance) dimse.RetrieveFunc {
	return func(ctx context.Context, a *dimse.Association, req *dimse.RetrieveRequest) ([]dimse.Instance, dimse.Status) {
		if req.Identifier.String(0x00080052) == "" {
			return nil, dimse.Failure(dimse.StatusDataSetDoesNotMatchSOPClass, "no QueryRetrieveLevel")
		}
		return instances, dimse.Success()
	}
}

func destinations(m map[string]string) func(context.Context, *dimse.Association, string) (string, bool) {
	return func(_ context.Context, _ *dimse.Association, ae string) (string, bool) {
		addr, ok := m[ae]
		return addr, ok
	}
}

func TestDcmtkMovescu(t *testing.T) {
	needTools(t, "movescu")
	files := samples(t)
	names := []string{"explicit1", "explicit2", "jpeg-lossless", "rle"}
	var ss []sample
	for _, n := range names {
		ss = append(ss, files[n])
	}
	scpAddr, dir := startStorescp(t, "STORESCP", "+xa")
	addr := serve(t, &dimse.Server{AETitle: "RENKEI", Handlers: dimse.Handlers{Move: retrieveAll(instancesOf(ss...)),
		MoveDestination: destinations(map[string]string{"STORESCP": scpAddr})}})
	h, p := hostPort(t, addr)
	out := run(t, "movescu", "-v", "-S", "-aet", "MOVESCU", "-aec", "RENKEI", "-aem", "STORESCP",
		"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3", h, p)
	if !strings.Contains(out, "Final Move Response (Success)") {
		t.Errorf("movescu output:\n%s", out)
	}
	got := received(t, dir)
	for _, s := range ss {
		r, ok := got[s.sopInstance]
		if !ok || r.ts != s.ts || !bytes.Equal(r.dataSet, s.dataSet) {
			t.Errorf("%s: received %v in %s, %d bytes; want %s, %d bytes", filepath.Base(s.path), ok, r.ts, len(r.dataSet), s.ts, len(s.dataSet))
		}
	}
	// An unregistered destination: 0xA801 (PS3.4 C.4.2.1.5).
	out, _ = runErr("movescu", "-v", "-S", "-aec", "RENKEI", "-aem", "NOWHERE", "-k", "QueryRetrieveLevel=STUDY", h, p)
	if !strings.Contains(out, "MoveDestinationUnknown") {
		t.Errorf("move to an unknown AE:\n%s", out)
	}
}

func TestDcmtkGetscu(t *testing.T) {
	needTools(t, "getscu")
	files := samples(t)
	ss := []sample{files["explicit1"], files["explicit2"], files["explicit3"]}
	addr := serve(t, &dimse.Server{AETitle: "RENKEI", Handlers: dimse.Handlers{Get: retrieveAll(instancesOf(ss...))}})
	h, p := hostPort(t, addr)
	dir := t.TempDir()
	out := run(t, "getscu", "-v", "-S", "-aec", "RENKEI", "-od", dir, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3", h, p)
	got := received(t, dir)
	for _, s := range ss {
		r, ok := got[s.sopInstance]
		if !ok || !bytes.Equal(r.dataSet, s.dataSet) {
			t.Errorf("%s not received intact (%v)\n%s", filepath.Base(s.path), ok, out)
		}
	}
}

// C-MOVE and C-GET between this package's client and server, with C-CANCEL.
func TestClientMoveGet(t *testing.T) {
	files := samples(t)
	ss := []sample{files["explicit1"], files["explicit2"], files["jpeg-lossless"], files["implicit"]}
	dest := newMemStore()
	destAddr := serve(t, &dimse.Server{AETitle: "DEST", Handlers: dimse.Handlers{Store: dest}})
	instances := instancesOf(ss...)
	addr := serve(t, &dimse.Server{AETitle: "RENKEI", Handlers: dimse.Handlers{
		Move: retrieveAll(instances), Get: retrieveAll(instances),
		MoveDestination: destinations(map[string]string{"DEST": destAddr}),
	}})
	pcs := []dimse.PresentationContext{
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: explicitLE()},
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: explicitLE()},
	}
	for _, s := range ss {
		pcs = append(pcs, dimse.PresentationContext{AbstractSyntax: s.sopClass, TransferSyntaxes: []string{s.ts}, SCPRole: true})
	}
	a := dial(t, addr, pcs...)
	defer a.Release(context.Background())
	q := &dicom.DataSet{}
	q.SetString(0x00080052, "CS", "STUDY")
	q.SetString(dicom.StudyInstanceUID, "UI", "1.2.3")
	res, err := a.Move(context.Background(), dimse.StudyRootQueryRetrieveInformationModelMove, "DEST", q)
	if err != nil || res.SubOperations.Completed != 4 || res.SubOperations.Failed != 0 {
		t.Fatalf("move: %+v %v", res, err)
	}
	for _, s := range ss {
		if !bytes.Equal(dest.get(s.sopInstance), s.dataSet) || dest.syntax(s.sopInstance) != s.ts {
			t.Errorf("move: %s not received as stored", filepath.Base(s.path))
		}
	}
	res, err = a.Move(context.Background(), dimse.StudyRootQueryRetrieveInformationModelMove, "NOWHERE", q)
	var se *dimse.StatusError
	if !errors.As(err, &se) || res.Status.Code != dimse.StatusMoveDestinationUnknown {
		t.Errorf("move to NOWHERE: %+v %v", res, err)
	}

	got := newMemStore()
	res, err = a.Get(context.Background(), dimse.StudyRootQueryRetrieveInformationModelGet, q, got)
	if err != nil || res.SubOperations.Completed != 4 {
		t.Fatalf("get: %+v %v", res, err)
	}
	for _, s := range ss {
		if !bytes.Equal(got.get(s.sopInstance), s.dataSet) {
			t.Errorf("get: %s not received", filepath.Base(s.path))
		}
	}
	// A store that fails every sub-operation: 0xA702 and the failed UIDs.
	got.fail(dimse.Failure(dimse.StatusOutOfResources, "full"))
	res, err = a.Get(context.Background(), dimse.StudyRootQueryRetrieveInformationModelGet, q, got)
	if !errors.As(err, &se) || res.Status.Code != dimse.StatusOutOfResourcesSubOps || res.SubOperations.Failed != 4 ||
		len(res.FailedSOPInstanceUIDs) != 4 {
		t.Errorf("failing get: %+v %v", res, err)
	}
	// Cancel during a C-GET: the store handler cancels the context after the first instance.
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	res, err = a.Get(ctx, dimse.StudyRootQueryRetrieveInformationModelGet, q, dimse.StoreFunc(
		func(_ context.Context, _ *dimse.Association, _ *dimse.StoreRequest, data io.Reader) dimse.Status {
			io.Copy(io.Discard, data)
			if n++; n == 1 {
				cancel()
				time.Sleep(50 * time.Millisecond)
			}
			return dimse.Success()
		}))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled get: %+v %v", res, err)
	}
	if st, err := a.Move(context.Background(), dimse.StudyRootQueryRetrieveInformationModelMove, "DEST", q); err != nil {
		t.Errorf("association unusable after a cancel: %v %v", st, err)
	}
}

// renkei as SCU against dcmtk's dcmqrscp: C-FIND, C-MOVE (to a Server of ours) and C-GET.
func TestClientAgainstDcmqrscp(t *testing.T) {
	needTools(t, "dcmqrscp", "dcmqridx")
	files := samples(t)
	ss := []sample{files["explicit1"], files["explicit2"], files["explicit3"]}
	dest := newMemStore()
	destAddr := serve(t, &dimse.Server{AETitle: "RENKEIDEST", Handlers: dimse.Handlers{Store: dest}})
	_, destPort := hostPort(t, destAddr)

	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	os.Mkdir(db, 0o755)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	cfg := fmt.Sprintf(`NetworkTCPPort  = %s
MaxPDUSize      = 16384
MaxAssociations = 16
HostTable BEGIN
renkei     = (RENKEI, 127.0.0.1, 0)
renkeidest = (RENKEIDEST, 127.0.0.1, %s)
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
DCMQRSCP %s RW (200, 1024mb) ANY
AETable END
`, port, destPort, db)
	cfgPath := filepath.Join(dir, "dcmqrscp.cfg")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	for _, s := range ss {
		dst := filepath.Join(db, filepath.Base(s.path))
		os.WriteFile(dst, mustRead(t, s.path), 0o644)
		run(t, "dcmqridx", db, dst)
	}
	cmd := exec.Command("dcmqrscp", "-c", cfgPath, "--disable-host-lookup")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dcmqrscp:\n%s", out.String())
		}
	})
	addr := "127.0.0.1:" + port
	var a *dimse.Association
	pcs := []dimse.PresentationContext{
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: explicitLE()},
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: explicitLE()},
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: explicitLE()},
		{AbstractSyntax: ctStorage, TransferSyntaxes: explicitLE(), SCPRole: true},
	}
	for i := 0; ; i++ {
		var err error
		a, err = dimse.Dial(context.Background(), addr, "RENKEI", "DCMQRSCP", pcs)
		if err == nil {
			break
		}
		if i == 50 {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer a.Release(context.Background())
	ctx := context.Background()
	q := &dicom.DataSet{}
	q.SetString(0x00080052, "CS", "STUDY")
	q.SetString(dicom.StudyInstanceUID, "UI", "")
	q.SetString(dicom.PatientID, "LO", "")
	var studies []string
	for ds, err := range a.Find(ctx, dimse.StudyRootQueryRetrieveInformationModelFind, q) {
		if err != nil {
			t.Fatal(err)
		}
		studies = append(studies, ds.String(dicom.StudyInstanceUID))
	}
	if len(studies) != 1 {
		t.Fatalf("found studies %v", studies)
	}
	mq := &dicom.DataSet{}
	mq.SetString(0x00080052, "CS", "STUDY")
	mq.SetString(dicom.StudyInstanceUID, "UI", studies[0])
	res, err := a.Move(ctx, dimse.StudyRootQueryRetrieveInformationModelMove, "RENKEIDEST", mq)
	if err != nil || res.SubOperations.Completed != 3 {
		t.Fatalf("move: %+v %v", res, err)
	}
	got := newMemStore()
	res, err = a.Get(ctx, dimse.StudyRootQueryRetrieveInformationModelGet, mq, got)
	if err != nil || res.SubOperations.Completed != 3 {
		t.Fatalf("get: %+v %v", res, err)
	}
	for _, s := range ss {
		// dcmqrscp sends what it stored, in Explicit VR Little Endian as negotiated: the same bytes here.
		if !bytes.Equal(dest.get(s.sopInstance), s.dataSet) || !bytes.Equal(got.get(s.sopInstance), s.dataSet) {
			t.Errorf("%s: moved %d bytes, got %d, want %d", filepath.Base(s.path), len(dest.get(s.sopInstance)),
				len(got.get(s.sopInstance)), len(s.dataSet))
		}
	}
}

// Storage commitment: N-ACTION-RQ, then the result as N-EVENT-REPORT on the same association, or on a new one when
// the requestor has gone.
func TestStorageCommitment(t *testing.T) {
	committer := commitFunc(func(ctx context.Context, a *dimse.Association, req *dimse.CommitRequest) (ok, failed []dimse.SOPReference) {
		if req.TransactionUID == "1.2.3.200" {
			time.Sleep(300 * time.Millisecond) // the requestor releases meanwhile: report on a new association
		}
		for _, r := range req.References {
			if strings.HasSuffix(r.SOPInstanceUID, ".9") {
				failed = append(failed, r)
			} else {
				ok = append(ok, r)
			}
		}
		return ok, failed
	})
	reports := make(chan *dimse.EventReport, 2)
	onReport := func(ctx context.Context, a *dimse.Association, ev *dimse.EventReport) dimse.Status {
		reports <- ev
		return dimse.Success()
	}
	scuAddr := serve(t, &dimse.Server{AETitle: "SCU", Handlers: dimse.Handlers{EventReport: onReport}})
	scpHandlers := dimse.Handlers{Commit: committer, MoveDestination: destinations(map[string]string{"SCU": scuAddr})}
	addr := serve(t, &dimse.Server{AETitle: "RENKEI", Handlers: scpHandlers})
	refs := []dimse.SOPReference{{SOPClassUID: ctStorage, SOPInstanceUID: "1.2.3.1"}, {SOPClassUID: ctStorage, SOPInstanceUID: "1.2.3.9"}}
	check := func(ev *dimse.EventReport, want string) {
		t.Helper()
		tx, ok, failed, err := dimse.CommitmentResult(ev)
		if err != nil || tx != want || len(ok) != 1 || len(failed) != 1 || failed[0].SOPInstanceUID != "1.2.3.9" ||
			failed[0].FailureReason != 0x0112 || ev.EventTypeID != 2 {
			t.Errorf("report: %s %+v %+v %v (event type %d)", tx, ok, failed, err, ev.EventTypeID)
		}
	}
	d := dimse.Dialer{Handlers: dimse.Handlers{EventReport: onReport}, Logger: testLogger()}
	pcs := []dimse.PresentationContext{{AbstractSyntax: dimse.StorageCommitmentPushModel, TransferSyntaxes: explicitLE()}}
	a, err := d.Dial(context.Background(), addr, "SCU", "RENKEI", pcs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.RequestCommitment(context.Background(), "1.2.3.100", refs)
	if err != nil || !st.IsSuccess() {
		t.Fatalf("N-ACTION: %v %v", st, err)
	}
	select {
	case ev := <-reports:
		check(ev, "1.2.3.100")
	case <-time.After(5 * time.Second):
		t.Fatal("no report on the same association")
	}
	st, err = a.RequestCommitment(context.Background(), "1.2.3.200", refs)
	if err != nil || !st.IsSuccess() {
		t.Fatalf("N-ACTION: %v %v", st, err)
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-reports:
		check(ev, "1.2.3.200")
	case <-time.After(5 * time.Second):
		t.Fatal("no report on a new association")
	}
}

type commitFunc func(ctx context.Context, a *dimse.Association, req *dimse.CommitRequest) (ok, failed []dimse.SOPReference)

func (f commitFunc) Commit(ctx context.Context, a *dimse.Association, req *dimse.CommitRequest) (ok, failed []dimse.SOPReference) {
	return f(ctx, a, req)
}
