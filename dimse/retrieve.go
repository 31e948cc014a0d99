package dimse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"renkei/dicom"
)

// tagFailedSOPInstanceUIDList is (0008,0058), sent in the final C-MOVE/C-GET response when sub-operations failed
// (PS3.4 C.4.2.1.4.2).
const tagFailedSOPInstanceUIDList dicom.Tag = 0x00080058

// pendingInterval spaces the pending C-MOVE and C-GET responses after the first one. They are optional and report
// the counts at their time (PS3.4 C.4.2.3.1, C.4.3.3.1); one after every instance costs the requestor a wake-up per
// instance, and the sub-operations wait for that write, which slowed a study sent at ~800 instances/s by ~15%.
// dcm4chee-arc likewise sends pending C-MOVE responses at an interval (sendPendingCMoveInterval) and none for
// C-GET by default. Four a second still show progress and keep a long retrieve's association visibly alive.
const pendingInterval = 250 * time.Millisecond

// storeTarget performs the C-STORE sub-operations of a retrieve: a new association for C-MOVE, the requestor's own
// for C-GET.
type storeTarget struct {
	a   *Association
	get bool // only contexts on which the requestor accepted the SCP role (PS3.7 D.3.3.4)
}

// contextFor picks the context to send an instance on: its stored transfer syntax, else Explicit, else Implicit VR
// Little Endian (which Instance.Open then produces).
func (t storeTarget) contextFor(inst *Instance) *PresentationContext {
	for _, ts := range []string{inst.TransferSyntaxUID, dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian} {
		for _, pc := range t.a.Contexts() {
			if pc.AbstractSyntax == inst.SOPClassUID && pc.TransferSyntaxes[0] == ts && (!t.get || pc.SCPRole) {
				return &pc
			}
		}
	}
	return nil
}

// retrieve performs C-MOVE (PS3.4 C.4.2.3) or C-GET (PS3.4 C.4.3.3): the handler selects the instances, each is sent
// as a C-STORE sub-operation, a pending response reports the counts after each, the final one the outcome.
func (a *Association) retrieve(ctx context.Context, m *message) response {
	c := &Command{}
	fail := func(st Status) response {
		setStatus(c, st)
		return response{cmd: c}
	}
	isMove := m.cmd.CommandField == CMoveRQ
	var h RetrieveHandler
	if a.handlers != nil {
		h = a.handlers.Get
		if isMove {
			h = a.handlers.Move
		}
	}
	if h == nil {
		return fail(Failure(StatusSOPClassNotSupported, "retrieve not provided"))
	}
	if bad := sopClassMismatch(m, m.cmd.AffectedSOPClassUID); bad != nil {
		return fail(*bad)
	}
	if m.data == nil {
		return fail(Failure(StatusCannotUnderstand, "request without an identifier"))
	}
	id, err := a.readDataSet(m, MaxIdentifierLength)
	if err != nil {
		return fail(Failure(StatusDataSetDoesNotMatchSOPClass, "identifier: "+err.Error()))
	}
	req := &RetrieveRequest{MessageID: m.cmd.MessageID, Priority: m.cmd.Priority, SOPClassUID: m.cmd.AffectedSOPClassUID,
		Identifier: id, TransferSyntaxUID: m.pc.TransferSyntaxes[0], MoveDestination: m.cmd.MoveDestination}
	addr := ""
	if isMove {
		ok := false
		if a.handlers.MoveDestination != nil && m.cmd.MoveDestination != "" {
			addr, ok = a.handlers.MoveDestination(ctx, a, m.cmd.MoveDestination)
		}
		if !ok {
			a.log.Info("dimse C-MOVE to an unknown destination", "destination", m.cmd.MoveDestination)
			return fail(Failure(StatusMoveDestinationUnknown, "move destination unknown: "+m.cmd.MoveDestination))
		}
	}
	instances, st := h.Retrieve(ctx, a, req)
	if !st.IsSuccess() && !st.IsWarning() {
		return fail(st)
	}
	counts := SubOperations{Remaining: uint16(min(len(instances), 0xFFFF))}
	c.SubOperations = &counts
	if len(instances) == 0 {
		return fail(Success()) // PS3.4 C.4.2.1.4: nothing matched, zero sub-operations
	}
	target := storeTarget{a: a, get: true}
	if isMove {
		sub, err := a.dialMoveDestination(ctx, addr, m.cmd.MoveDestination, instances)
		if err != nil {
			a.log.Warn("dimse C-MOVE destination unreachable", "destination", m.cmd.MoveDestination, "addr", addr, "err", err)
			counts.Failed, counts.Remaining = counts.Remaining, 0
			return fail(Failure(StatusOutOfResourcesSubOps, "cannot associate with "+m.cmd.MoveDestination))
		}
		defer func() {
			if err := sub.Release(context.Background()); err != nil {
				a.log.Info("dimse C-MOVE sub-association release", "err", err)
			}
		}()
		target = storeTarget{a: sub}
	}
	var failed []string
	pending := &Command{CommandField: m.cmd.CommandField | 0x8000, MessageIDBeingRespondedTo: m.cmd.MessageID,
		AffectedSOPClassUID: m.cmd.AffectedSOPClassUID, Status: StatusPending}
	// Each instance is opened, and its first batch read, while the one before it is being sent and acknowledged:
	// the destination does not wait for the blob store between two C-STOREs. Two buffers take turns.
	var bufs [2][]byte
	openAhead := func(i int) chan *opened {
		if bufs[i%2] == nil {
			bufs[i%2] = make([]byte, target.a.batchSize())
		}
		ch := make(chan *opened, 1)
		go func(buf []byte) { ch <- target.open(ctx, &instances[i], buf) }(bufs[i%2])
		return ch
	}
	next := openAhead(0)
	var lastPending time.Time
	for i := range instances {
		if ctx.Err() != nil {
			break
		}
		o := <-next
		next = nil
		if i+1 < len(instances) {
			next = openAhead(i + 1)
		}
		inst := &instances[i]
		st, err := a.subOperation(ctx, target, o, m.cmd.MessageID)
		counts.Remaining--
		switch {
		case err != nil:
			// Not sent, or no answer: there is no status of the destination's to report (the instance could not be
			// opened, was trashed meanwhile, or the association failed).
			counts.Failed++
			failed = append(failed, inst.SOPInstanceUID)
			a.log.Info("dimse retrieve sub-operation failed", "sop_instance", inst.SOPInstanceUID, "err", err)
		case st.IsFailure():
			counts.Failed++
			failed = append(failed, inst.SOPInstanceUID)
			a.log.Info("dimse retrieve sub-operation refused by the destination", "sop_instance", inst.SOPInstanceUID, "status", st)
		case st.IsWarning():
			counts.Warning++
		default:
			counts.Completed++
		}
		if err != nil && target.a.Err() != nil {
			// The destination association is gone: the rest cannot be sent.
			for _, rest := range instances[i+1:] {
				failed = append(failed, rest.SOPInstanceUID)
			}
			counts.Failed += counts.Remaining
			counts.Remaining = 0
			break
		}
		if counts.Remaining > 0 && (lastPending.IsZero() || time.Since(lastPending) >= pendingInterval) {
			lastPending = time.Now()
			p := *pending
			sub := counts
			p.SubOperations = &sub
			if err := a.send(ctx, m.pc.ID, &p, nil); err != nil {
				break
			}
		}
	}
	if next != nil {
		if o := <-next; o.data != nil {
			o.data.Close()
		}
	}
	switch {
	case ctx.Err() != nil:
		st = Status{Code: StatusCancel} // PS3.4 C.4.2.1.5: canceled by C-CANCEL-RQ
	case counts.Failed > 0 && counts.Completed == 0 && counts.Warning == 0:
		st = Failure(StatusOutOfResourcesSubOps, "every sub-operation failed")
	case counts.Failed > 0 || counts.Warning > 0:
		st = Status{Code: StatusSubOperationsWarning}
	default:
		st = Success()
	}
	a.log.Info("dimse retrieve done", "command", commandName(m.cmd.CommandField), "completed", counts.Completed,
		"failed", counts.Failed, "warning", counts.Warning, "status", st)
	setStatus(c, st)
	rsp := response{cmd: c}
	if len(failed) > 0 {
		ds := &dicom.DataSet{}
		ds.SetString(tagFailedSOPInstanceUIDList, "UI", joinUIDs(failed))
		if b, err := EncodeDataSet(ds, m.pc.TransferSyntaxes[0]); err == nil {
			rsp.data = bytes.NewReader(b)
		}
	}
	return rsp
}

// opened is the instance of a sub-operation, opened on the context it goes on and its first batch read.
type opened struct {
	inst *Instance
	pc   *PresentationContext // nil: the destination accepted no context for it
	data io.ReadCloser
	pre  *preread // data's first batch
	err  error    // from Open
}

// open picks the context inst goes on and opens it in that context's transfer syntax, reading its first batch into
// buf (a.batchSize() bytes).
func (t storeTarget) open(ctx context.Context, inst *Instance, buf []byte) *opened {
	o := &opened{inst: inst, pc: t.contextFor(inst)}
	if o.pc == nil {
		return o
	}
	ts := o.pc.TransferSyntaxes[0]
	rc, err := inst.Open(ctx, ts)
	if err != nil {
		o.err = fmt.Errorf("open %s in %s: %w", inst.SOPInstanceUID, ts, err)
		return o
	}
	n, err := io.ReadFull(rc, buf)
	o.data, o.pre = rc, &preread{buf: buf, n: n, err: err, r: rc}
	return o
}

// subOperation sends one opened instance as C-STORE-RQ on the target association.
func (a *Association) subOperation(ctx context.Context, t storeTarget, o *opened, msgID uint16) (Status, error) {
	if o.pc == nil {
		return Failure(StatusSOPClassNotSupported, "no accepted presentation context"), nil
	}
	if o.err != nil {
		return Status{}, o.err
	}
	defer o.data.Close()
	// A C-CANCEL stops the sub-operations between instances, never one in flight: a C-STORE cannot be canceled,
	// and giving up on its response would abort the association (PS3.4 C.4.2.3.1).
	ctx = context.WithoutCancel(ctx)
	c := &Command{CommandField: CStoreRQ, AffectedSOPClassUID: o.inst.SOPClassUID, AffectedSOPInstanceUID: o.inst.SOPInstanceUID,
		Priority: PriorityMedium}
	if !t.get {
		c.MoveOriginatorApplicationEntityTitle = a.peer.CallingAETitle
		c.MoveOriginatorMessageID = msgID
	}
	return t.a.store(ctx, c, o.pc.TransferSyntaxes[0], o.pre)
}

// dialMoveDestination opens the association a C-MOVE sends its sub-operations on, calling the destination with our
// own AE title and proposing, for each SOP class, the stored syntaxes and the two little endian ones.
func (a *Association) dialMoveDestination(ctx context.Context, addr, ae string, instances []Instance) (*Association, error) {
	d, addr, err := a.outgoing(addr)
	if err != nil {
		return nil, err
	}
	calling := a.peer.CalledAETitle
	if a.requestor {
		calling = a.peer.CallingAETitle
	}
	return d.Dial(ctx, addr, calling, ae, storageContexts(instances))
}

// storageContexts proposes contexts to send instances: one per stored (SOP class, transfer syntax), and one per SOP
// class with Explicit and Implicit VR Little Endian to fall back on, within the 128 contexts of PS3.8 9.3.2.2.
func storageContexts(instances []Instance) []PresentationContext {
	var out []PresentationContext
	seen := map[string]bool{}
	add := func(class string, ts ...string) {
		key := class + "|" + fmt.Sprint(ts)
		if seen[key] || len(out) >= maxContexts {
			return
		}
		seen[key] = true
		out = append(out, PresentationContext{AbstractSyntax: class, TransferSyntaxes: ts})
	}
	for _, inst := range instances {
		add(inst.SOPClassUID, inst.TransferSyntaxUID)
	}
	for _, inst := range instances {
		if inst.TransferSyntaxUID == dicom.ExplicitVRLittleEndian {
			add(inst.SOPClassUID, dicom.ImplicitVRLittleEndian)
		} else {
			add(inst.SOPClassUID, dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian)
		}
	}
	return out
}

func joinUIDs(uids []string) string {
	var b bytes.Buffer
	for i, u := range uids {
		if i > 0 {
			b.WriteByte('\\')
		}
		b.WriteString(u)
	}
	return b.String()
}
