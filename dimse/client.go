package dimse

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"time"

	"renkei/dicom"
)

// Dialer opens associations as requestor (PS3.8 7.1.1). The zero value is usable.
type Dialer struct {
	// MaxPDULength is the maximum P-DATA-TF length we announce and accept (PS3.8 D.1); zero means
	// DefaultMaxPDULength.
	MaxPDULength uint32
	// ARTIM bounds the wait for A-RELEASE-RP and for the peer to close after an abort. Zero means DefaultARTIM.
	ARTIM time.Duration
	// IdleTimeout aborts the association when nothing arrives for this long while no operation is in progress.
	// Zero means no limit.
	IdleTimeout time.Duration
	// TLSConfig, when set, makes Dial speak DICOM TLS (PS3.15 B.1).
	TLSConfig *tls.Config
	// Handlers serve the requests the peer sends on our association: C-STORE sub-operations of a C-GET (unless Get
	// is given its own handler), N-EVENT-REPORT of storage commitment.
	Handlers Handlers
	// Logger receives association events; nil discards them.
	Logger *slog.Logger
}

// Dial opens an association with a zero Dialer (see Dialer.Dial).
func Dial(ctx context.Context, addr, callingAE, calledAE string, contexts []PresentationContext) (*Association, error) {
	var d Dialer
	return d.Dial(ctx, addr, callingAE, calledAE, contexts)
}

// Dial connects to addr (host:port) and negotiates an association from callingAE to calledAE proposing contexts
// (their IDs are assigned here: 1, 3, 5…; SCPRole asks for role selection, PS3.7 D.3.3.4, and ExtendedNegotiation
// for SOP class extended negotiation, PS3.7 D.3.3.5). It returns once the
// A-ASSOCIATE-AC arrived, even if no context was accepted (operations then fail with *NoContextError); an
// A-ASSOCIATE-RJ is a *RejectError. ctx bounds the connection and the negotiation only, which also ends after the
// ARTIM timeout without an answer.
func (d *Dialer) Dial(ctx context.Context, addr, callingAE, calledAE string, contexts []PresentationContext) (*Association, error) {
	if err := checkAETitle(callingAE); err != nil {
		return nil, err
	}
	if err := checkAETitle(calledAE); err != nil {
		return nil, err
	}
	if len(contexts) == 0 || len(contexts) > maxContexts {
		return nil, fmt.Errorf("dimse: %d presentation contexts proposed: between 1 and %d are possible (PS3.8 9.3.2.2)", len(contexts), maxContexts)
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a := newAssociation(true, log.With("remote", addr, "calling", callingAE, "called", calledAE), d.ARTIM, d.IdleTimeout, d.MaxPDULength)
	rq := &AAssociateRQ{ProtocolVersion: 1, CalledAETitle: calledAE, CallingAETitle: callingAE,
		ApplicationContextName: ApplicationContextName,
		UserInformation: UserInformation{MaximumLength: a.maxPDU, ImplementationClassUID: dicom.RenkeiImplementationClassUID,
			ImplementationVersionName: dicom.RenkeiImplementationVersion}}
	roles, extended := map[string]bool{}, map[string]bool{}
	for i, pc := range contexts {
		if !dicom.ValidUID(pc.AbstractSyntax) || len(pc.TransferSyntaxes) == 0 {
			return nil, fmt.Errorf("dimse: presentation context %q needs a valid abstract syntax and at least one transfer syntax", pc.AbstractSyntax)
		}
		rq.PresentationContexts = append(rq.PresentationContexts, PresentationContext{ID: byte(2*i + 1),
			AbstractSyntax: pc.AbstractSyntax, TransferSyntaxes: pc.TransferSyntaxes})
		if pc.SCPRole && !roles[pc.AbstractSyntax] {
			roles[pc.AbstractSyntax] = true
			rq.UserInformation.RoleSelections = append(rq.UserInformation.RoleSelections,
				RoleSelection{SOPClassUID: pc.AbstractSyntax, SCU: pc.SCURole, SCP: true})
		}
		if len(pc.ExtendedNegotiation) > 0 && !extended[pc.AbstractSyntax] {
			extended[pc.AbstractSyntax] = true
			rq.UserInformation.ExtendedNegotiations = append(rq.UserInformation.ExtendedNegotiations,
				ExtendedNegotiation{SOPClassUID: pc.AbstractSyntax, Info: pc.ExtendedNegotiation})
		}
	}
	if _, err := EncodePDU(rq); err != nil {
		return nil, err
	}
	a.rq = rq
	a.peer.CallingAETitle, a.peer.CalledAETitle = callingAE, calledAE
	a.handlers = &d.Handlers
	a.dialCtx = ctx
	a.dial = func(ctx context.Context) (net.Conn, error) {
		var nd net.Dialer
		conn, err := nd.DialContext(ctx, "tcp", addr)
		if err != nil || d.TLSConfig == nil {
			return conn, err
		}
		cfg := d.TLSConfig
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		st := tc.ConnectionState()
		a.peer.TLS = &st
		return tc, nil
	}
	_ = a.fire(Evt1, &input{})
	if a.State() == Sta1 {
		return nil, a.Err()
	}
	a.peer.Addr = a.conn.RemoteAddr()
	go func() {
		a.readLoop()
		a.terminate(nil)
	}()
	stop := context.AfterFunc(ctx, func() { a.Abort() })
	defer stop()
	// PS3.8 leaves the wait for A-ASSOCIATE-AC to the implementation: at most the ARTIM timeout, as dcmtk's ACSE timeout.
	t := time.NewTimer(a.artimDur)
	defer t.Stop()
	select {
	case <-a.establishedCh:
		return a, nil
	case <-a.done:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, a.Err()
	case <-t.C:
		a.Abort()
		return nil, fmt.Errorf("dimse: no answer to A-ASSOCIATE-RQ from %s within %v", addr, a.artimDur)
	}
}

// Echo sends C-ECHO-RQ and returns the response status (PS3.7 9.1.5). The error reports a failed exchange
// (no Verification context, association lost, ctx done: the association is then aborted).
func (a *Association) Echo(ctx context.Context) (Status, error) {
	pc, err := a.contextFor(Verification, "")
	if err != nil {
		return Status{}, err
	}
	rsp, err := a.invoke(ctx, pc, &Command{CommandField: CEchoRQ, AffectedSOPClassUID: Verification}, nil)
	if err != nil {
		return Status{}, err
	}
	return statusOf(rsp.cmd), nil
}

// Store sends C-STORE-RQ with the data set read from data, which must be in transfer syntax ts (no preamble or File
// Meta Information), on a context accepted for sopClass in ts, and returns the response status (PS3.7 9.1.1). The
// data set streams as it is read. A read error after the first fragment aborts the association, as does ctx ending.
func (a *Association) Store(ctx context.Context, sopClass, sopInstance, ts string, data io.Reader) (Status, error) {
	return a.store(ctx, &Command{CommandField: CStoreRQ, AffectedSOPClassUID: sopClass, AffectedSOPInstanceUID: sopInstance,
		Priority: PriorityMedium}, ts, data)
}

func (a *Association) store(ctx context.Context, c *Command, ts string, data io.Reader) (Status, error) {
	pc, err := a.contextFor(c.AffectedSOPClassUID, ts)
	if err != nil {
		return Status{}, err
	}
	rsp, err := a.invoke(ctx, pc, c, data)
	if err != nil {
		return Status{}, err
	}
	return statusOf(rsp.cmd), nil
}

// invoke sends a request and waits for its one response. If ctx ends first, the association is aborted: a C-ECHO or
// C-STORE cannot be canceled (PS3.7 9.3.2).
func (a *Association) invoke(ctx context.Context, pc *PresentationContext, c *Command, data io.Reader) (*message, error) {
	id, ch := a.register()
	defer a.unregister(id)
	c.MessageID = id
	if err := a.send(ctx, pc.ID, c, data); err != nil {
		return nil, err
	}
	m, err := a.await(ctx, ch)
	if err != nil {
		if ctx.Err() != nil {
			a.Abort()
		}
		return nil, err
	}
	if m.data != nil {
		m.data.close()
	}
	return m, nil
}

// Find sends C-FIND-RQ with identifier on a context accepted for model (PatientRoot… or StudyRoot…Find) and yields
// each match (PS3.7 9.1.2). A final status other than success or warning is yielded as a *StatusError; a lost
// association as its error. Stopping the iteration early, or ctx ending, sends C-CANCEL-RQ and waits for the final
// response (PS3.7 9.3.2.3), aborting if it does not come within the ARTIM timeout.
func (a *Association) Find(ctx context.Context, model string, identifier *dicom.DataSet) iter.Seq2[*dicom.DataSet, error] {
	return func(yield func(*dicom.DataSet, error) bool) {
		pc, err := a.contextFor(model, "")
		if err != nil {
			yield(nil, err)
			return
		}
		stopped := false
		final, err := a.request(ctx, pc, &Command{CommandField: CFindRQ, AffectedSOPClassUID: model, Priority: PriorityMedium},
			identifier, func(m *message) bool {
				var ds *dicom.DataSet
				var err error
				if m.data != nil {
					ds, err = a.readDataSet(m, MaxIdentifierLength)
				} else {
					err = errors.New("dimse: pending C-FIND-RSP without an identifier")
				}
				stopped = !yield(ds, err)
				return !stopped
			})
		switch {
		case stopped:
		case err != nil:
			yield(nil, err)
		default:
			if final.data != nil {
				final.data.close()
			}
			if err := statusOf(final.cmd).Err(); err != nil {
				yield(nil, err)
			}
		}
	}
}

// RetrieveResult is the outcome of a C-MOVE or C-GET (PS3.7 9.1.3, 9.1.4).
type RetrieveResult struct {
	Status        Status
	SubOperations SubOperations // as the final response (or the last pending one) counted them
	// FailedSOPInstanceUIDs lists the instances whose sub-operation failed, from the final response's Failed SOP
	// Instance UID List (0008,0058), when the peer sent it.
	FailedSOPInstanceUIDs []string
}

// Move sends C-MOVE-RQ asking the peer to send what identifier selects to the AE destination, and waits for the
// final response (PS3.7 9.1.3). ctx ending sends C-CANCEL-RQ. The error reports a failed exchange; a failure status
// is in the result and also returned as a *StatusError.
func (a *Association) Move(ctx context.Context, model, destination string, identifier *dicom.DataSet) (RetrieveResult, error) {
	pc, err := a.contextFor(model, "")
	if err != nil {
		return RetrieveResult{}, err
	}
	if err := checkAETitle(destination); err != nil {
		return RetrieveResult{}, err
	}
	return a.retrieveSCU(ctx, pc, &Command{CommandField: CMoveRQ, AffectedSOPClassUID: model, MoveDestination: destination,
		Priority: PriorityMedium}, identifier)
}

// Get sends C-GET-RQ and receives the matching instances as C-STORE sub-operations on this association, each given
// to store (or to the Dialer's Handlers.Store when store is nil), until the final response (PS3.7 9.1.4). The
// storage SOP classes must have been proposed with SCPRole. ctx ending sends C-CANCEL-RQ.
func (a *Association) Get(ctx context.Context, model string, identifier *dicom.DataSet, store StoreHandler) (RetrieveResult, error) {
	pc, err := a.contextFor(model, "")
	if err != nil {
		return RetrieveResult{}, err
	}
	if store != nil {
		a.opMu.Lock()
		a.getStore = store
		a.opMu.Unlock()
		defer func() {
			a.opMu.Lock()
			a.getStore = nil
			a.opMu.Unlock()
		}()
	}
	return a.retrieveSCU(ctx, pc, &Command{CommandField: CGetRQ, AffectedSOPClassUID: model, Priority: PriorityMedium}, identifier)
}

func (a *Association) retrieveSCU(ctx context.Context, pc *PresentationContext, c *Command, identifier *dicom.DataSet) (RetrieveResult, error) {
	var res RetrieveResult
	final, err := a.request(ctx, pc, c, identifier, func(m *message) bool {
		if m.cmd.SubOperations != nil {
			res.SubOperations = *m.cmd.SubOperations
		}
		if m.data != nil {
			m.data.close()
		}
		return true
	})
	if err != nil {
		return res, err
	}
	res.Status = statusOf(final.cmd)
	if final.cmd.SubOperations != nil {
		res.SubOperations = *final.cmd.SubOperations
		res.SubOperations.Remaining = 0
	}
	if final.data != nil {
		if ds, err := a.readDataSet(final, MaxIdentifierLength); err == nil {
			res.FailedSOPInstanceUIDs = ds.Strings(tagFailedSOPInstanceUIDList)
		}
	}
	return res, res.Status.Err()
}

// request sends a C-FIND, C-MOVE or C-GET request and handles its responses: each pending one goes to pending
// (which returns false to stop), and the final one is returned. Stopping early or ctx ending sends C-CANCEL-RQ and
// waits for the final response, at most an ARTIM timeout before aborting.
func (a *Association) request(ctx context.Context, pc *PresentationContext, c *Command, identifier *dicom.DataSet, pending func(*message) bool) (*message, error) {
	b, err := EncodeDataSet(identifier, pc.TransferSyntaxes[0])
	if err != nil {
		return nil, err
	}
	id, ch := a.register()
	defer a.unregister(id)
	c.MessageID = id
	if err := a.send(ctx, pc.ID, c, bytes.NewReader(b)); err != nil {
		return nil, err
	}
	canceled := false
	var deadline <-chan time.Time
	cancel := func() {
		if canceled {
			return
		}
		canceled = true
		deadline = time.After(a.artimDur)
		_ = a.send(context.Background(), pc.ID, &Command{CommandField: CCancelRQ, MessageIDBeingRespondedTo: id}, nil)
	}
	ctxDone := ctx.Done()
	for {
		var m *message
		select {
		case m = <-ch:
		case <-a.done:
			select {
			case m = <-ch:
			default:
				return nil, a.endedErr()
			}
		case <-ctxDone:
			ctxDone = nil
			cancel()
			continue
		case <-deadline:
			a.Abort()
			return nil, fmt.Errorf("dimse: no final response after C-CANCEL-RQ: %w", ctx.Err())
		}
		if !isPending(m.cmd.Status) {
			if canceled && ctx.Err() != nil {
				if m.data != nil {
					m.data.close()
				}
				return nil, ctx.Err()
			}
			return m, nil
		}
		if canceled {
			if m.data != nil {
				m.data.close()
			}
			continue
		}
		if !pending(m) {
			cancel()
		}
	}
}
