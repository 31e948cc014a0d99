package dimse_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"renkei/dicom"
	"renkei/dimse"
)

// rawPeer connects to addr, writes what it is given and returns what the server answered until it closed the
// connection, and how long that took.
func rawPeer(t *testing.T, addr string, send []byte, closeAfterSend bool) ([]byte, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if len(send) > 0 {
		if _, err := c.Write(send); err != nil {
			t.Fatal(err)
		}
	}
	if closeAfterSend {
		c.(*net.TCPConn).CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("the server did not close the connection: %v (read %x)", err, got)
	}
	return got, time.Since(start)
}

func echoOK(t *testing.T, addr string) {
	t.Helper()
	a := dial(t, addr, dimse.PresentationContext{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()})
	if st, err := a.Echo(context.Background()); err != nil || !st.IsSuccess() {
		t.Fatalf("echo after the bad peer: %v %v", st, err)
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBadPeers(t *testing.T) {
	const artim = 300 * time.Millisecond
	addr := serve(t, &dimse.Server{ARTIM: artim, MaxPDULength: 65536})
	// PS3.8 Table 9-9, AA-1: before an association is requested the A-ABORT has the service-user source.
	abortPDU := func(dimse.AbortReason) []byte {
		b, _ := dimse.EncodePDU(&dimse.AAbort{Source: dimse.AbortServiceUser})
		return b
	}
	tests := []struct {
		name      string
		send      []byte
		close     bool
		want      []byte // what the server answers before closing
		fastClose bool   // closed at once rather than by ARTIM
	}{
		// Sta2 + Evt19 → AA-1: A-ABORT, then ARTIM closes.
		{name: "HTTP request", send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), want: abortPDU(dimse.AbortUnrecognizedPDU)},
		{name: "PDU length 0xFFFFFFFF", send: cat(0x01, 0x00, []byte{0xFF, 0xFF, 0xFF, 0xFF}), want: abortPDU(dimse.AbortInvalidParameter)},
		{name: "P-DATA length 0xFFFFFFFF", send: cat(0x04, 0x00, []byte{0xFF, 0xFF, 0xFF, 0xFF}), want: abortPDU(dimse.AbortInvalidParameter)},
		{name: "P-DATA before association", send: goldenPDataTF, want: abortPDU(dimse.AbortUnexpectedPDU)},
		{name: "malformed A-ASSOCIATE-RQ", send: func() []byte {
			b := append([]byte(nil), goldenAssociateRQ...)
			b[6+68+3] = 0xFF
			return b
		}(), want: abortPDU(dimse.AbortInvalidParameter)},
		// Sta2 + Evt17 → AA-5: the peer closed, nothing to answer.
		{name: "truncated A-ASSOCIATE-RQ, then close", send: goldenAssociateRQ[:50], close: true, want: nil, fastClose: true},
		// Sta2 + Evt18 → AA-2: ARTIM closes a connection that does not complete its request.
		{name: "truncated A-ASSOCIATE-RQ, then silence", send: goldenAssociateRQ[:50], want: nil},
		{name: "connect and send nothing", send: nil, want: nil},
		// Unsupported protocol version: AE-6 rejects (PS3.8 9.3.2).
		{name: "protocol version 2", send: func() []byte {
			b := append([]byte(nil), goldenAssociateRQ...)
			b[7] = 2
			return b
		}(), want: cat(0x03, 0x00, []byte{0, 0, 0, 4}, 0x00, 0x01, 0x02, 0x02), fastClose: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, took := rawPeer(t, addr, tc.send, tc.close)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("server answered %x, want %x", got, tc.want)
			}
			if took > artim+2*time.Second {
				t.Errorf("closed after %v", took)
			}
			if !tc.fastClose && len(tc.want) == 0 && took < artim/2 {
				t.Errorf("closed after %v, before ARTIM", took)
			}
			echoOK(t, addr)
		})
	}
}

// Protocol errors on an established association: A-ABORT with the reason, and the server goes on.
func TestBadPeerEstablished(t *testing.T) {
	addr := serve(t, &dimse.Server{ARTIM: 300 * time.Millisecond, MaxPDULength: 65536})
	rq, _ := dimse.EncodePDU(&dimse.AAssociateRQ{ProtocolVersion: 1, CalledAETitle: "RENKEI", CallingAETitle: "BAD",
		PresentationContexts: []dimse.PresentationContext{{ID: 1, AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()}}})
	pdv := func(pc byte, command, last bool, data []byte) []byte {
		b, _ := dimse.EncodePDU(&dimse.PDataTF{PDVs: []dimse.PDV{{PresentationContextID: pc, Command: command, Last: last, Data: data}}})
		return b
	}
	tests := []struct {
		name   string
		send   []byte
		reason dimse.AbortReason
	}{
		{"P-DATA longer than our maximum", cat(0x04, 0x00, []byte{0x00, 0x01, 0x00, 0x01}), dimse.AbortInvalidParameter},
		{"PDV on a context not accepted", pdv(3, true, true, goldenEchoRQ), dimse.AbortInvalidParameter},
		{"data before a command", pdv(1, false, true, []byte{1, 2}), dimse.AbortUnexpectedParameter},
		{"garbage command set", pdv(1, true, true, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}), dimse.AbortInvalidParameter},
		{"second A-ASSOCIATE-RQ", rq, dimse.AbortUnexpectedPDU},
		{"command set over 64 KiB", bytes.Repeat(pdv(1, true, false, make([]byte, 60000)), 2), dimse.AbortInvalidParameter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(rq)
			if p, err := dimse.ReadPDU(c, 1<<20); err != nil {
				t.Fatal(err)
			} else if _, ok := p.(*dimse.AAssociateAC); !ok {
				t.Fatalf("got %T", p)
			}
			c.Write(tc.send)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			p, err := dimse.ReadPDU(c, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			ab, ok := p.(*dimse.AAbort)
			if !ok || ab.Source != dimse.AbortServiceProvider || ab.Reason != tc.reason {
				t.Errorf("got %#v, want A-ABORT from the provider, reason %d", p, tc.reason)
			}
			if _, err := io.ReadAll(c); err != nil {
				t.Errorf("not closed: %v", err)
			}
			echoOK(t, addr)
		})
	}
}

// 1,000 associations opened and released in a row leave goroutines and heap as they were
// (RENKEI_ASSOCIATIONS=10000 for the long run).
func TestManyAssociations(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	if v, err := strconv.Atoi(os.Getenv("RENKEI_ASSOCIATIONS")); err == nil && v > 0 {
		n = v
	}
	store := newMemStore()
	addr := serve(t, &dimse.Server{Handlers: dimse.Handlers{Store: store}})
	pcs := []dimse.PresentationContext{
		{AbstractSyntax: dimse.Verification, TransferSyntaxes: explicitLE()},
		{AbstractSyntax: ctStorage, TransferSyntaxes: explicitLE()},
	}
	body := make([]byte, 100<<10)
	once := func() {
		a := dial(t, addr, pcs...)
		if st, err := a.Echo(context.Background()); err != nil || !st.IsSuccess() {
			t.Fatal(st, err)
		}
		if st, err := a.Store(context.Background(), ctStorage, "1.2.3", dicom.ExplicitVRLittleEndian, bytes.NewReader(body)); err != nil || !st.IsSuccess() {
			t.Fatal(st, err)
		}
		if err := a.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		once()
	}
	g0, h0 := settle()
	for i := 0; i < n; i++ {
		once()
	}
	g1, h1 := settle()
	t.Logf("%d associations: goroutines %d → %d, heap %d KiB → %d KiB", n, g0, g1, h0>>10, h1>>10)
	if g1 > g0+2 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if h1 > h0+4<<20 {
		t.Errorf("heap grew from %d to %d bytes", h0, h1)
	}
}

// settle waits for finished associations' goroutines to exit, then returns the goroutine count and live heap.
func settle() (int, uint64) {
	var g int
	for i := 0; i < 100; i++ {
		runtime.GC()
		g = runtime.NumGoroutine()
		time.Sleep(20 * time.Millisecond)
		if runtime.NumGoroutine() == g {
			break
		}
	}
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return g, m.HeapAlloc
}
