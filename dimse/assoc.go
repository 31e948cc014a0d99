package dimse

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Defaults used when a Server or Dialer leaves a field zero.
const (
	// DefaultMaxPDULength is the maximum P-DATA-TF length we announce (PS3.8 D.1): large enough that a C-STORE costs
	// few PDUs, small enough that the receive buffer of each association stays modest.
	DefaultMaxPDULength = 256 << 10
	// DefaultARTIM is the association request/reject/release timer (PS3.8 9.1.5).
	DefaultARTIM = 30 * time.Second
	// maxSendPDU caps the P-DATA-TF PDUs we send to a peer that announces no limit (maximum length 0).
	maxSendPDU = 1 << 20
	// urgentWrite bounds how long an A-ABORT or A-ASSOCIATE-RJ waits behind a write the peer does not read.
	urgentWrite = 2 * time.Second
)

// levelTrace logs each state machine transition, below Debug.
const levelTrace = slog.LevelDebug - 4

// ErrReleased is returned by operations on an association that was released normally.
var ErrReleased = errors.New("dimse: the association was released")

// RejectError is returned by Dial when the acceptor answers A-ASSOCIATE-RJ (PS3.8 9.3.4).
type RejectError struct {
	Reject AAssociateRJ
}

// Error reports the rejection with its PS3.8 Table 9-21 diagnostic.
func (e *RejectError) Error() string {
	return fmt.Sprintf("dimse: association rejected (PS3.8 Table 9-21: result %d, source %d, reason %d: %s)",
		e.Reject.Result, e.Reject.Source, e.Reject.Reason, rejectText(e.Reject))
}

// AbortError reports an aborted association: A-ABORT received (Remote) or sent (PS3.8 9.3.8).
type AbortError struct {
	Source AbortSource
	Reason AbortReason
	Remote bool
}

// Error reports who aborted, with source and reason.
func (e *AbortError) Error() string {
	who := "aborted locally"
	if e.Remote {
		who = "aborted by the peer"
	}
	return fmt.Sprintf("dimse: association %s (A-ABORT source %d, reason %d, PS3.8 Table 9-26)", who, e.Source, e.Reason)
}

func transportClosed(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return errors.New("dimse: the peer closed the connection without releasing the association")
	}
	return fmt.Errorf("dimse: transport connection lost: %w", err)
}

var errARTIM = errors.New("dimse: ARTIM timer expired (PS3.8 9.1.5)")

// Peer describes the other end of an association.
type Peer struct {
	CallingAETitle            string
	CalledAETitle             string
	Addr                      net.Addr
	TLS                       *tls.ConnectionState // nil on plain TCP
	ImplementationClassUID    string
	ImplementationVersionName string
}

// Association is one DICOM association (PS3.8 7.1), as requestor (from Dial) or acceptor (given to handlers by a
// Server). Its methods are safe for concurrent use; DIMSE operations on it run one at a time (the asynchronous
// operations window is never negotiated beyond 1, PS3.7 D.3.3.3).
type Association struct {
	conn      net.Conn
	br        *bufio.Reader
	log       *slog.Logger
	requestor bool
	ctx       context.Context // canceled when the association ends
	cancel    context.CancelCauseFunc
	artimDur  time.Duration
	idle      time.Duration
	maxPDU    uint32 // the maximum P-DATA-TF length we receive
	peerMax   uint32 // the peer's, 0 for no limit

	mu    sync.Mutex // state and err
	state State
	err   error

	tmu      sync.Mutex // ARTIM
	artim    *time.Timer
	artimGen uint64

	wmu    sync.Mutex    // one PDU written at a time
	msgSem chan struct{} // one DIMSE message sent at a time (PS3.8 9.3.5: PDVs of messages are not interleaved)

	rq       *AAssociateRQ
	ac       *AAssociateAC
	contexts map[byte]*PresentationContext // accepted contexts, fixed once established
	peer     Peer

	dial      func(ctx context.Context) (net.Conn, error) // requestor: AE-1
	dialCtx   context.Context
	negotiate func(a *Association, rq *AAssociateRQ) PDU // acceptor: answers the A-ASSOCIATE indication
	onStart   func(a *Association)                       // acceptor: called once established
	handlers  *Handlers
	server    *Server
	onEnd     func()         // called once when the association ends
	svc       sync.WaitGroup // the service goroutine

	establishedCh chan struct{} // closed in Sta6
	done          chan struct{} // closed when the association ends (Sta13 or Sta1)
	closed        chan struct{} // closed when the transport is closed (Sta1)
	endOnce       sync.Once
	closeOnce     sync.Once
	estOnce       sync.Once

	dimse
}

func newAssociation(requestor bool, log *slog.Logger, artim, idle time.Duration, maxPDU uint32) *Association {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if artim <= 0 {
		artim = DefaultARTIM
	}
	if maxPDU == 0 {
		maxPDU = DefaultMaxPDULength
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	a := &Association{
		log: log, requestor: requestor, ctx: ctx, cancel: cancel, artimDur: artim, idle: idle, maxPDU: maxPDU,
		state: Sta1, msgSem: make(chan struct{}, 1),
		establishedCh: make(chan struct{}), done: make(chan struct{}), closed: make(chan struct{}),
	}
	a.dimse.init()
	return a
}

// Peer returns the AE titles, address and TLS state of the other end.
func (a *Association) Peer() Peer { return a.peer }

// Request returns the A-ASSOCIATE-RQ of the association, as sent or received: proposed contexts, user information
// and the extended negotiation items it carried.
func (a *Association) Request() *AAssociateRQ { return a.rq }

// FindOptions returns the C-FIND extended negotiation options agreed for a Query/Retrieve FIND SOP class (PS3.4
// C.5.1.1): those the acceptor answered in its A-ASSOCIATE-AC, none when it answered nothing for the class.
func (a *Association) FindOptions(sopClass string) FindOptions {
	if a.ac == nil {
		return FindOptions{}
	}
	for _, x := range a.ac.UserInformation.ExtendedNegotiations {
		if x.SOPClassUID == sopClass {
			return ParseFindOptions(x.Info)
		}
	}
	return FindOptions{}
}

// Contexts returns the accepted presentation contexts, with their abstract syntax, transfer syntax and roles.
func (a *Association) Contexts() []PresentationContext {
	out := make([]PresentationContext, 0, len(a.contexts))
	for id := 1; id < 256; id += 2 {
		if pc := a.contexts[byte(id)]; pc != nil {
			out = append(out, *pc)
		}
	}
	return out
}

// State returns the current state of the association's state machine (PS3.8 Table 9-10).
func (a *Association) State() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state
}

// Err returns nil while the association is established, then why it ended: ErrReleased, an *AbortError, a
// *RejectError or a transport error.
func (a *Association) Err() error {
	select {
	case <-a.done:
	default:
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		return ErrReleased
	}
	return a.err
}

// Done returns a channel closed when the association has ended (released, aborted or lost).
func (a *Association) Done() <-chan struct{} { return a.done }

// Context returns a context canceled when the association ends; handlers' contexts derive from it.
func (a *Association) Context() context.Context { return a.ctx }

// Logger returns the association's logger, carrying the peer's address and AE titles.
func (a *Association) Logger() *slog.Logger { return a.log }

// startARTIM starts or restarts the ARTIM timer (PS3.8 9.1.5); its expiry is Evt18.
func (a *Association) startARTIM() {
	a.tmu.Lock()
	defer a.tmu.Unlock()
	if a.artim != nil {
		a.artim.Stop()
	}
	a.artimGen++
	gen := a.artimGen
	a.artim = time.AfterFunc(a.artimDur, func() {
		a.tmu.Lock()
		stale := gen != a.artimGen
		a.tmu.Unlock()
		if !stale {
			_ = a.fire(Evt18, &input{err: errARTIM}) // no transition outside Sta2 and Sta13: nothing to do
		}
	})
}

func (a *Association) stopARTIM() {
	a.tmu.Lock()
	defer a.tmu.Unlock()
	if a.artim != nil {
		a.artim.Stop()
		a.artim = nil
	}
	a.artimGen++
}

// end marks the association as over (Sta13 or Sta1): handlers' contexts are canceled, a data set being received
// fails, waiting operations wake up. err is the cause; nil for a normal release.
func (a *Association) end(err error) {
	a.endOnce.Do(func() {
		a.mu.Lock()
		a.err = err
		a.mu.Unlock()
		cause := err
		if cause == nil {
			cause = ErrReleased
		}
		a.dimse.abortPipes(cause)
		a.cancel(cause)
		close(a.done)
		if a.onEnd != nil {
			a.onEnd()
		}
		switch {
		case err == nil:
			a.log.Info("dimse association released")
		case errors.Is(err, errARTIM) || isRejected(err):
			a.log.Info("dimse association ended", "err", err)
		default:
			a.log.Warn("dimse association ended", "err", err)
		}
	})
}

func isRejected(err error) bool {
	var rj *RejectError
	return errors.As(err, &rj)
}

// terminate ends the association and closes the transport connection (the actions that lead to Sta1).
func (a *Association) terminate(err error) {
	a.end(err)
	a.stopARTIM()
	a.closeOnce.Do(func() {
		if a.conn != nil {
			a.conn.Close()
		}
		close(a.closed)
	})
}

// transportConnect is AE-1: open the TCP (or TLS) connection, then Evt2, or Evt17 when it fails.
func (a *Association) transportConnect() {
	conn, err := a.dial(a.dialCtx)
	if err != nil {
		_ = a.fire(Evt17, &input{err: err})
		return
	}
	a.conn = conn
	a.br = bufio.NewReaderSize(connReader{a}, 64<<10)
	a.wmu.Lock()
	defer a.wmu.Unlock()
	_ = a.fire(Evt2, &input{locked: true})
}

// sendPDU writes a PDU for an action; a failed write closes the connection, which the reader reports as Evt17.
func (a *Association) sendPDU(in *input, p PDU) {
	b, err := EncodePDU(p)
	if err != nil {
		a.log.Error("dimse encode PDU", "err", err)
		in.err = err
		a.conn.Close()
		return
	}
	if err := a.write(in, b); err != nil {
		in.err = err
	}
}

// sendPData is DT-1 and AR-7: write the P-DATA-TF PDU prepared by the caller.
func (a *Association) sendPData(in *input) {
	if err := a.write(in, in.pdata...); err != nil {
		in.err = err
	}
}

// write writes buffers as one PDU. Local primitives hold the write lock already (in.locked); PDUs sent by the reader
// or a timer (A-ABORT, A-ASSOCIATE-RJ) take it, after shortening the deadline of a write the peer does not read.
func (a *Association) write(in *input, bufs ...[]byte) error {
	if a.conn == nil {
		return errors.New("dimse: no transport connection")
	}
	if !in.locked {
		a.conn.SetWriteDeadline(time.Now().Add(urgentWrite))
		a.wmu.Lock()
		defer a.wmu.Unlock()
		defer a.conn.SetWriteDeadline(time.Time{})
	} else if a.idle > 0 {
		a.conn.SetWriteDeadline(time.Now().Add(a.idle))
	}
	nb := net.Buffers(bufs)
	if _, err := nb.WriteTo(a.conn); err != nil {
		a.conn.Close()
		return fmt.Errorf("dimse: write: %w", err)
	}
	return nil
}

// associateIndication is the A-ASSOCIATE indication to the local user (acceptor, in Sta3): the user's answer is
// Evt7 (accept) or Evt8 (reject).
func (a *Association) associateIndication(rq *AAssociateRQ) {
	a.rq = rq
	a.peer.CallingAETitle, a.peer.CalledAETitle = rq.CallingAETitle, rq.CalledAETitle
	a.peer.ImplementationClassUID = rq.UserInformation.ImplementationClassUID
	a.peer.ImplementationVersionName = rq.UserInformation.ImplementationVersionName
	a.peerMax = rq.UserInformation.MaximumLength
	a.log = a.log.With("calling", rq.CallingAETitle, "called", rq.CalledAETitle)
	answer := a.negotiate(a, rq)
	a.wmu.Lock()
	defer a.wmu.Unlock()
	in := &input{pdu: answer, locked: true}
	if ac, ok := answer.(*AAssociateAC); ok {
		a.ac = ac
		a.contexts = acceptedContexts(rq, ac)
		_ = a.fire(Evt7, in)
		return
	}
	_ = a.fire(Evt8, in)
}

// associateConfirmAccept is AE-3 (requestor): the A-ASSOCIATE-AC arrived.
func (a *Association) associateConfirmAccept(ac *AAssociateAC) {
	a.ac = ac
	a.peerMax = ac.UserInformation.MaximumLength
	a.peer.ImplementationClassUID = ac.UserInformation.ImplementationClassUID
	a.peer.ImplementationVersionName = ac.UserInformation.ImplementationVersionName
	a.contexts = acceptedContexts(a.rq, ac)
	a.established()
}

// established runs once the association reaches Sta6: the service goroutine starts.
func (a *Association) established() {
	a.estOnce.Do(func() {
		a.log.Info("dimse association established", "contexts", len(a.contexts), "peer_max_pdu", a.peerMax)
		a.svc.Add(1)
		go func() {
			defer a.svc.Done()
			a.serve()
		}()
		close(a.establishedCh)
	})
}

// acceptedContexts joins the accepted contexts of an A-ASSOCIATE-AC with the abstract syntaxes of the request, the
// role selection both sides agreed on (PS3.7 D.3.3.4) and the acceptor's SOP class extended negotiation (D.3.3.5).
func acceptedContexts(rq *AAssociateRQ, ac *AAssociateAC) map[byte]*PresentationContext {
	proposed := map[byte]*PresentationContext{}
	for i := range rq.PresentationContexts {
		proposed[rq.PresentationContexts[i].ID] = &rq.PresentationContexts[i]
	}
	roles := map[string]RoleSelection{}
	for _, r := range ac.UserInformation.RoleSelections {
		roles[r.SOPClassUID] = r
	}
	extended := map[string][]byte{}
	for _, x := range ac.UserInformation.ExtendedNegotiations {
		extended[x.SOPClassUID] = x.Info
	}
	out := map[byte]*PresentationContext{}
	for _, pc := range ac.PresentationContexts {
		p := proposed[pc.ID]
		if pc.Result != ResultAcceptance || p == nil || len(pc.TransferSyntaxes) != 1 {
			continue
		}
		acc := &PresentationContext{ID: pc.ID, AbstractSyntax: p.AbstractSyntax, TransferSyntaxes: pc.TransferSyntaxes,
			SCURole: true}
		if r, ok := roles[p.AbstractSyntax]; ok {
			acc.SCURole, acc.SCPRole = r.SCU, r.SCP
		}
		acc.ExtendedNegotiation = extended[p.AbstractSyntax]
		out[pc.ID] = acc
	}
	return out
}

// readLoop is the one goroutine that reads the connection: each PDU becomes an event of the state machine. It
// returns when the transport is closed.
func (a *Association) readLoop() {
	var buf []byte
	for {
		if a.State() == Sta1 {
			return
		}
		if a.idle > 0 {
			a.conn.SetReadDeadline(time.Now().Add(a.idle))
		}
		typ, n, err := readPDUHeader(a.br, a.maxPDU)
		if err == nil {
			buf, err = readBody(a.br, n, buf[:0])
		}
		if err != nil {
			var pe *PDUError
			switch {
			case errors.As(err, &pe):
				a.log.Warn("dimse invalid PDU", "err", err)
				_ = a.fire(Evt19, &input{err: err})
				a.discard()
			case isTimeout(err) && a.State() != Sta13:
				a.log.Info("dimse idle timeout: aborting the association", "idle", a.idle)
				_ = a.fire(Evt15, &input{})
				a.discard()
			default:
				_ = a.fire(Evt17, &input{err: err})
			}
			return
		}
		if typ == pduPDataTF {
			_ = a.fire(Evt10, &input{pdu: &PDataTF{}, pdata: [][]byte{buf}})
			if a.dimse.broken {
				a.discard()
				return
			}
			if cap(buf) > 2*int(a.maxPDU) {
				buf = nil
			}
			continue
		}
		p, err := decodeBody(typ, buf)
		if err != nil {
			a.log.Warn("dimse invalid PDU", "err", err)
			_ = a.fire(Evt19, &input{err: err})
			a.discard()
			return
		}
		var e Event
		switch p.(type) {
		case *AAssociateRQ:
			e = Evt6
		case *AAssociateAC:
			e = Evt3
		case *AAssociateRJ:
			e = Evt4
		case *AReleaseRQ:
			e = Evt12
		case *AReleaseRP:
			e = Evt13
		case *AAbort:
			e = Evt16
		}
		_ = a.fire(e, &input{pdu: p})
	}
}

// discard reads and drops whatever the peer still sends once the stream cannot be trusted, until the peer closes the
// connection or ARTIM closes it.
func (a *Association) discard() {
	if a.State() == Sta1 {
		return
	}
	a.conn.SetReadDeadline(time.Time{})
	_, err := io.Copy(io.Discard, a.conn)
	_ = a.fire(Evt17, &input{err: err})
}

// connReader reads the connection; when the idle deadline passes while an operation is in progress (a handler
// working, a response awaited), it extends the deadline instead of failing.
type connReader struct{ a *Association }

// Read reads the connection, extending the idle deadline while an operation is in progress.
func (r connReader) Read(p []byte) (int, error) {
	for {
		n, err := r.a.conn.Read(p)
		if n > 0 || err == nil || !isTimeout(err) || !r.a.dimse.active() {
			return n, err
		}
		r.a.conn.SetReadDeadline(time.Now().Add(r.a.idle))
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// release sends A-RELEASE-RQ (Evt11) and waits for the release to complete.
func (a *Association) release(ctx context.Context) error {
	select {
	case a.msgSem <- struct{}{}:
	case <-ctx.Done():
		a.Abort()
		return ctx.Err()
	case <-a.done:
		return a.endedErr()
	}
	a.wmu.Lock()
	err := a.fire(Evt11, &input{locked: true})
	a.wmu.Unlock()
	<-a.msgSem
	if err != nil {
		return a.endedErr()
	}
	t := time.NewTimer(a.artimDur)
	defer t.Stop()
	select {
	case <-a.closed:
	case <-ctx.Done():
		a.Abort()
		return ctx.Err()
	case <-t.C:
		a.Abort()
		return errors.New("dimse: no A-RELEASE-RP within the ARTIM timeout")
	}
	if err := a.Err(); err != ErrReleased {
		return err
	}
	return nil
}

// releaseIndication is AR-2: the peer asked to release. The service goroutine answers (Evt14) once the operation in
// progress, if any, is finished.
func (a *Association) releaseIndication() {
	select {
	case a.dimse.releaseCh <- struct{}{}:
	default:
	}
}

// releaseResponse is the local A-RELEASE response primitive (Evt14).
func (a *Association) releaseResponse() {
	a.msgSem <- struct{}{}
	a.wmu.Lock()
	_ = a.fire(Evt14, &input{locked: true})
	a.wmu.Unlock()
	<-a.msgSem
}

// releaseCollision is AR-8: both sides asked to release at once (PS3.8 9.2.3). The requestor answers first (AR-9);
// the acceptor waits for that answer (AR-10) before answering.
func (a *Association) releaseCollision() {
	if a.requestor {
		go a.releaseResponse()
	}
}

// releaseCollisionConfirm is AR-10 (acceptor side of a collision): now answer with A-RELEASE-RP.
func (a *Association) releaseCollisionConfirm() { go a.releaseResponse() }

// Abort aborts the association (A-ABORT, PS3.8 7.3) and closes the connection. Operations in progress fail. It is
// safe to call at any time, more than once.
func (a *Association) Abort() {
	if err := a.fire(Evt15, &input{pdu: &AAbort{Source: AbortServiceUser}}); err != nil {
		a.terminate(&AbortError{Source: AbortServiceUser})
		return
	}
	// AA-1 waits in Sta13 for the peer to close; give it a moment, then close our side.
	t := time.NewTimer(min(a.artimDur, 500*time.Millisecond))
	defer t.Stop()
	select {
	case <-a.closed:
	case <-t.C:
		_ = a.fire(Evt18, &input{err: errARTIM})
	}
}

// Release releases the association in order (A-RELEASE, PS3.8 7.2) and closes the connection. It waits for the
// message being sent, if any, then for the peer's A-RELEASE-RP, at most until ctx is done or the ARTIM timeout,
// after which it aborts.
func (a *Association) Release(ctx context.Context) error { return a.release(ctx) }

// endedErr is the error an operation returns on an association that is over.
func (a *Association) endedErr() error {
	if err := a.Err(); err != nil {
		return err
	}
	return &StateError{State: a.State(), Event: Evt9}
}
