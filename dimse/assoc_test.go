package dimse_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
	"renkei/dimse"
)

const ctStorage = "1.2.840.10008.5.1.4.1.1.2"

// testLogger logs to stderr with DIMSE_TEST_LOG=1 (debug) or =2 (state machine trace), else nowhere.
func testLogger() *slog.Logger {
	switch os.Getenv("DIMSE_TEST_LOG") {
	case "1":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	case "2":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// serve starts s on a loopback port and shuts it down when the test ends.
func serve(t testing.TB, s *dimse.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if s.Logger == nil {
		s.Logger = testLogger()
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, dimse.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return ln.Addr().String()
}

// memStore keeps what it receives, by SOP instance UID.
type memStore struct {
	mu     sync.Mutex
	data   map[string][]byte
	ts     map[string]string
	status dimse.Status
}

func newMemStore() *memStore { return &memStore{data: map[string][]byte{}, ts: map[string]string{}} }

func (m *memStore) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
	b, err := io.ReadAll(data)
	if err != nil {
		return dimse.Failure(dimse.StatusOutOfResources, err.Error())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.status.IsFailure() {
		return m.status
	}
	m.data[req.SOPInstanceUID] = b
	m.ts[req.SOPInstanceUID] = req.TransferSyntaxUID
	return m.status
}

func (m *memStore) get(uid string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.data[uid]
}

func (m *memStore) syntax(uid string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ts[uid]
}

func (m *memStore) fail(st dimse.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status = st
}

func explicitLE() []string { return []string{dicom.ExplicitVRLittleEndian} }

func dial(t testing.TB, addr string, pcs ...dimse.PresentationContext) *dimse.Association {
	t.Helper()
	d := dimse.Dialer{Logger: testLogger()}
	a, err := d.Dial(context.Background(), addr, "TESTSCU", "RENKEI", pcs)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestEchoStoreRelease(t *testing.T) {
	store := newMemStore()
	addr := serve(t, &dimse.Server{AETitle: "RENKEI", Handlers: dimse.Handlers{Store: store}, MaxPDULength: 16384})
	a := dial(t, addr,
		dimse.PresentationContext{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()},
		dimse.PresentationContext{AbstractSyntax: ctStorage, TransferSyntaxes: []string{dicom.JPEGLossless, dicom.ExplicitVRLittleEndian}},
		dimse.PresentationContext{AbstractSyntax: ctStorage, TransferSyntaxes: []string{dicom.JPEGLSLossless}},
		dimse.PresentationContext{AbstractSyntax: "1.2.840.10008.5.1.4.31", TransferSyntaxes: explicitLE()}, // worklist: refused
	)
	got := a.Contexts()
	want := []dimse.PresentationContext{
		{ID: 1, AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE(), SCURole: true},
		{ID: 3, AbstractSyntax: ctStorage, TransferSyntaxes: explicitLE(), SCURole: true},
		{ID: 5, AbstractSyntax: ctStorage, TransferSyntaxes: []string{dicom.JPEGLSLossless}, SCURole: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("accepted contexts (-want +got):\n%s", diff)
	}
	ctx := context.Background()
	st, err := a.Echo(ctx)
	if err != nil || !st.IsSuccess() {
		t.Fatalf("echo: %v %v", st, err)
	}
	// 3 MB through 16 KiB PDUs, and a data set of 0 bytes, and one of exactly one PDV.
	big := make([]byte, 3<<20+5)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for i, body := range [][]byte{big, {}, make([]byte, 16384-6), make([]byte, 16384-5)} {
		uid := "1.2.3." + string(rune('1'+i))
		st, err = a.Store(ctx, ctStorage, uid, dicom.ExplicitVRLittleEndian, bytes.NewReader(body))
		if err != nil || !st.IsSuccess() {
			t.Fatalf("store %d: %v %v", i, st, err)
		}
		if !bytes.Equal(store.get(uid), body) {
			t.Errorf("store %d: %d bytes arrived, %d sent", i, len(store.get(uid)), len(body))
		}
	}
	st, err = a.Store(ctx, ctStorage, "1.2.3.9", dicom.JPEGLSLossless, bytes.NewReader([]byte("pretend JPEG-LS")))
	if err != nil || !st.IsSuccess() || store.syntax("1.2.3.9") != dicom.JPEGLSLossless {
		t.Fatalf("store JPEG-LS: %v %v %q", st, err, store.syntax("1.2.3.9"))
	}
	_, err = a.Store(ctx, ctStorage, "1.2.3.10", dicom.JPEGBaseline8Bit, bytes.NewReader(nil))
	var nc *dimse.NoContextError
	if !errors.As(err, &nc) {
		t.Errorf("store without a context: %v", err)
	}
	store.fail(dimse.Failure(dimse.StatusOutOfResources, "disk full"))
	st, err = a.Store(ctx, ctStorage, "1.2.3.11", dicom.ExplicitVRLittleEndian, bytes.NewReader(big))
	if err != nil || st.Code != dimse.StatusOutOfResources || st.ErrorComment != "disk full" {
		t.Errorf("failing store: %v %v", st, err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(a.Err(), dimse.ErrReleased) || a.State() != dimse.Sta1 {
		t.Errorf("after release: %v, %s", a.Err(), a.State())
	}
	if _, err := a.Echo(ctx); err == nil {
		t.Error("echo after release succeeded")
	}
}

// A handler that returns without reading: the rest of the data set is dropped and the association goes on.
func TestStoreHandlerStopsEarly(t *testing.T) {
	h := dimse.StoreFunc(func(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
		var b [10]byte
		io.ReadFull(data, b[:])
		return dimse.Failure(dimse.StatusDataSetDoesNotMatchSOPClass, "no")
	})
	addr := serve(t, &dimse.Server{Handlers: dimse.Handlers{Store: h}, MaxPDULength: 4096})
	a := dial(t, addr, dimse.PresentationContext{AbstractSyntax: ctStorage, TransferSyntaxes: explicitLE()},
		dimse.PresentationContext{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()})
	defer a.Release(context.Background())
	for i := 0; i < 3; i++ {
		st, err := a.Store(context.Background(), ctStorage, "1.2.3", dicom.ExplicitVRLittleEndian, bytes.NewReader(make([]byte, 1<<20)))
		if err != nil || st.Code != dimse.StatusDataSetDoesNotMatchSOPClass {
			t.Fatalf("%v %v", st, err)
		}
	}
	if st, err := a.Echo(context.Background()); err != nil || !st.IsSuccess() {
		t.Fatalf("echo: %v %v", st, err)
	}
}

// The data set reaches the handler while it is still being sent: the handler sees the first bytes before the
// sender has produced the last ones.
func TestStoreStreams(t *testing.T) {
	firstSeen := make(chan struct{})
	h := dimse.StoreFunc(func(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
		var b [1]byte
		io.ReadFull(data, b[:])
		close(firstSeen)
		n, _ := io.Copy(io.Discard, data)
		if n != 8<<20-1 {
			return dimse.Failure(dimse.StatusCannotUnderstand, "short")
		}
		return dimse.Success()
	})
	addr := serve(t, &dimse.Server{Handlers: dimse.Handlers{Store: h}})
	a := dial(t, addr, dimse.PresentationContext{AbstractSyntax: ctStorage, TransferSyntaxes: explicitLE()})
	defer a.Release(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.Write(make([]byte, 1<<20))
		<-firstSeen // the rest only once the handler has seen the start
		pw.Write(make([]byte, 7<<20))
		pw.Close()
	}()
	st, err := a.Store(context.Background(), ctStorage, "1.2.3", dicom.ExplicitVRLittleEndian, pr)
	if err != nil || !st.IsSuccess() {
		t.Fatalf("%v %v", st, err)
	}
}

// A sender whose data set fails half-way aborts the association; the handler's reader fails, nothing is stored.
func TestStoreSourceFails(t *testing.T) {
	got := make(chan error, 1)
	h := dimse.StoreFunc(func(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
		_, err := io.Copy(io.Discard, data)
		got <- err
		return dimse.Success()
	})
	addr := serve(t, &dimse.Server{Handlers: dimse.Handlers{Store: h}})
	a := dial(t, addr, dimse.PresentationContext{AbstractSyntax: ctStorage, TransferSyntaxes: explicitLE()})
	src := io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), errReader{})
	_, err := a.Store(context.Background(), ctStorage, "1.2.3", dicom.ExplicitVRLittleEndian, src)
	if err == nil {
		t.Fatal("store succeeded")
	}
	select {
	case err := <-got:
		if err == nil {
			t.Error("the handler read a complete data set")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's reader did not fail")
	}
	var ae *dimse.AbortError
	if !errors.As(a.Err(), &ae) {
		t.Errorf("association error %v, want an abort", a.Err())
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk read error") }

func studyFind(matches int) dimse.FindFunc {
	return func(ctx context.Context, a *dimse.Association, req *dimse.FindRequest, emit func(*dicom.DataSet) error) dimse.Status {
		if req.Identifier.String(0x00080052) != "STUDY" {
			return dimse.Failure(dimse.StatusDataSetDoesNotMatchSOPClass, "level")
		}
		for i := 0; i < matches; i++ {
			ds := &dicom.DataSet{}
			ds.SetString(0x00080052, "CS", "STUDY")
			ds.SetString(dicom.PatientName, "PN", "Yamada^Taro")
			ds.SetString(dicom.StudyInstanceUID, "UI", "1.2.3."+string(rune('0'+i%10)))
			if err := emit(ds); err != nil {
				return dimse.Failure(dimse.StatusCannotUnderstand, err.Error())
			}
		}
		return dimse.Success()
	}
}

func studyQuery() *dicom.DataSet {
	q := &dicom.DataSet{}
	q.SetString(0x00080052, "CS", "STUDY")
	q.SetString(dicom.PatientName, "PN", "")
	q.SetString(dicom.StudyInstanceUID, "UI", "")
	return q
}

func TestFind(t *testing.T) {
	addr := serve(t, &dimse.Server{Handlers: dimse.Handlers{Find: studyFind(25)}})
	for _, ts := range []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian} {
		t.Run(ts, func(t *testing.T) {
			a := dial(t, addr, dimse.PresentationContext{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{ts}})
			defer a.Release(context.Background())
			n := 0
			for ds, err := range a.Find(context.Background(), dimse.StudyRootQueryRetrieveInformationModelFind, studyQuery()) {
				if err != nil {
					t.Fatal(err)
				}
				if ds.String(dicom.PatientName) != "Yamada^Taro" {
					t.Errorf("match %d: %q", n, ds.String(dicom.PatientName))
				}
				n++
			}
			if n != 25 {
				t.Errorf("%d matches", n)
			}
			// Stop after 3: C-CANCEL-RQ, then the association is still usable.
			n = 0
			for _, err := range a.Find(context.Background(), dimse.StudyRootQueryRetrieveInformationModelFind, studyQuery()) {
				if err != nil {
					t.Fatal(err)
				}
				if n++; n == 3 {
					break
				}
			}
			bad := &dicom.DataSet{}
			bad.SetString(0x00080052, "CS", "IMAGE")
			var se *dimse.StatusError
			for _, err := range a.Find(context.Background(), dimse.StudyRootQueryRetrieveInformationModelFind, bad) {
				if !errors.As(err, &se) || se.Status.Code != dimse.StatusDataSetDoesNotMatchSOPClass {
					t.Errorf("failing find: %v", err)
				}
			}
			if se == nil {
				t.Error("no failure status")
			}
		})
	}
}

func TestRejections(t *testing.T) {
	addr := serve(t, &dimse.Server{AETitle: "RENKEI", AcceptAE: func(p dimse.Peer) (bool, dimse.Reject) {
		if p.CallingAETitle != "KNOWN" {
			return false, dimse.RejectCallingAETitle
		}
		return true, 0
	}})
	pcs := []dimse.PresentationContext{{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()}}
	tests := []struct {
		calling, called string
		want            dimse.AAssociateRJ
	}{
		{"KNOWN", "OTHER", dimse.AAssociateRJ{Result: 1, Source: 1, Reason: 7}},
		{"STRANGER", "RENKEI", dimse.AAssociateRJ{Result: 1, Source: 1, Reason: 3}},
	}
	for _, tc := range tests {
		_, err := dimse.Dial(context.Background(), addr, tc.calling, tc.called, pcs)
		var rj *dimse.RejectError
		if !errors.As(err, &rj) || rj.Reject != tc.want {
			t.Errorf("%s→%s: %v, want %+v", tc.calling, tc.called, err, tc.want)
		}
	}
	a, err := dimse.Dial(context.Background(), addr, "KNOWN", "RENKEI", pcs)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := a.Echo(context.Background()); err != nil || !st.IsSuccess() {
		t.Error(st, err)
	}
	a.Release(context.Background())
}

func TestMaxAssociations(t *testing.T) {
	addr := serve(t, &dimse.Server{MaxAssociations: 2})
	pcs := []dimse.PresentationContext{{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()}}
	a1 := dial(t, addr, pcs...)
	a2 := dial(t, addr, pcs...)
	_, err := dimse.Dial(context.Background(), addr, "TESTSCU", "RENKEI", pcs)
	var rj *dimse.RejectError
	if !errors.As(err, &rj) || rj.Reject != *dimse.RejectTemporaryCongestion.PDU() {
		t.Fatalf("third association: %v", err)
	}
	a1.Release(context.Background())
	a3 := dial(t, addr, pcs...)
	a2.Abort()
	a3.Release(context.Background())
}

func TestAbortAndIdle(t *testing.T) {
	ended := make(chan error, 1)
	addr := serve(t, &dimse.Server{IdleTimeout: 300 * time.Millisecond, Handlers: dimse.Handlers{
		Echo: func(ctx context.Context, a *dimse.Association) dimse.Status {
			go func() {
				<-a.Done()
				ended <- a.Err()
			}()
			time.Sleep(500 * time.Millisecond) // longer than the idle timeout: an operation in progress is not idle
			return dimse.Success()
		}}})
	pcs := []dimse.PresentationContext{{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()}}
	a := dial(t, addr, pcs...)
	if st, err := a.Echo(context.Background()); err != nil || !st.IsSuccess() {
		t.Fatal(st, err)
	}
	select {
	case <-a.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the idle association was not aborted")
	}
	var ae *dimse.AbortError
	if !errors.As(a.Err(), &ae) || !ae.Remote {
		t.Errorf("client sees %v, want a remote abort", a.Err())
	}
	<-ended

	b := dial(t, addr, pcs...)
	b.Abort()
	if !errors.Is(b.Err(), b.Err()) || b.State() != dimse.Sta1 {
		t.Errorf("after abort: %v %s", b.Err(), b.State())
	}
}

// A peer that accepts the connection and never answers the A-ASSOCIATE-RQ: Dial gives up after ARTIM.
func TestDialTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	d := dimse.Dialer{ARTIM: 200 * time.Millisecond}
	start := time.Now()
	_, err = d.Dial(context.Background(), ln.Addr().String(), "A", "B",
		[]dimse.PresentationContext{{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()}})
	if err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("Dial: %v after %v", err, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := dimse.Dial(ctx, "127.0.0.1:1", "A", "B",
		[]dimse.PresentationContext{{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()}}); err == nil {
		t.Error("Dial to a closed port succeeded")
	}
}

// An association stays usable long after it was opened (no deadline left over from the negotiation).
func TestLongLived(t *testing.T) {
	if testing.Short() {
		t.Skip("sleeps 3 s")
	}
	addr := serve(t, &dimse.Server{})
	a := dial(t, addr, dimse.PresentationContext{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()})
	time.Sleep(3 * time.Second)
	if st, err := a.Echo(context.Background()); err != nil || !st.IsSuccess() {
		t.Fatal(st, err)
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}
