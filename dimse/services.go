package dimse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime/debug"

	"renkei/dicom"
)

// response is the final answer to a request: its command and an optional data set.
type response struct {
	cmd   *Command
	data  io.Reader
	after func() // runs once the response is sent
}

// handleRequest performs one request from the peer and sends its final response. Pending responses, if any, are sent
// by the service while it runs.
func (a *Association) handleRequest(m *message) {
	ctx, cancel := context.WithCancel(a.ctx)
	a.opMu.Lock()
	a.opID, a.opCancel = m.cmd.MessageID, cancel
	a.opMu.Unlock()
	rsp := a.perform(ctx, m)
	a.opMu.Lock()
	a.opCancel = nil
	a.opMu.Unlock()
	cancel()
	if m.data != nil {
		if err := m.data.drain(); err != nil {
			a.busy.Store(false)
			return // the association ended during the data set: there is no one to answer
		}
	}
	c := rsp.cmd
	c.CommandField = m.cmd.CommandField | 0x8000
	c.MessageIDBeingRespondedTo = m.cmd.MessageID
	if c.AffectedSOPClassUID == "" {
		c.AffectedSOPClassUID = m.cmd.AffectedSOPClassUID
	}
	// Responses after the last one sent may be the peer's next request: the operation is over before we answer.
	a.busy.Store(false)
	if err := a.send(a.ctx, m.pc.ID, c, rsp.data); err != nil {
		a.log.Info("dimse response not sent", "command", commandName(c.CommandField), "err", err)
		return
	}
	if rsp.after != nil {
		rsp.after()
	}
}

// perform runs the service for a request. A handler that panics answers 0x0110 (processing failure) and is logged.
func (a *Association) perform(ctx context.Context, m *message) (rsp response) {
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("dimse handler panic", "command", commandName(m.cmd.CommandField), "panic", p, "stack", string(debug.Stack()))
			rsp = response{cmd: &Command{}}
			setStatus(rsp.cmd, Failure(StatusProcessingFailure, "internal error"))
		}
	}()
	switch m.cmd.CommandField {
	case CEchoRQ:
		return a.cEcho(ctx, m)
	case CStoreRQ:
		return a.cStore(ctx, m)
	case CFindRQ:
		return a.cFind(ctx, m)
	case CMoveRQ, CGetRQ:
		return a.retrieve(ctx, m)
	case NActionRQ:
		return a.nAction(ctx, m)
	case NEventReportRQ:
		return a.nEventReport(ctx, m)
	}
	// PS3.7 C.4.2: a command we do not provide.
	a.log.Info("dimse unsupported request", "command", commandName(m.cmd.CommandField))
	rsp.cmd = &Command{}
	setStatus(rsp.cmd, Failure(StatusUnrecognizedOperation, "operation not supported"))
	return rsp
}

// sopClassMismatch checks that a request's SOP class is its presentation context's abstract syntax (PS3.7 9.1.1.1.2).
func sopClassMismatch(m *message, uid string) *Status {
	if uid != m.pc.AbstractSyntax {
		s := Failure(StatusSOPClassNotSupported, fmt.Sprintf("SOP class %s on a presentation context for %s", uid, m.pc.AbstractSyntax))
		return &s
	}
	return nil
}

// cEcho performs C-ECHO (PS3.7 9.1.5, PS3.4 A).
func (a *Association) cEcho(ctx context.Context, m *message) response {
	st := Success()
	if bad := sopClassMismatch(m, m.cmd.AffectedSOPClassUID); bad != nil {
		st = *bad
	} else if a.handlers != nil && a.handlers.Echo != nil {
		st = a.handlers.Echo(ctx, a)
	}
	c := &Command{}
	setStatus(c, st)
	return response{cmd: c}
}

// storeHandler is the handler for C-STORE requests: the one of our C-GET in progress, else the association's.
func (a *Association) storeHandler() StoreHandler {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	if a.getStore != nil {
		return a.getStore
	}
	if a.handlers != nil {
		return a.handlers.Store
	}
	return nil
}

// cStore performs C-STORE (PS3.7 9.1.1, PS3.4 B.2): the data set streams to the handler.
func (a *Association) cStore(ctx context.Context, m *message) response {
	c := &Command{AffectedSOPClassUID: m.cmd.AffectedSOPClassUID, AffectedSOPInstanceUID: m.cmd.AffectedSOPInstanceUID}
	h := a.storeHandler()
	var st Status
	switch {
	case m.data == nil:
		st = Failure(StatusCannotUnderstand, "C-STORE-RQ without a data set")
	case h == nil:
		st = Failure(StatusSOPClassNotSupported, "storage not provided")
	case sopClassMismatch(m, m.cmd.AffectedSOPClassUID) != nil:
		st = *sopClassMismatch(m, m.cmd.AffectedSOPClassUID)
	case !dicom.ValidUID(m.cmd.AffectedSOPInstanceUID):
		st = Failure(StatusCannotUnderstand, "invalid Affected SOP Instance UID")
	default:
		req := &StoreRequest{
			MessageID: m.cmd.MessageID, Priority: m.cmd.Priority,
			SOPClassUID: m.cmd.AffectedSOPClassUID, SOPInstanceUID: m.cmd.AffectedSOPInstanceUID,
			TransferSyntaxUID:     m.pc.TransferSyntaxes[0],
			MoveOriginatorAETitle: m.cmd.MoveOriginatorApplicationEntityTitle, MoveOriginatorMessageID: m.cmd.MoveOriginatorMessageID,
		}
		st = h.Store(ctx, a, req, m.data.pr)
	}
	a.log.Debug("dimse C-STORE", "sop_instance", m.cmd.AffectedSOPInstanceUID, "status", st)
	setStatus(c, st)
	return response{cmd: c}
}

// cFind performs C-FIND (PS3.7 9.1.2, PS3.4 C.4.1): each match is a pending response with its identifier.
func (a *Association) cFind(ctx context.Context, m *message) response {
	c := &Command{}
	h := a.handlers
	if h == nil || h.Find == nil {
		setStatus(c, Failure(StatusSOPClassNotSupported, "query not provided"))
		return response{cmd: c}
	}
	if bad := sopClassMismatch(m, m.cmd.AffectedSOPClassUID); bad != nil {
		setStatus(c, *bad)
		return response{cmd: c}
	}
	if m.data == nil {
		setStatus(c, Failure(StatusCannotUnderstand, "C-FIND-RQ without an identifier"))
		return response{cmd: c}
	}
	id, err := a.readDataSet(m, MaxIdentifierLength)
	if err != nil {
		setStatus(c, Failure(StatusDataSetDoesNotMatchSOPClass, "identifier: "+err.Error()))
		return response{cmd: c}
	}
	ts := m.pc.TransferSyntaxes[0]
	req := &FindRequest{MessageID: m.cmd.MessageID, Priority: m.cmd.Priority, SOPClassUID: m.cmd.AffectedSOPClassUID,
		Identifier: id, TransferSyntaxUID: ts}
	matches := 0
	emit := func(ds *dicom.DataSet) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := EncodeDataSet(ds, ts)
		if err != nil {
			return err
		}
		matches++
		p := &Command{CommandField: CFindRSP, MessageIDBeingRespondedTo: m.cmd.MessageID,
			AffectedSOPClassUID: m.cmd.AffectedSOPClassUID, Status: StatusPending}
		return a.send(ctx, m.pc.ID, p, bytes.NewReader(b))
	}
	st := h.Find.Find(ctx, a, req, emit)
	if ctx.Err() != nil && a.ctx.Err() == nil {
		st = Status{Code: StatusCancel} // PS3.4 C.4.1.1.4: canceled by C-CANCEL-RQ
	}
	a.log.Debug("dimse C-FIND", "matches", matches, "status", st)
	setStatus(c, st)
	return response{cmd: c}
}
