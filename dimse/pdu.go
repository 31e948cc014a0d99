package dimse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PDU type codes (PS3.8 9.3.1, Table 9-11 and following).
const (
	pduAssociateRQ byte = 0x01
	pduAssociateAC byte = 0x02
	pduAssociateRJ byte = 0x03
	pduPDataTF     byte = 0x04
	pduReleaseRQ   byte = 0x05
	pduReleaseRP   byte = 0x06
	pduAbort       byte = 0x07
)

// Item type codes of the variable part of A-ASSOCIATE-RQ/AC (PS3.8 9.3.2, 9.3.3) and of the user information item
// (PS3.7 D.3.3).
const (
	itemApplicationContext          byte = 0x10
	itemPresentationContextRQ       byte = 0x20
	itemPresentationContextAC       byte = 0x21
	itemAbstractSyntax              byte = 0x30
	itemTransferSyntax              byte = 0x40
	itemUserInformation             byte = 0x50
	itemMaximumLength               byte = 0x51
	itemImplementationClassUID      byte = 0x52
	itemAsyncOperationsWindow       byte = 0x53
	itemRoleSelection               byte = 0x54
	itemImplementationVersionName   byte = 0x55
	itemSOPClassExtendedNegotiation byte = 0x56
)

// ApplicationContextName is the one DICOM application context name (PS3.7 A.2.1).
const ApplicationContextName = "1.2.840.10008.3.1.1.1"

// Limits on what a decoded PDU may hold. They bound memory whatever a peer announces.
const (
	// MaxAssociateLength bounds the length field of an A-ASSOCIATE-RQ/AC PDU: 128 presentation contexts proposing
	// a dozen transfer syntaxes each fit in a tenth of it.
	MaxAssociateLength = 1 << 20
	maxContexts        = 128 // presentation context IDs are the odd numbers 1–255 (PS3.8 9.3.2.2)
	maxSyntaxes        = 64  // transfer syntaxes proposed in one presentation context
	maxUserItems       = 512 // sub-items of one user information item
	maxUIDLength       = 64  // PS3.5 9.1
	maxAETitleLength   = 16  // PS3.5 6.2, AE
)

// PDU is one of the seven protocol data units of PS3.8 9.3: *AAssociateRQ, *AAssociateAC, *AAssociateRJ, *PDataTF,
// *AReleaseRQ, *AReleaseRP or *AAbort.
type PDU interface {
	pduType() byte
}

// AAssociateRQ is the A-ASSOCIATE-RQ PDU (PS3.8 9.3.2): the requestor's AE titles, application context, proposed
// presentation contexts and user information.
type AAssociateRQ struct {
	ProtocolVersion        uint16 // bit 0 set: version 1, the only one (PS3.8 9.3.2); encoded as given
	CalledAETitle          string // trimmed of the padding spaces
	CallingAETitle         string
	ApplicationContextName string
	PresentationContexts   []PresentationContext
	UserInformation        UserInformation
}

// AAssociateAC is the A-ASSOCIATE-AC PDU (PS3.8 9.3.3): the acceptor's answer for each presentation context and its
// user information. The AE titles repeat the request's (they are not tested, PS3.8 9.3.3).
type AAssociateAC struct {
	ProtocolVersion        uint16
	CalledAETitle          string
	CallingAETitle         string
	ApplicationContextName string
	PresentationContexts   []PresentationContext
	UserInformation        UserInformation
}

// AAssociateRJ is the A-ASSOCIATE-RJ PDU (PS3.8 9.3.4, Table 9-21).
type AAssociateRJ struct {
	Result byte // 1 rejected-permanent, 2 rejected-transient
	Source byte // 1 service-user, 2 service-provider (ACSE), 3 service-provider (presentation)
	Reason byte // the diagnostic, whose meaning depends on Source
}

// PDataTF is the P-DATA-TF PDU (PS3.8 9.3.5): one or more presentation data values.
type PDataTF struct {
	PDVs []PDV
}

// PDV is one presentation data value item (PS3.8 9.3.5.1) with its message control header (PS3.8 Annex E.2).
type PDV struct {
	PresentationContextID byte
	Command               bool   // bit 0: the fragment is of a command set, else of a data set
	Last                  bool   // bit 1: the last fragment of the command set or data set
	Data                  []byte // the fragment
}

// AReleaseRQ is the A-RELEASE-RQ PDU (PS3.8 9.3.6).
type AReleaseRQ struct{}

// AReleaseRP is the A-RELEASE-RP PDU (PS3.8 9.3.7).
type AReleaseRP struct{}

// AAbort is the A-ABORT PDU (PS3.8 9.3.8, Table 9-26).
type AAbort struct {
	Source AbortSource
	Reason AbortReason // meaningful only when Source is AbortServiceProvider
}

func (*AAssociateRQ) pduType() byte { return pduAssociateRQ }
func (*AAssociateAC) pduType() byte { return pduAssociateAC }
func (*AAssociateRJ) pduType() byte { return pduAssociateRJ }
func (*PDataTF) pduType() byte      { return pduPDataTF }
func (*AReleaseRQ) pduType() byte   { return pduReleaseRQ }
func (*AReleaseRP) pduType() byte   { return pduReleaseRP }
func (*AAbort) pduType() byte       { return pduAbort }

// AbortSource is the source field of an A-ABORT PDU (PS3.8 Table 9-26).
type AbortSource byte

// A-ABORT sources (PS3.8 Table 9-26).
const (
	AbortServiceUser     AbortSource = 0 // DICOM UL service-user (initiated abort)
	AbortServiceProvider AbortSource = 2 // DICOM UL service-provider (initiated abort)
)

// AbortReason is the diagnostic of a service-provider A-ABORT (PS3.8 Table 9-26).
type AbortReason byte

// A-ABORT reasons (PS3.8 Table 9-26).
const (
	AbortNotSpecified          AbortReason = 0
	AbortUnrecognizedPDU       AbortReason = 1
	AbortUnexpectedPDU         AbortReason = 2
	AbortUnrecognizedParameter AbortReason = 4
	AbortUnexpectedParameter   AbortReason = 5
	AbortInvalidParameter      AbortReason = 6
)

// Presentation context results of an A-ASSOCIATE-AC (PS3.8 Table 9-18).
const (
	ResultAcceptance                   byte = 0
	ResultUserRejection                byte = 1
	ResultNoReason                     byte = 2 // provider rejection
	ResultAbstractSyntaxNotSupported   byte = 3
	ResultTransferSyntaxesNotSupported byte = 4
)

// PresentationContext is a presentation context item (PS3.8 9.3.2.2, 9.3.3.2). In a request it carries the abstract
// syntax and the proposed transfer syntaxes; in an acceptance, the Result and (when accepted) the one chosen transfer
// syntax. The association fills AbstractSyntax of an accepted context from the request.
//
// SCURole and SCPRole are not part of the item: in a proposal given to Dial, SCPRole asks for SCP/SCU role selection
// (PS3.7 D.3.3.4) for the abstract syntax, as a C-GET SCU does for the storage SOP classes it will receive; on a
// negotiated context they say which roles the requestor plays. ExtendedNegotiation is not part of it either: in a
// proposal given to Dial, the service-class-application-information of a SOP Class Extended Negotiation sub-item
// (PS3.7 D.3.3.5) to send for the abstract syntax, such as FindOptions.Info; on a negotiated context, the one the
// acceptor answered (nil: none).
type PresentationContext struct {
	ID                  byte
	AbstractSyntax      string
	TransferSyntaxes    []string
	Result              byte
	SCURole, SCPRole    bool
	ExtendedNegotiation []byte
}

// UserInformation is the user information item (PS3.8 9.3.2.3, PS3.7 Annex D.3.3).
type UserInformation struct {
	MaximumLength             uint32 // maximum length of a received P-DATA-TF PDU's variable field; 0: no limit (PS3.8 D.1)
	ImplementationClassUID    string // PS3.7 D.3.3.2
	ImplementationVersionName string
	AsyncOperationsWindow     *AsyncOperationsWindow // PS3.7 D.3.3.3; nil when absent (one operation each way)
	RoleSelections            []RoleSelection        // PS3.7 D.3.3.4
	ExtendedNegotiations      []ExtendedNegotiation  // PS3.7 D.3.3.5
	// Other holds the sub-items this package does not interpret (SOP Class Common Extended Negotiation 0x57, User
	// Identity 0x58/0x59, and unknown ones), passed through unchanged.
	Other []Item
}

// AsyncOperationsWindow is the asynchronous operations window sub-item (PS3.7 D.3.3.3).
type AsyncOperationsWindow struct {
	MaxOperationsInvoked, MaxOperationsPerformed uint16
}

// RoleSelection is the SCP/SCU role selection sub-item (PS3.7 D.3.3.4): the roles the requestor proposes to play for
// a SOP class, or those the acceptor accepts.
type RoleSelection struct {
	SOPClassUID string
	SCU, SCP    bool
}

// ExtendedNegotiation is the SOP class extended negotiation sub-item (PS3.7 D.3.3.5): service class specific bytes.
type ExtendedNegotiation struct {
	SOPClassUID string
	Info        []byte
}

// Item is an item or sub-item kept as bytes: its type and its value (without the 4-byte item header).
type Item struct {
	Type byte
	Data []byte
}

// PDUError reports a malformed PDU, or one that breaks a limit. Reason is the A-ABORT diagnostic to send.
type PDUError struct {
	Reason AbortReason
	Msg    string
}

// Error describes the malformed PDU.
func (e *PDUError) Error() string { return "invalid PDU: " + e.Msg }

func pduErrorf(reason AbortReason, format string, args ...any) error {
	return &PDUError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// ReadPDU reads one PDU from r. maxPData is the largest P-DATA-TF length accepted (the maximum length we announced,
// PS3.8 D.1); other PDUs are bounded by MaxAssociateLength or their fixed size. A length above the limit is refused
// before anything is allocated, and a large body is read in chunks so memory follows what actually arrives.
// Malformed PDUs give a *PDUError; a stream that ends gives io.EOF (before a header) or io.ErrUnexpectedEOF.
func ReadPDU(r io.Reader, maxPData uint32) (PDU, error) {
	typ, n, err := readPDUHeader(r, maxPData)
	if err != nil {
		return nil, err
	}
	body, err := readBody(r, n, nil)
	if err != nil {
		return nil, err
	}
	return decodeBody(typ, body)
}

// DecodePDU decodes one whole PDU held in b, with the limits of ReadPDU. Bytes after the PDU are an error.
// The Data of decoded PDVs aliases b.
func DecodePDU(b []byte, maxPData uint32) (PDU, error) {
	if len(b) < 6 {
		return nil, pduErrorf(AbortInvalidParameter, "%d bytes is shorter than a PDU header", len(b))
	}
	typ, n, err := checkHeader(b[:6], maxPData)
	if err != nil {
		return nil, err
	}
	if uint64(len(b)-6) != uint64(n) {
		return nil, pduErrorf(AbortInvalidParameter, "PDU length %d but %d bytes follow the header", n, len(b)-6)
	}
	return decodeBody(typ, b[6:])
}

func readPDUHeader(r io.Reader, maxPData uint32) (byte, uint32, error) {
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, err
	}
	return checkHeader(h[:], maxPData)
}

// checkHeader validates the type and length of a PDU header (PS3.8 9.3.1) against the limits.
func checkHeader(h []byte, maxPData uint32) (byte, uint32, error) {
	typ, n := h[0], binary.BigEndian.Uint32(h[2:6])
	limit := uint32(0)
	switch typ {
	case pduAssociateRQ, pduAssociateAC:
		limit = MaxAssociateLength
		if n < 68 {
			return 0, 0, pduErrorf(AbortInvalidParameter, "A-ASSOCIATE PDU length %d is shorter than its fixed fields (PS3.8 9.3.2)", n)
		}
	case pduPDataTF:
		limit = maxPData
		if limit == 0 {
			limit = MaxAssociateLength
		}
	case pduAssociateRJ, pduReleaseRQ, pduReleaseRP, pduAbort:
		if n != 4 {
			return 0, 0, pduErrorf(AbortInvalidParameter, "PDU type 0x%02X has length %d, not 4 (PS3.8 9.3)", typ, n)
		}
		return typ, n, nil
	default:
		return 0, 0, pduErrorf(AbortUnrecognizedPDU, "unknown PDU type 0x%02X (PS3.8 9.3.1)", typ)
	}
	if n > limit {
		return 0, 0, pduErrorf(AbortInvalidParameter, "PDU type 0x%02X announces %d bytes, more than the %d allowed (PS3.8 D.1)", typ, n, limit)
	}
	return typ, n, nil
}

// readBody reads n bytes into buf (reused when large enough). Bodies beyond 64 KiB grow as the bytes arrive, so a
// peer that announces a large PDU and sends little costs little.
func readBody(r io.Reader, n uint32, buf []byte) ([]byte, error) {
	const chunk = 64 << 10
	if int(n) <= cap(buf) || n <= chunk {
		if int(n) > cap(buf) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, unexpected(err)
		}
		return buf, nil
	}
	buf = buf[:0]
	for uint32(len(buf)) < n {
		c := min(n-uint32(len(buf)), chunk)
		if cap(buf)-len(buf) < int(c) {
			nb := make([]byte, len(buf), min(int(n), 2*cap(buf)+int(c)))
			copy(nb, buf)
			buf = nb
		}
		start := len(buf)
		buf = buf[:start+int(c)]
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			return nil, unexpected(err)
		}
	}
	return buf, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func decodeBody(typ byte, b []byte) (PDU, error) {
	switch typ {
	case pduAssociateRQ:
		rq := &AAssociateRQ{}
		err := decodeAssociate(b, true, &rq.ProtocolVersion, &rq.CalledAETitle, &rq.CallingAETitle,
			&rq.ApplicationContextName, &rq.PresentationContexts, &rq.UserInformation)
		return rq, err
	case pduAssociateAC:
		ac := &AAssociateAC{}
		err := decodeAssociate(b, false, &ac.ProtocolVersion, &ac.CalledAETitle, &ac.CallingAETitle,
			&ac.ApplicationContextName, &ac.PresentationContexts, &ac.UserInformation)
		return ac, err
	case pduAssociateRJ:
		return &AAssociateRJ{Result: b[1], Source: b[2], Reason: b[3]}, nil
	case pduPDataTF:
		p := &PDataTF{}
		err := eachPDV(b, func(v PDV) error {
			p.PDVs = append(p.PDVs, v)
			return nil
		})
		return p, err
	case pduReleaseRQ:
		return &AReleaseRQ{}, nil
	case pduReleaseRP:
		return &AReleaseRP{}, nil
	case pduAbort:
		return &AAbort{Source: AbortSource(b[2]), Reason: AbortReason(b[3])}, nil
	}
	return nil, pduErrorf(AbortUnrecognizedPDU, "unknown PDU type 0x%02X", typ)
}

// eachPDV calls fn for each presentation data value of a P-DATA-TF body (PS3.8 9.3.5.1). A body with no PDV, a PDV
// shorter than its 2-byte header or longer than what remains is invalid.
func eachPDV(b []byte, fn func(PDV) error) error {
	if len(b) == 0 {
		return pduErrorf(AbortInvalidParameter, "P-DATA-TF without a presentation data value (PS3.8 9.3.5)")
	}
	for len(b) > 0 {
		if len(b) < 6 {
			return pduErrorf(AbortInvalidParameter, "%d bytes left in P-DATA-TF, too few for a PDV item", len(b))
		}
		n := binary.BigEndian.Uint32(b[:4])
		if n < 2 || uint64(n) > uint64(len(b)-4) {
			return pduErrorf(AbortInvalidParameter, "PDV item length %d with %d bytes left (PS3.8 9.3.5.1)", n, len(b)-4)
		}
		mch := b[5]
		if mch&^3 != 0 {
			return pduErrorf(AbortInvalidParameter, "message control header 0x%02X has reserved bits set (PS3.8 E.2)", mch)
		}
		v := PDV{PresentationContextID: b[4], Command: mch&1 != 0, Last: mch&2 != 0, Data: b[6 : 4+n : 4+n]}
		if err := fn(v); err != nil {
			return err
		}
		b = b[4+n:]
	}
	return nil
}

func decodeAssociate(b []byte, rq bool, version *uint16, called, calling, appCtx *string, pcs *[]PresentationContext, ui *UserInformation) error {
	if len(b) < 68 {
		return pduErrorf(AbortInvalidParameter, "A-ASSOCIATE body of %d bytes is shorter than its fixed fields", len(b))
	}
	*version = binary.BigEndian.Uint16(b[0:2])
	*called = aeTitle(b[4:20])
	*calling = aeTitle(b[20:36])
	seenApp, seenUser := false, false
	ids := map[byte]bool{}
	err := eachItem(b[68:], func(typ byte, v []byte) error {
		switch {
		case typ == itemApplicationContext:
			if seenApp {
				return pduErrorf(AbortUnexpectedParameter, "two application context items (PS3.8 9.3.2)")
			}
			seenApp = true
			s, err := uid(v, "application context name")
			*appCtx = s
			return err
		case typ == itemPresentationContextRQ && rq, typ == itemPresentationContextAC && !rq:
			if len(*pcs) >= maxContexts {
				return pduErrorf(AbortInvalidParameter, "more than %d presentation contexts (PS3.8 9.3.2.2)", maxContexts)
			}
			pc, err := decodePresentationContext(v, rq)
			if err != nil {
				return err
			}
			if ids[pc.ID] {
				return pduErrorf(AbortInvalidParameter, "presentation context ID %d appears twice (PS3.8 9.3.2.2)", pc.ID)
			}
			ids[pc.ID] = true
			*pcs = append(*pcs, pc)
			return nil
		case typ == itemUserInformation:
			if seenUser {
				return pduErrorf(AbortUnexpectedParameter, "two user information items (PS3.8 9.3.2.3)")
			}
			seenUser = true
			return decodeUserInformation(v, ui)
		case typ == itemPresentationContextRQ || typ == itemPresentationContextAC:
			return pduErrorf(AbortUnexpectedParameter, "presentation context item type 0x%02X in the wrong PDU", typ)
		}
		// PS3.8 9.3.1: items of unknown type are ignored.
		return nil
	})
	if err != nil {
		return err
	}
	if !seenApp {
		return pduErrorf(AbortInvalidParameter, "no application context item (PS3.8 9.3.2)")
	}
	return nil
}

// eachItem walks items with a 1-byte type, 1 reserved byte and a 2-byte big-endian length (PS3.8 9.3.2).
func eachItem(b []byte, fn func(typ byte, v []byte) error) error {
	count := 0
	for len(b) > 0 {
		if len(b) < 4 {
			return pduErrorf(AbortInvalidParameter, "%d bytes left, too few for an item header", len(b))
		}
		count++
		if count > 2*maxUserItems {
			return pduErrorf(AbortInvalidParameter, "more than %d items", 2*maxUserItems)
		}
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if n > len(b)-4 {
			return pduErrorf(AbortInvalidParameter, "item type 0x%02X announces %d bytes, %d left", b[0], n, len(b)-4)
		}
		if err := fn(b[0], b[4:4+n:4+n]); err != nil {
			return err
		}
		b = b[4+n:]
	}
	return nil
}

func decodePresentationContext(v []byte, rq bool) (PresentationContext, error) {
	if len(v) < 4 {
		return PresentationContext{}, pduErrorf(AbortInvalidParameter, "presentation context item of %d bytes", len(v))
	}
	pc := PresentationContext{ID: v[0]}
	if !rq {
		pc.Result = v[2]
	}
	seenAbstract := false
	err := eachItem(v[4:], func(typ byte, sv []byte) error {
		switch typ {
		case itemAbstractSyntax:
			if !rq || seenAbstract {
				return pduErrorf(AbortUnexpectedParameter, "unexpected abstract syntax sub-item in context %d", pc.ID)
			}
			seenAbstract = true
			s, err := uid(sv, "abstract syntax")
			pc.AbstractSyntax = s
			return err
		case itemTransferSyntax:
			if len(pc.TransferSyntaxes) >= maxSyntaxes || (!rq && len(pc.TransferSyntaxes) == 1) {
				return pduErrorf(AbortInvalidParameter, "too many transfer syntaxes in presentation context %d", pc.ID)
			}
			s, err := uid(sv, "transfer syntax")
			pc.TransferSyntaxes = append(pc.TransferSyntaxes, s)
			return err
		}
		return pduErrorf(AbortUnrecognizedParameter, "sub-item type 0x%02X in presentation context %d", typ, pc.ID)
	})
	if err != nil {
		return pc, err
	}
	if rq && (!seenAbstract || len(pc.TransferSyntaxes) == 0) {
		return pc, pduErrorf(AbortInvalidParameter, "presentation context %d lacks an abstract or transfer syntax (PS3.8 9.3.2.2)", pc.ID)
	}
	return pc, nil
}

func decodeUserInformation(v []byte, ui *UserInformation) error {
	n := 0
	return eachItem(v, func(typ byte, sv []byte) error {
		n++
		if n > maxUserItems {
			return pduErrorf(AbortInvalidParameter, "more than %d user information sub-items", maxUserItems)
		}
		switch typ {
		case itemMaximumLength:
			if len(sv) != 4 {
				return pduErrorf(AbortInvalidParameter, "maximum length sub-item of %d bytes (PS3.8 D.1)", len(sv))
			}
			ui.MaximumLength = binary.BigEndian.Uint32(sv)
		case itemImplementationClassUID:
			s, err := uid(sv, "implementation class UID")
			ui.ImplementationClassUID = s
			return err
		case itemImplementationVersionName:
			if len(sv) > 16 {
				return pduErrorf(AbortInvalidParameter, "implementation version name of %d bytes (PS3.7 D.3.3.2.3)", len(sv))
			}
			ui.ImplementationVersionName = strings.TrimRight(string(sv), " \x00")
		case itemAsyncOperationsWindow:
			if len(sv) != 4 {
				return pduErrorf(AbortInvalidParameter, "asynchronous operations window sub-item of %d bytes", len(sv))
			}
			ui.AsyncOperationsWindow = &AsyncOperationsWindow{binary.BigEndian.Uint16(sv[0:2]), binary.BigEndian.Uint16(sv[2:4])}
		case itemRoleSelection:
			s, rest, err := prefixedUID(sv, "role selection SOP class")
			if err != nil {
				return err
			}
			if len(rest) != 2 {
				return pduErrorf(AbortInvalidParameter, "role selection sub-item has %d bytes after its UID, not 2", len(rest))
			}
			ui.RoleSelections = append(ui.RoleSelections, RoleSelection{SOPClassUID: s, SCU: rest[0] == 1, SCP: rest[1] == 1})
		case itemSOPClassExtendedNegotiation:
			s, rest, err := prefixedUID(sv, "extended negotiation SOP class")
			if err != nil {
				return err
			}
			ui.ExtendedNegotiations = append(ui.ExtendedNegotiations, ExtendedNegotiation{SOPClassUID: s, Info: rest})
		default:
			ui.Other = append(ui.Other, Item{Type: typ, Data: sv})
		}
		return nil
	})
}

// prefixedUID reads a UID preceded by its 2-byte length, as in role selection and extended negotiation sub-items.
func prefixedUID(b []byte, what string) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, pduErrorf(AbortInvalidParameter, "%s sub-item too short", what)
	}
	n := int(binary.BigEndian.Uint16(b[:2]))
	if n > len(b)-2 {
		return "", nil, pduErrorf(AbortInvalidParameter, "%s UID length %d with %d bytes left", what, n, len(b)-2)
	}
	s, err := uid(b[2:2+n], what)
	return s, b[2+n:], err
}

// uid reads a UID from an item, tolerating the trailing NUL or space some implementations add.
func uid(b []byte, what string) (string, error) {
	s := strings.TrimRight(string(b), "\x00 ")
	if len(s) == 0 || len(s) > maxUIDLength {
		return "", pduErrorf(AbortInvalidParameter, "%s of %d bytes (PS3.5 9.1: 1 to 64)", what, len(s))
	}
	return s, nil
}

// aeTitle reads a 16-byte AE title field: leading and trailing spaces are not significant (PS3.5 6.2, AE).
func aeTitle(b []byte) string { return strings.Trim(string(b), " \x00") }
