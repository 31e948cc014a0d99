package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"renkei/dicom"
)

// Storage commitment attributes (PS3.4 J.3.2, J.3.3).
const (
	tagTransactionUID           dicom.Tag = 0x00081195
	commitActionRequest         uint16    = 1 // Request Storage Commitment (PS3.4 Table J.3-1)
	commitEventSuccess          uint16    = 1 // Storage Commitment Request Successful (PS3.4 Table J.3-2)
	commitEventFailures         uint16    = 2 // Storage Commitment Request Complete – Failures Exist
	commitReportTimeout                   = 10 * time.Minute
	failureReasonNoSuchInstance uint16    = 0x0112 // PS3.4 J.3.3.1.1.1: no such object instance
)

// SOPReference names one instance in a storage commitment request or result (Referenced SOP Sequence, Failed SOP
// Sequence items, PS3.4 J.3.2.1.1.1, J.3.3.1.1.1).
type SOPReference struct {
	SOPClassUID, SOPInstanceUID string
	FailureReason               uint16 // in a failed reference: 0x0110, 0x0112, 0x0119, 0x0122, 0x0131 (PS3.4 J.3.3.1.1.1)
}

// CommitRequest is a storage commitment request, the N-ACTION-RQ of PS3.4 J.3.2.
type CommitRequest struct {
	TransactionUID string
	References     []SOPReference
}

// CommitmentHandler serves the Storage Commitment Push Model as SCP (PS3.4 J). Commit is called after the
// N-ACTION-RSP was sent and returns, for each reference, whether the archive holds the instance safely: committed,
// or failed with a FailureReason. The result goes back as N-EVENT-REPORT-RQ on the same association when it is still
// open, else on a new one to the requestor's address from Handlers.MoveDestination (PS3.4 J.3.3).
//
// A handler that cannot tell yet (a store-and-forward gateway whose line is down) returns neither list (nil, nil):
// nothing is reported now, and the handler reports later itself with Dialer.ReportCommitment, on a new association
// as PS3.4 J.3.3 allows.
type CommitmentHandler interface {
	Commit(ctx context.Context, a *Association, req *CommitRequest) (committed, failed []SOPReference)
}

// EventReport is an N-EVENT-REPORT-RQ received (PS3.7 10.1.1).
type EventReport struct {
	SOPClassUID, SOPInstanceUID string // Affected SOP Class and Instance UID
	EventTypeID                 uint16
	Info                        *dicom.DataSet // Event Information, nil when absent
}

// CommitmentResult reads a storage commitment result from an N-EVENT-REPORT (PS3.4 J.3.3).
func CommitmentResult(ev *EventReport) (transactionUID string, committed, failed []SOPReference, err error) {
	if ev.SOPClassUID != StorageCommitmentPushModel || ev.Info == nil {
		return "", nil, nil, errors.New("dimse: not a storage commitment event report")
	}
	return ev.Info.String(tagTransactionUID), references(ev.Info, dicom.ReferencedSOPSequence),
		references(ev.Info, dicom.FailedSOPSequence), nil
}

func references(ds *dicom.DataSet, seq dicom.Tag) []SOPReference {
	e := ds.Get(seq)
	if e == nil {
		return nil
	}
	out := make([]SOPReference, 0, len(e.Items))
	for _, it := range e.Items {
		r := SOPReference{SOPClassUID: it.String(dicom.ReferencedSOPClassUID), SOPInstanceUID: it.String(dicom.ReferencedSOPInstanceUID)}
		if v, ok := it.Int(dicom.FailureReason); ok {
			r.FailureReason = uint16(v)
		}
		out = append(out, r)
	}
	return out
}

func referenceSequence(seq dicom.Tag, refs []SOPReference, withReason bool) *dicom.Element {
	e := &dicom.Element{Tag: seq, VR: "SQ", Length: dicom.UndefinedLength, Items: []*dicom.DataSet{}}
	for _, r := range refs {
		it := &dicom.DataSet{}
		it.SetString(dicom.ReferencedSOPClassUID, "UI", r.SOPClassUID)
		it.SetString(dicom.ReferencedSOPInstanceUID, "UI", r.SOPInstanceUID)
		if withReason {
			it.SetUint16(dicom.FailureReason, r.FailureReason)
		}
		e.Items = append(e.Items, it)
	}
	return e
}

// RequestCommitment asks the peer, as Storage Commitment SCP, to commit the referenced instances (N-ACTION-RQ, PS3.4
// J.3.2) and returns the N-ACTION-RSP status. The result arrives later as an N-EVENT-REPORT, given to the Dialer's
// Handlers.EventReport (read it with CommitmentResult).
func (a *Association) RequestCommitment(ctx context.Context, transactionUID string, refs []SOPReference) (Status, error) {
	pc, err := a.contextFor(StorageCommitmentPushModel, "")
	if err != nil {
		return Status{}, err
	}
	ds := &dicom.DataSet{}
	ds.SetString(tagTransactionUID, "UI", transactionUID)
	ds.Set(referenceSequence(dicom.ReferencedSOPSequence, refs, false))
	b, err := EncodeDataSet(ds, pc.TransferSyntaxes[0])
	if err != nil {
		return Status{}, err
	}
	rsp, err := a.invoke(ctx, pc, &Command{CommandField: NActionRQ, RequestedSOPClassUID: StorageCommitmentPushModel,
		RequestedSOPInstanceUID: StorageCommitmentPushModelInstance, ActionTypeID: commitActionRequest}, bytes.NewReader(b))
	if err != nil {
		return Status{}, err
	}
	return statusOf(rsp.cmd), nil
}

// nAction performs N-ACTION (PS3.7 10.1.4) for the Storage Commitment Push Model (PS3.4 J.3.2): the request is
// checked and answered at once; the commitment itself runs after the response, and its result is reported.
func (a *Association) nAction(ctx context.Context, m *message) response {
	c := &Command{AffectedSOPClassUID: m.cmd.RequestedSOPClassUID, AffectedSOPInstanceUID: m.cmd.RequestedSOPInstanceUID,
		ActionTypeID: m.cmd.ActionTypeID}
	fail := func(st Status) response {
		setStatus(c, st)
		return response{cmd: c}
	}
	switch {
	case a.handlers == nil || a.handlers.Commit == nil || m.pc.AbstractSyntax != StorageCommitmentPushModel:
		return fail(Failure(StatusSOPClassNotSupported, "N-ACTION is provided for storage commitment only"))
	case m.cmd.RequestedSOPClassUID != StorageCommitmentPushModel:
		return fail(Failure(StatusNoSuchSOPClass, "requested SOP class is not the Storage Commitment Push Model"))
	case m.cmd.RequestedSOPInstanceUID != StorageCommitmentPushModelInstance:
		return fail(Failure(StatusNoSuchSOPInstance, "requested SOP instance is not the well-known 1.2.840.10008.1.20.1.1"))
	case m.cmd.ActionTypeID != commitActionRequest:
		return fail(Failure(StatusNoSuchActionType, fmt.Sprintf("action type %d", m.cmd.ActionTypeID)))
	case m.data == nil:
		return fail(Failure(StatusMissingAttribute, "no action information"))
	}
	ds, err := a.readDataSet(m, MaxIdentifierLength)
	if err != nil {
		return fail(Failure(StatusProcessingFailure, "action information: "+err.Error()))
	}
	req := &CommitRequest{TransactionUID: ds.String(tagTransactionUID), References: references(ds, dicom.ReferencedSOPSequence)}
	if !dicom.ValidUID(req.TransactionUID) || len(req.References) == 0 {
		return fail(Failure(StatusMissingAttribute, "Transaction UID and Referenced SOP Sequence are required (PS3.4 J.3.2.1.1)"))
	}
	rsp := fail(Success())
	rsp.after = func() { go a.commit(req) }
	return rsp
}

// commit runs the CommitmentHandler and reports its result (PS3.4 J.3.3).
func (a *Association) commit(req *CommitRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), commitReportTimeout)
	defer cancel()
	committed, failed := a.handlers.Commit.Commit(ctx, a, req)
	if committed == nil && failed == nil {
		a.log.Info("dimse storage commitment deferred: the handler reports later", "transaction", req.TransactionUID)
		return
	}
	c, ds := commitmentReport(req.TransactionUID, committed, failed)
	if pc, err := a.contextFor(StorageCommitmentPushModel, ""); err == nil && a.Err() == nil {
		st, err := a.eventReport(ctx, pc, c, ds)
		if err == nil {
			a.log.Info("dimse storage commitment reported", "transaction", req.TransactionUID, "committed", len(committed),
				"failed", len(failed), "status", st)
			return
		}
		a.log.Info("dimse storage commitment report on the same association failed", "err", err)
	}
	// PS3.4 J.3.3: the SCP may report on a new association, on which it plays the SCP role of the SOP class.
	addr, ok := "", false
	if a.handlers.MoveDestination != nil {
		addr, ok = a.handlers.MoveDestination(ctx, a, a.peer.CallingAETitle)
	}
	if !ok {
		a.log.Warn("dimse storage commitment result not reported: requestor address unknown", "ae", a.peer.CallingAETitle)
		return
	}
	d, addr, err := a.outgoing(addr)
	if err != nil {
		a.log.Warn("dimse storage commitment result not reported", "ae", a.peer.CallingAETitle, "err", err)
		return
	}
	if err := d.sendReport(ctx, addr, a.peer.CalledAETitle, a.peer.CallingAETitle, c, ds); err != nil {
		a.log.Warn("dimse storage commitment result not reported", "ae", a.peer.CallingAETitle, "err", err)
	}
}

// commitmentReport builds the N-EVENT-REPORT-RQ of a storage commitment result (PS3.4 J.3.3).
func commitmentReport(transactionUID string, committed, failed []SOPReference) (*Command, *dicom.DataSet) {
	ds := &dicom.DataSet{}
	ds.SetString(tagTransactionUID, "UI", transactionUID)
	if len(committed) > 0 {
		ds.Set(referenceSequence(dicom.ReferencedSOPSequence, committed, false))
	}
	ev := commitEventSuccess
	if len(failed) > 0 {
		ev = commitEventFailures
		failed = append([]SOPReference(nil), failed...)
		for i := range failed {
			if failed[i].FailureReason == 0 {
				failed[i].FailureReason = failureReasonNoSuchInstance
			}
		}
		ds.Set(referenceSequence(dicom.FailedSOPSequence, failed, true))
	}
	return &Command{CommandField: NEventReportRQ, AffectedSOPClassUID: StorageCommitmentPushModel,
		AffectedSOPInstanceUID: StorageCommitmentPushModelInstance, EventTypeID: ev}, ds
}

// ReportCommitment reports a storage commitment result on a new association from callingAE (the SCP that was asked)
// to calledAE at addr (the requestor), which plays the SCU role of the Storage Commitment Push Model there as PS3.4
// J.3.3 describes: the way a deferring CommitmentHandler reports once it knows. A failed reference without a
// FailureReason is reported as 0x0112 (no such object instance).
func (d *Dialer) ReportCommitment(ctx context.Context, addr, callingAE, calledAE, transactionUID string, committed, failed []SOPReference) error {
	c, ds := commitmentReport(transactionUID, committed, failed)
	return d.sendReport(ctx, addr, callingAE, calledAE, c, ds)
}

func (d *Dialer) sendReport(ctx context.Context, addr, callingAE, calledAE string, c *Command, ds *dicom.DataSet) error {
	sub, err := d.Dial(ctx, addr, callingAE, calledAE, []PresentationContext{{AbstractSyntax: StorageCommitmentPushModel,
		TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian}, SCPRole: true}})
	if err != nil {
		return err
	}
	defer sub.Release(ctx)
	pc, err := sub.contextFor(StorageCommitmentPushModel, "")
	if err != nil {
		return err
	}
	st, err := sub.eventReport(ctx, pc, c, ds)
	if err == nil && st.IsFailure() {
		err = fmt.Errorf("the requestor answered the report with status 0x%04X", st.Code)
	}
	return err
}

func (a *Association) eventReport(ctx context.Context, pc *PresentationContext, c *Command, ds *dicom.DataSet) (Status, error) {
	b, err := EncodeDataSet(ds, pc.TransferSyntaxes[0])
	if err != nil {
		return Status{}, err
	}
	cc := *c
	rsp, err := a.invoke(ctx, pc, &cc, bytes.NewReader(b))
	if err != nil {
		return Status{}, err
	}
	return statusOf(rsp.cmd), nil
}

// nEventReport performs N-EVENT-REPORT as its receiver (PS3.7 10.1.1): the event goes to Handlers.EventReport.
func (a *Association) nEventReport(ctx context.Context, m *message) response {
	c := &Command{AffectedSOPClassUID: m.cmd.AffectedSOPClassUID, AffectedSOPInstanceUID: m.cmd.AffectedSOPInstanceUID,
		EventTypeID: m.cmd.EventTypeID}
	if a.handlers == nil || a.handlers.EventReport == nil {
		setStatus(c, Failure(StatusSOPClassNotSupported, "event reports are not received here"))
		return response{cmd: c}
	}
	ev := &EventReport{SOPClassUID: m.cmd.AffectedSOPClassUID, SOPInstanceUID: m.cmd.AffectedSOPInstanceUID, EventTypeID: m.cmd.EventTypeID}
	if m.data != nil {
		ds, err := a.readDataSet(m, MaxIdentifierLength)
		if err != nil {
			setStatus(c, Failure(StatusProcessingFailure, "event information: "+err.Error()))
			return response{cmd: c}
		}
		ev.Info = ds
	}
	setStatus(c, a.handlers.EventReport(ctx, a, ev))
	return response{cmd: c}
}
