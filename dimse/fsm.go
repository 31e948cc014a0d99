package dimse

import (
	"fmt"
)

// State is a state of the DICOM upper layer state machine (PS3.8 9.2.1, Table 9-10).
type State uint8

// The states of PS3.8 Table 9-10.
const (
	Sta1  State = iota + 1 // Idle
	Sta2                   // Transport connection open (awaiting A-ASSOCIATE-RQ PDU)
	Sta3                   // Awaiting local A-ASSOCIATE response primitive (from local user)
	Sta4                   // Awaiting transport connection opening to complete (from local transport service)
	Sta5                   // Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU
	Sta6                   // Association established and ready for data transfer
	Sta7                   // Awaiting A-RELEASE-RP PDU
	Sta8                   // Awaiting local A-RELEASE response primitive (from local user)
	Sta9                   // Release collision requestor side; awaiting A-RELEASE response (from local user)
	Sta10                  // Release collision acceptor side; awaiting A-RELEASE-RP PDU
	Sta11                  // Release collision requestor side; awaiting A-RELEASE-RP PDU
	Sta12                  // Release collision acceptor side; awaiting A-RELEASE response primitive (from local user)
	Sta13                  // Awaiting transport connection close indication (association no longer exists)
)

// String returns the standard's name of the state, "Sta1" … "Sta13".
func (s State) String() string { return fmt.Sprintf("Sta%d", uint8(s)) }

// Event is an event of the DICOM upper layer state machine (PS3.8 9.2.2, Table 9-10).
type Event uint8

// The events of PS3.8 Table 9-10.
const (
	Evt1  Event = iota + 1 // A-ASSOCIATE request (local user)
	Evt2                   // Transport connect confirmation (local transport service)
	Evt3                   // A-ASSOCIATE-AC PDU (received on transport connection)
	Evt4                   // A-ASSOCIATE-RJ PDU (received on transport connection)
	Evt5                   // Transport connection indication (local transport service)
	Evt6                   // A-ASSOCIATE-RQ PDU (received on transport connection)
	Evt7                   // A-ASSOCIATE response primitive (accept)
	Evt8                   // A-ASSOCIATE response primitive (reject)
	Evt9                   // P-DATA request primitive
	Evt10                  // P-DATA-TF PDU (received on transport connection)
	Evt11                  // A-RELEASE request primitive
	Evt12                  // A-RELEASE-RQ PDU (received on transport connection)
	Evt13                  // A-RELEASE-RP PDU (received on transport connection)
	Evt14                  // A-RELEASE response primitive
	Evt15                  // A-ABORT request primitive
	Evt16                  // A-ABORT PDU (received on transport connection)
	Evt17                  // Transport connection closed indication (local transport service)
	Evt18                  // ARTIM timer expired (association reject/release timer)
	Evt19                  // Unrecognized or invalid PDU received
)

// String returns the standard's name of the event, "Evt1" … "Evt19".
func (e Event) String() string { return fmt.Sprintf("Evt%d", uint8(e)) }

// action is one of the actions of PS3.8 Tables 9-6 to 9-9. next is the state it leads to; decide, when set, chooses
// among two (AE-6, AR-8). do performs the action's effects after the state has changed, outside the state lock.
type action struct {
	name   string
	next   State
	decide func(a *Association, in *input) State
	do     func(a *Association, in *input)
}

// input carries what an event brings: the PDU received or to send, and for Evt17 and Evt19 the cause.
type input struct {
	pdu    PDU
	pdata  [][]byte // Evt9: encoded P-DATA-TF PDUs (whole ones), as buffers written with one writev
	err    error
	locked bool // the caller holds the write lock (local primitives that send)
}

// The actions of PS3.8 Tables 9-6 (AE), 9-7 (DT), 9-8 (AR) and 9-9 (AA).
var (
	ae1 = &action{name: "AE-1", next: Sta4, do: func(a *Association, in *input) { a.transportConnect() }}
	ae2 = &action{name: "AE-2", next: Sta5, do: func(a *Association, in *input) { a.sendPDU(in, a.rq) }}
	ae3 = &action{name: "AE-3", next: Sta6, do: func(a *Association, in *input) { a.associateConfirmAccept(in.pdu.(*AAssociateAC)) }}
	ae4 = &action{name: "AE-4", next: Sta1, do: func(a *Association, in *input) {
		a.terminate(&RejectError{Reject: *in.pdu.(*AAssociateRJ)})
	}}
	ae5 = &action{name: "AE-5", next: Sta2, do: func(a *Association, in *input) { a.startARTIM() }}
	ae6 = &action{name: "AE-6",
		decide: func(a *Association, in *input) State {
			if in.pdu.(*AAssociateRQ).ProtocolVersion&1 == 0 {
				return Sta13
			}
			return Sta3
		},
		do: func(a *Association, in *input) {
			a.stopARTIM()
			rq := in.pdu.(*AAssociateRQ)
			if rq.ProtocolVersion&1 == 0 {
				// PS3.8 9.3.2: the acceptor supports protocol version 1 only.
				rj := &AAssociateRJ{Result: 1, Source: 2, Reason: 2}
				a.end(&RejectError{Reject: *rj})
				a.sendPDU(in, rj)
				a.startARTIM()
				return
			}
			a.associateIndication(rq)
		}}
	ae7 = &action{name: "AE-7", next: Sta6, do: func(a *Association, in *input) {
		a.sendPDU(in, in.pdu)
		a.established()
	}}
	ae8 = &action{name: "AE-8", next: Sta13, do: func(a *Association, in *input) {
		a.end(&RejectError{Reject: *in.pdu.(*AAssociateRJ)})
		a.sendPDU(in, in.pdu)
		a.startARTIM()
	}}
	dt1 = &action{name: "DT-1", next: Sta6, do: func(a *Association, in *input) { a.sendPData(in) }}
	dt2 = &action{name: "DT-2", next: Sta6, do: func(a *Association, in *input) { a.pdataIndication(in) }}
	ar1 = &action{name: "AR-1", next: Sta7, do: func(a *Association, in *input) { a.sendPDU(in, &AReleaseRQ{}) }}
	ar2 = &action{name: "AR-2", next: Sta8, do: func(a *Association, in *input) { a.releaseIndication() }}
	ar3 = &action{name: "AR-3", next: Sta1, do: func(a *Association, in *input) { a.terminate(nil) }}
	ar4 = &action{name: "AR-4", next: Sta13, do: func(a *Association, in *input) {
		a.end(nil) // before the peer hears of it, so that a Server's count of associations is already down
		a.sendPDU(in, &AReleaseRP{})
		a.startARTIM()
	}}
	ar5 = &action{name: "AR-5", next: Sta1, do: func(a *Association, in *input) {
		a.stopARTIM()
		a.terminate(nil)
	}}
	ar6 = &action{name: "AR-6", next: Sta7, do: func(a *Association, in *input) { a.pdataIndication(in) }}
	ar7 = &action{name: "AR-7", next: Sta8, do: func(a *Association, in *input) { a.sendPData(in) }}
	ar8 = &action{name: "AR-8",
		decide: func(a *Association, in *input) State {
			if a.requestor {
				return Sta9
			}
			return Sta10
		},
		do: func(a *Association, in *input) { a.releaseCollision() }}
	ar9  = &action{name: "AR-9", next: Sta11, do: func(a *Association, in *input) { a.sendPDU(in, &AReleaseRP{}) }}
	ar10 = &action{name: "AR-10", next: Sta12, do: func(a *Association, in *input) { a.releaseCollisionConfirm() }}
	aa1  = &action{name: "AA-1", next: Sta13, do: func(a *Association, in *input) {
		ab, _ := in.pdu.(*AAbort)
		if ab == nil {
			ab = &AAbort{Source: AbortServiceUser}
		}
		a.end(abortCause(in, ab))
		a.sendPDU(in, ab)
		a.startARTIM()
	}}
	aa2 = &action{name: "AA-2", next: Sta1, do: func(a *Association, in *input) {
		a.stopARTIM()
		a.terminate(in.err)
	}}
	aa3 = &action{name: "AA-3", next: Sta1, do: func(a *Association, in *input) {
		ab := in.pdu.(*AAbort)
		a.terminate(&AbortError{Source: ab.Source, Reason: ab.Reason, Remote: true})
	}}
	aa4 = &action{name: "AA-4", next: Sta1, do: func(a *Association, in *input) { a.terminate(transportClosed(in.err)) }}
	aa5 = &action{name: "AA-5", next: Sta1, do: func(a *Association, in *input) {
		a.stopARTIM()
		a.terminate(transportClosed(in.err))
	}}
	aa6 = &action{name: "AA-6", next: Sta13, do: func(a *Association, in *input) {}}
	aa7 = &action{name: "AA-7", next: Sta13, do: func(a *Association, in *input) {
		a.sendPDU(in, &AAbort{Source: AbortServiceProvider, Reason: abortReason(in)})
	}}
	aa8 = &action{name: "AA-8", next: Sta13, do: func(a *Association, in *input) {
		ab := &AAbort{Source: AbortServiceProvider, Reason: abortReason(in)}
		a.end(abortCause(in, ab))
		a.sendPDU(in, ab)
		a.startARTIM()
	}}
)

// transitions is PS3.8 Table 9-10: the action for each state and event. A missing entry is an event that cannot
// happen in that state (for a local primitive, an error returned to the caller; for a timer, a stale expiry). It is
// filled by init because the actions refer back to the state machine.
var transitions [Sta13 + 1][Evt19 + 1]*action

func init() { transitions = table() }

func table() (t [Sta13 + 1][Evt19 + 1]*action) {
	all := []State{Sta2, Sta3, Sta5, Sta6, Sta7, Sta8, Sta9, Sta10, Sta11, Sta12}
	set := func(e Event, act *action, states ...State) {
		for _, s := range states {
			t[s][e] = act
		}
	}
	set(Evt1, ae1, Sta1)
	set(Evt2, ae2, Sta4)
	// A-ASSOCIATE-AC, -RJ, -RQ, P-DATA-TF, A-RELEASE-RQ/RP and invalid PDUs received where they make no sense:
	// AA-1 before an association request was read, AA-8 during one, ignored (AA-6) or aborted (AA-7) once it is over.
	for _, e := range []Event{Evt3, Evt4, Evt6, Evt10, Evt12, Evt13, Evt19} {
		set(e, aa8, all...)
		set(e, aa1, Sta2)
		set(e, aa6, Sta13)
	}
	set(Evt6, aa7, Sta13)
	set(Evt19, aa7, Sta13)
	set(Evt3, ae3, Sta5)
	set(Evt4, ae4, Sta5)
	set(Evt5, ae5, Sta1)
	set(Evt6, ae6, Sta2)
	set(Evt7, ae7, Sta3)
	set(Evt8, ae8, Sta3)
	set(Evt9, dt1, Sta6)
	set(Evt9, ar7, Sta8)
	set(Evt10, dt2, Sta6)
	set(Evt10, ar6, Sta7)
	set(Evt11, ar1, Sta6)
	set(Evt12, ar2, Sta6)
	set(Evt12, ar8, Sta7)
	set(Evt13, ar3, Sta7, Sta11)
	set(Evt13, ar10, Sta10)
	set(Evt14, ar4, Sta8, Sta12)
	set(Evt14, ar9, Sta9)
	set(Evt15, aa1, Sta3, Sta5, Sta6, Sta7, Sta8, Sta9, Sta10, Sta11, Sta12)
	set(Evt15, aa2, Sta4)
	set(Evt16, aa3, Sta3, Sta5, Sta6, Sta7, Sta8, Sta9, Sta10, Sta11, Sta12)
	set(Evt16, aa2, Sta2, Sta13)
	set(Evt17, aa4, Sta3, Sta4, Sta5, Sta6, Sta7, Sta8, Sta9, Sta10, Sta11, Sta12)
	set(Evt17, aa5, Sta2)
	set(Evt17, ar5, Sta13)
	set(Evt18, aa2, Sta2, Sta13)
	return t
}

// Transition returns the name of the action PS3.8 Table 9-10 takes for an event in a state ("AE-1" … "AA-8"), and
// the state it leads to (0 when it depends on the association: AE-6 and AR-8), or ok false when the event cannot
// happen in that state.
func Transition(s State, e Event) (action string, next State, ok bool) {
	if s < Sta1 || s > Sta13 || e < Evt1 || e > Evt19 {
		return "", 0, false
	}
	act := transitions[s][e]
	if act == nil {
		return "", 0, false
	}
	return act.name, act.next, true
}

// fire runs the state machine for one event: it looks up the action, moves to the next state under the state lock,
// then performs the action's effects outside it (they may write to the connection or call the local user).
func (a *Association) fire(e Event, in *input) error {
	a.mu.Lock()
	from := a.state
	act := transitions[from][e]
	if act == nil {
		a.mu.Unlock()
		return &StateError{State: from, Event: e}
	}
	next := act.next
	if act.decide != nil {
		next = act.decide(a, in)
	}
	a.state = next
	a.mu.Unlock()
	if a.log.Enabled(a.ctx, levelTrace) {
		a.log.Log(a.ctx, levelTrace, "dimse fsm", "state", from, "event", e, "action", act.name, "next", next)
	}
	act.do(a, in)
	return nil
}

// StateError reports a local request that the state machine cannot take in its current state, for example a
// P-DATA request (Evt9) after the association was released or aborted.
type StateError struct {
	State State
	Event Event
}

// Error names the event and the state.
func (e *StateError) Error() string {
	return fmt.Sprintf("dimse: %s is not possible in %s (PS3.8 Table 9-10): the association is not established", e.Event, e.State)
}

func abortReason(in *input) AbortReason {
	if pe, ok := in.err.(*PDUError); ok {
		return pe.Reason
	}
	if _, ok := in.pdu.(*AAbort); ok {
		return in.pdu.(*AAbort).Reason
	}
	if in.pdu != nil {
		return AbortUnexpectedPDU
	}
	return AbortNotSpecified
}

func abortCause(in *input, ab *AAbort) error {
	if in.err != nil {
		return in.err
	}
	return &AbortError{Source: ab.Source, Reason: ab.Reason}
}
