package dimse

import (
	"encoding/binary"
	"fmt"
	"strings"

	"renkei/dicom"
)

// Command fields (PS3.7 Annex E, Table E.1-1 and E.2-1).
const (
	CStoreRQ        uint16 = 0x0001
	CStoreRSP       uint16 = 0x8001
	CGetRQ          uint16 = 0x0010
	CGetRSP         uint16 = 0x8010
	CFindRQ         uint16 = 0x0020
	CFindRSP        uint16 = 0x8020
	CMoveRQ         uint16 = 0x0021
	CMoveRSP        uint16 = 0x8021
	CEchoRQ         uint16 = 0x0030
	CEchoRSP        uint16 = 0x8030
	NEventReportRQ  uint16 = 0x0100
	NEventReportRSP uint16 = 0x8100
	NGetRQ          uint16 = 0x0110
	NGetRSP         uint16 = 0x8110
	NSetRQ          uint16 = 0x0120
	NSetRSP         uint16 = 0x8120
	NActionRQ       uint16 = 0x0130
	NActionRSP      uint16 = 0x8130
	NCreateRQ       uint16 = 0x0140
	NCreateRSP      uint16 = 0x8140
	NDeleteRQ       uint16 = 0x0150
	NDeleteRSP      uint16 = 0x8150
	CCancelRQ       uint16 = 0x0FFF
)

// Priorities of C-STORE, C-FIND, C-MOVE and C-GET requests (PS3.7 Table E.1-1).
const (
	PriorityMedium uint16 = 0x0000
	PriorityHigh   uint16 = 0x0001
	PriorityLow    uint16 = 0x0002
)

// NoDataSet is the Command Data Set Type value meaning no data set follows; any other value means one does (PS3.7
// Table E.1-1). DataSetPresent is the value this package sends.
const (
	NoDataSet      uint16 = 0x0101
	DataSetPresent uint16 = 0x0001
)

// Command element tags (group 0000, PS3.7 Annex E).
const (
	tagCommandGroupLength                   dicom.Tag = 0x00000000
	tagAffectedSOPClassUID                  dicom.Tag = 0x00000002
	tagRequestedSOPClassUID                 dicom.Tag = 0x00000003
	tagCommandField                         dicom.Tag = 0x00000100
	tagMessageID                            dicom.Tag = 0x00000110
	tagMessageIDBeingRespondedTo            dicom.Tag = 0x00000120
	tagMoveDestination                      dicom.Tag = 0x00000600
	tagPriority                             dicom.Tag = 0x00000700
	tagCommandDataSetType                   dicom.Tag = 0x00000800
	tagStatus                               dicom.Tag = 0x00000900
	tagOffendingElement                     dicom.Tag = 0x00000901
	tagErrorComment                         dicom.Tag = 0x00000902
	tagErrorID                              dicom.Tag = 0x00000903
	tagAffectedSOPInstanceUID               dicom.Tag = 0x00001000
	tagRequestedSOPInstanceUID              dicom.Tag = 0x00001001
	tagEventTypeID                          dicom.Tag = 0x00001002
	tagAttributeIdentifierList              dicom.Tag = 0x00001005
	tagActionTypeID                         dicom.Tag = 0x00001008
	tagNumberOfRemainingSuboperations       dicom.Tag = 0x00001020
	tagNumberOfCompletedSuboperations       dicom.Tag = 0x00001021
	tagNumberOfFailedSuboperations          dicom.Tag = 0x00001022
	tagNumberOfWarningSuboperations         dicom.Tag = 0x00001023
	tagMoveOriginatorApplicationEntityTitle dicom.Tag = 0x00001030
	tagMoveOriginatorMessageID              dicom.Tag = 0x00001031
)

// MaxCommandLength bounds an encoded command set. Real ones take a few hundred bytes.
const MaxCommandLength = 64 << 10

// Command is a DIMSE command set (PS3.7 6.3, 9.3, 10.3, Annex E). Fields use the PS3.7 keywords; string fields are
// encoded when not empty, and numeric ones when the command field calls for them (see Encode).
type Command struct {
	CommandField              uint16
	AffectedSOPClassUID       string
	RequestedSOPClassUID      string
	MessageID                 uint16 // requests
	MessageIDBeingRespondedTo uint16 // responses and C-CANCEL-RQ
	MoveDestination           string // C-MOVE-RQ
	Priority                  uint16 // C-STORE, C-FIND, C-MOVE, C-GET requests
	CommandDataSetType        uint16 // NoDataSet, or any other value when a data set follows
	Status                    uint16 // responses
	OffendingElement          []dicom.Tag
	ErrorComment              string
	ErrorID                   uint16 // encoded when not zero
	AffectedSOPInstanceUID    string
	RequestedSOPInstanceUID   string
	EventTypeID               uint16 // N-EVENT-REPORT
	ActionTypeID              uint16 // N-ACTION
	AttributeIdentifierList   []dicom.Tag
	// SubOperations of C-MOVE and C-GET responses (PS3.7 9.3.3.2, 9.3.4.2): encoded when not nil, the remaining
	// count only in pending responses.
	SubOperations                        *SubOperations
	MoveOriginatorApplicationEntityTitle string // C-STORE-RQ sent as a C-MOVE sub-operation
	MoveOriginatorMessageID              uint16
}

// SubOperations are the sub-operation counts of C-MOVE and C-GET responses (PS3.7 9.1.3, 9.1.4).
type SubOperations struct {
	Remaining, Completed, Failed, Warning uint16
}

// HasDataSet reports whether a data set follows the command (PS3.7 Table E.1-1).
func (c *Command) HasDataSet() bool { return c.CommandDataSetType != NoDataSet }

// IsResponse reports whether the command field is a response's (bit 15, PS3.7 Annex E).
func (c *Command) IsResponse() bool { return c.CommandField&0x8000 != 0 }

// Encode returns the command set in Implicit VR Little Endian with its Command Group Length computed (PS3.7 6.3.1).
func (c *Command) Encode() ([]byte, error) {
	e := cmdEncoder{b: make([]byte, 12, 256)}
	var err error
	str := func(t dicom.Tag, s string, vr string) {
		if s == "" || err != nil {
			return
		}
		if (vr == "UI" && len(s) > maxUIDLength) || (vr == "AE" && len(s) > 16) || (vr == "LO" && len(s) > 64) {
			err = fmt.Errorf("dimse: %s value %q is too long for its VR %s", commandKeyword(t), s, vr)
			return
		}
		e.str(t, s, vr)
	}
	rq := !c.IsResponse()
	pending := !rq && isPending(c.Status)
	str(tagAffectedSOPClassUID, c.AffectedSOPClassUID, "UI")
	str(tagRequestedSOPClassUID, c.RequestedSOPClassUID, "UI")
	e.us(tagCommandField, c.CommandField)
	if rq && c.CommandField != CCancelRQ {
		e.us(tagMessageID, c.MessageID)
	} else {
		e.us(tagMessageIDBeingRespondedTo, c.MessageIDBeingRespondedTo)
	}
	str(tagMoveDestination, c.MoveDestination, "AE")
	switch c.CommandField {
	case CStoreRQ, CFindRQ, CMoveRQ, CGetRQ:
		e.us(tagPriority, c.Priority)
	}
	e.us(tagCommandDataSetType, c.CommandDataSetType)
	if !rq {
		e.us(tagStatus, c.Status)
	}
	if len(c.OffendingElement) > 0 {
		e.tags(tagOffendingElement, c.OffendingElement)
	}
	str(tagErrorComment, c.ErrorComment, "LO")
	if c.ErrorID != 0 {
		e.us(tagErrorID, c.ErrorID)
	}
	str(tagAffectedSOPInstanceUID, c.AffectedSOPInstanceUID, "UI")
	str(tagRequestedSOPInstanceUID, c.RequestedSOPInstanceUID, "UI")
	if c.CommandField == NEventReportRQ || (c.CommandField == NEventReportRSP && c.EventTypeID != 0) {
		e.us(tagEventTypeID, c.EventTypeID)
	}
	if len(c.AttributeIdentifierList) > 0 {
		e.tags(tagAttributeIdentifierList, c.AttributeIdentifierList)
	}
	if c.CommandField == NActionRQ || (c.CommandField == NActionRSP && c.ActionTypeID != 0) {
		e.us(tagActionTypeID, c.ActionTypeID)
	}
	if s := c.SubOperations; s != nil {
		if pending {
			e.us(tagNumberOfRemainingSuboperations, s.Remaining)
		}
		e.us(tagNumberOfCompletedSuboperations, s.Completed)
		e.us(tagNumberOfFailedSuboperations, s.Failed)
		e.us(tagNumberOfWarningSuboperations, s.Warning)
	}
	if c.MoveOriginatorApplicationEntityTitle != "" {
		str(tagMoveOriginatorApplicationEntityTitle, c.MoveOriginatorApplicationEntityTitle, "AE")
		e.us(tagMoveOriginatorMessageID, c.MoveOriginatorMessageID)
	}
	if err != nil {
		return nil, err
	}
	// (0000,0000) UL: the length of the elements that follow it.
	binary.LittleEndian.PutUint32(e.b[0:], uint32(tagCommandGroupLength))
	binary.LittleEndian.PutUint32(e.b[4:], 4)
	binary.LittleEndian.PutUint32(e.b[8:], uint32(len(e.b)-12))
	return e.b, nil
}

type cmdEncoder struct{ b []byte }

func (e *cmdEncoder) header(t dicom.Tag, n int) {
	e.b = binary.LittleEndian.AppendUint16(e.b, t.Group())
	e.b = binary.LittleEndian.AppendUint16(e.b, t.Element())
	e.b = binary.LittleEndian.AppendUint32(e.b, uint32(n))
}

func (e *cmdEncoder) us(t dicom.Tag, v uint16) {
	e.header(t, 2)
	e.b = binary.LittleEndian.AppendUint16(e.b, v)
}

func (e *cmdEncoder) str(t dicom.Tag, s, vr string) {
	n := len(s) + len(s)%2
	e.header(t, n)
	e.b = append(e.b, s...)
	if len(s)%2 == 1 {
		if vr == "UI" {
			e.b = append(e.b, 0) // PS3.5 9.1: UIDs are padded with NUL
		} else {
			e.b = append(e.b, ' ')
		}
	}
}

func (e *cmdEncoder) tags(t dicom.Tag, ts []dicom.Tag) {
	e.header(t, 4*len(ts))
	for _, x := range ts {
		e.b = binary.LittleEndian.AppendUint16(e.b, x.Group())
		e.b = binary.LittleEndian.AppendUint16(e.b, x.Element())
	}
}

// CommandError reports a command set that cannot be decoded.
type CommandError struct{ Msg string }

// Error describes the malformed command set.
func (e *CommandError) Error() string { return "invalid DIMSE command set: " + e.Msg }

func cmdErrorf(format string, args ...any) error {
	return &CommandError{Msg: fmt.Sprintf(format, args...)}
}

// ParseCommand decodes a command set encoded in Implicit VR Little Endian (PS3.7 6.3.1). Elements of group 0000 that
// it does not know are skipped; elements of other groups, lengths past the end, a set longer than MaxCommandLength,
// and a missing Command Field are errors (*CommandError).
func ParseCommand(b []byte) (*Command, error) {
	if len(b) > MaxCommandLength {
		return nil, cmdErrorf("%d bytes, more than the %d allowed", len(b), MaxCommandLength)
	}
	c := &Command{CommandDataSetType: NoDataSet}
	seen := map[dicom.Tag]bool{}
	var sub SubOperations
	hasSub := false
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, cmdErrorf("%d bytes left, too few for an element header", len(b))
		}
		t := dicom.NewTag(binary.LittleEndian.Uint16(b[0:2]), binary.LittleEndian.Uint16(b[2:4]))
		n := binary.LittleEndian.Uint32(b[4:8])
		if uint64(n) > uint64(len(b)-8) {
			return nil, cmdErrorf("element %s announces %d bytes, %d left", t, n, len(b)-8)
		}
		v := b[8 : 8+n]
		b = b[8+n:]
		if t.Group() != 0 {
			return nil, cmdErrorf("element %s is outside group 0000 (PS3.7 6.3.1)", t)
		}
		if seen[t] {
			return nil, cmdErrorf("element %s appears twice", t)
		}
		seen[t] = true
		var err error
		switch t {
		case tagCommandGroupLength:
			_, err = ul(t, v)
		case tagAffectedSOPClassUID:
			c.AffectedSOPClassUID, err = uidValue(t, v)
		case tagRequestedSOPClassUID:
			c.RequestedSOPClassUID, err = uidValue(t, v)
		case tagCommandField:
			c.CommandField, err = us(t, v)
		case tagMessageID:
			c.MessageID, err = us(t, v)
		case tagMessageIDBeingRespondedTo:
			c.MessageIDBeingRespondedTo, err = us(t, v)
		case tagMoveDestination:
			c.MoveDestination = strings.Trim(string(v), " \x00")
		case tagPriority:
			c.Priority, err = us(t, v)
		case tagCommandDataSetType:
			c.CommandDataSetType, err = us(t, v)
		case tagStatus:
			c.Status, err = us(t, v)
		case tagOffendingElement:
			c.OffendingElement, err = at(t, v)
		case tagErrorComment:
			c.ErrorComment = strings.TrimRight(string(v), " \x00")
		case tagErrorID:
			c.ErrorID, err = us(t, v)
		case tagAffectedSOPInstanceUID:
			c.AffectedSOPInstanceUID, err = uidValue(t, v)
		case tagRequestedSOPInstanceUID:
			c.RequestedSOPInstanceUID, err = uidValue(t, v)
		case tagEventTypeID:
			c.EventTypeID, err = us(t, v)
		case tagAttributeIdentifierList:
			c.AttributeIdentifierList, err = at(t, v)
		case tagActionTypeID:
			c.ActionTypeID, err = us(t, v)
		case tagNumberOfRemainingSuboperations:
			hasSub = true
			sub.Remaining, err = us(t, v)
		case tagNumberOfCompletedSuboperations:
			hasSub = true
			sub.Completed, err = us(t, v)
		case tagNumberOfFailedSuboperations:
			hasSub = true
			sub.Failed, err = us(t, v)
		case tagNumberOfWarningSuboperations:
			hasSub = true
			sub.Warning, err = us(t, v)
		case tagMoveOriginatorApplicationEntityTitle:
			c.MoveOriginatorApplicationEntityTitle = strings.Trim(string(v), " \x00")
		case tagMoveOriginatorMessageID:
			c.MoveOriginatorMessageID, err = us(t, v)
		}
		if err != nil {
			return nil, err
		}
	}
	if !seen[tagCommandField] {
		return nil, cmdErrorf("no Command Field (0000,0100) (PS3.7 Annex E)")
	}
	if hasSub {
		c.SubOperations = &sub
	}
	return c, nil
}

func us(t dicom.Tag, v []byte) (uint16, error) {
	if len(v) != 2 {
		return 0, cmdErrorf("%s (US) has %d bytes, not 2", commandKeyword(t), len(v))
	}
	return binary.LittleEndian.Uint16(v), nil
}

func ul(t dicom.Tag, v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, cmdErrorf("%s (UL) has %d bytes, not 4", commandKeyword(t), len(v))
	}
	return binary.LittleEndian.Uint32(v), nil
}

func at(t dicom.Tag, v []byte) ([]dicom.Tag, error) {
	if len(v)%4 != 0 {
		return nil, cmdErrorf("%s (AT) has %d bytes, not a multiple of 4", commandKeyword(t), len(v))
	}
	out := make([]dicom.Tag, 0, len(v)/4)
	for i := 0; i < len(v); i += 4 {
		out = append(out, dicom.NewTag(binary.LittleEndian.Uint16(v[i:]), binary.LittleEndian.Uint16(v[i+2:])))
	}
	return out, nil
}

func uidValue(t dicom.Tag, v []byte) (string, error) {
	s := strings.TrimRight(string(v), "\x00 ")
	if len(s) > maxUIDLength {
		return "", cmdErrorf("%s has %d characters, more than 64 (PS3.5 9.1)", commandKeyword(t), len(s))
	}
	return s, nil
}

func commandKeyword(t dicom.Tag) string {
	switch t {
	case tagAffectedSOPClassUID:
		return "AffectedSOPClassUID"
	case tagRequestedSOPClassUID:
		return "RequestedSOPClassUID"
	case tagMoveDestination:
		return "MoveDestination"
	case tagErrorComment:
		return "ErrorComment"
	case tagAffectedSOPInstanceUID:
		return "AffectedSOPInstanceUID"
	case tagRequestedSOPInstanceUID:
		return "RequestedSOPInstanceUID"
	case tagMoveOriginatorApplicationEntityTitle:
		return "MoveOriginatorApplicationEntityTitle"
	}
	return t.String()
}

// commandName names a command field for logs, as PS3.7 writes it.
func commandName(f uint16) string {
	switch f {
	case CStoreRQ:
		return "C-STORE-RQ"
	case CStoreRSP:
		return "C-STORE-RSP"
	case CGetRQ:
		return "C-GET-RQ"
	case CGetRSP:
		return "C-GET-RSP"
	case CFindRQ:
		return "C-FIND-RQ"
	case CFindRSP:
		return "C-FIND-RSP"
	case CMoveRQ:
		return "C-MOVE-RQ"
	case CMoveRSP:
		return "C-MOVE-RSP"
	case CEchoRQ:
		return "C-ECHO-RQ"
	case CEchoRSP:
		return "C-ECHO-RSP"
	case NEventReportRQ:
		return "N-EVENT-REPORT-RQ"
	case NEventReportRSP:
		return "N-EVENT-REPORT-RSP"
	case NActionRQ:
		return "N-ACTION-RQ"
	case NActionRSP:
		return "N-ACTION-RSP"
	case CCancelRQ:
		return "C-CANCEL-RQ"
	}
	return fmt.Sprintf("command 0x%04X", f)
}
