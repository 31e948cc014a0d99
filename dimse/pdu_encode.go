package dimse

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// EncodePDU returns the bytes of p as PS3.8 9.3 lays them out. It fails on values that cannot be encoded: an AE title
// longer than 16 characters, a UID longer than 64, an item longer than its 16-bit length field.
func EncodePDU(p PDU) ([]byte, error) {
	return AppendPDU(nil, p)
}

// AppendPDU appends the encoding of p to dst (see EncodePDU).
func AppendPDU(dst []byte, p PDU) ([]byte, error) {
	start := len(dst)
	dst = append(dst, p.pduType(), 0, 0, 0, 0, 0)
	var err error
	switch p := p.(type) {
	case *AAssociateRQ:
		dst, err = appendAssociate(dst, p.ProtocolVersion, p.CalledAETitle, p.CallingAETitle, p.ApplicationContextName,
			p.PresentationContexts, &p.UserInformation, true)
	case *AAssociateAC:
		dst, err = appendAssociate(dst, p.ProtocolVersion, p.CalledAETitle, p.CallingAETitle, p.ApplicationContextName,
			p.PresentationContexts, &p.UserInformation, false)
	case *AAssociateRJ:
		dst = append(dst, 0, p.Result, p.Source, p.Reason)
	case *PDataTF:
		for _, v := range p.PDVs {
			dst = appendPDVHeader(dst, v.PresentationContextID, v.Command, v.Last, len(v.Data))
			dst = append(dst, v.Data...)
		}
	case *AReleaseRQ, *AReleaseRP:
		dst = append(dst, 0, 0, 0, 0)
	case *AAbort:
		dst = append(dst, 0, 0, byte(p.Source), byte(p.Reason))
	default:
		return nil, fmt.Errorf("dimse: cannot encode PDU %T", p)
	}
	if err != nil {
		return nil, err
	}
	n := len(dst) - start - 6
	if uint64(n) > 0xFFFFFFFF {
		return nil, fmt.Errorf("dimse: PDU of %d bytes is too long", n)
	}
	binary.BigEndian.PutUint32(dst[start+2:], uint32(n))
	return dst, nil
}

// appendPDVHeader appends a PDV item header: length, presentation context ID and message control header (PS3.8
// 9.3.5.1, E.2).
func appendPDVHeader(dst []byte, pcID byte, command, last bool, n int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(n+2))
	mch := byte(0)
	if command {
		mch |= 1
	}
	if last {
		mch |= 2
	}
	return append(dst, pcID, mch)
}

func appendAssociate(dst []byte, version uint16, called, calling, appCtx string, pcs []PresentationContext, ui *UserInformation, rq bool) ([]byte, error) {
	dst = binary.BigEndian.AppendUint16(dst, version)
	dst = append(dst, 0, 0)
	var err error
	if dst, err = appendAETitle(dst, called); err != nil {
		return nil, err
	}
	if dst, err = appendAETitle(dst, calling); err != nil {
		return nil, err
	}
	dst = append(dst, make([]byte, 32)...)
	if appCtx == "" {
		appCtx = ApplicationContextName
	}
	if dst, err = appendUIDItem(dst, itemApplicationContext, appCtx); err != nil {
		return nil, err
	}
	for _, pc := range pcs {
		typ := itemPresentationContextAC
		if rq {
			typ = itemPresentationContextRQ
		}
		at := len(dst)
		dst = append(dst, typ, 0, 0, 0, pc.ID, 0, 0, 0)
		if rq {
			if dst, err = appendUIDItem(dst, itemAbstractSyntax, pc.AbstractSyntax); err != nil {
				return nil, err
			}
		} else {
			dst[at+6] = pc.Result
		}
		for _, ts := range pc.TransferSyntaxes {
			if dst, err = appendUIDItem(dst, itemTransferSyntax, ts); err != nil {
				return nil, err
			}
		}
		if dst, err = closeItem(dst, at); err != nil {
			return nil, err
		}
	}
	at := len(dst)
	dst = append(dst, itemUserInformation, 0, 0, 0)
	dst = append(dst, itemMaximumLength, 0, 0, 4)
	dst = binary.BigEndian.AppendUint32(dst, ui.MaximumLength)
	if ui.ImplementationClassUID != "" {
		if dst, err = appendUIDItem(dst, itemImplementationClassUID, ui.ImplementationClassUID); err != nil {
			return nil, err
		}
	}
	if w := ui.AsyncOperationsWindow; w != nil {
		dst = append(dst, itemAsyncOperationsWindow, 0, 0, 4)
		dst = binary.BigEndian.AppendUint16(dst, w.MaxOperationsInvoked)
		dst = binary.BigEndian.AppendUint16(dst, w.MaxOperationsPerformed)
	}
	for _, r := range ui.RoleSelections {
		sat := len(dst)
		dst = append(dst, itemRoleSelection, 0, 0, 0)
		if dst, err = appendPrefixedUID(dst, r.SOPClassUID); err != nil {
			return nil, err
		}
		dst = append(dst, b2u(r.SCU), b2u(r.SCP))
		if dst, err = closeItem(dst, sat); err != nil {
			return nil, err
		}
	}
	if v := ui.ImplementationVersionName; v != "" {
		if len(v) > 16 {
			return nil, fmt.Errorf("dimse: implementation version name %q is longer than 16 characters (PS3.7 D.3.3.2.3)", v)
		}
		dst = append(dst, itemImplementationVersionName, 0, 0, byte(len(v)))
		dst = append(dst, v...)
	}
	for _, x := range ui.ExtendedNegotiations {
		sat := len(dst)
		dst = append(dst, itemSOPClassExtendedNegotiation, 0, 0, 0)
		if dst, err = appendPrefixedUID(dst, x.SOPClassUID); err != nil {
			return nil, err
		}
		dst = append(dst, x.Info...)
		if dst, err = closeItem(dst, sat); err != nil {
			return nil, err
		}
	}
	for _, it := range ui.Other {
		sat := len(dst)
		dst = append(dst, it.Type, 0, 0, 0)
		dst = append(dst, it.Data...)
		if dst, err = closeItem(dst, sat); err != nil {
			return nil, err
		}
	}
	return closeItem(dst, at)
}

// closeItem writes the 16-bit length of the item that starts at dst[at].
func closeItem(dst []byte, at int) ([]byte, error) {
	n := len(dst) - at - 4
	if n > 0xFFFF {
		return nil, fmt.Errorf("dimse: item type 0x%02X of %d bytes does not fit its 16-bit length", dst[at], n)
	}
	binary.BigEndian.PutUint16(dst[at+2:], uint16(n))
	return dst, nil
}

func appendUIDItem(dst []byte, typ byte, uid string) ([]byte, error) {
	if uid == "" || len(uid) > maxUIDLength {
		return nil, fmt.Errorf("dimse: UID %q in item 0x%02X must have 1 to 64 characters (PS3.5 9.1)", uid, typ)
	}
	dst = append(dst, typ, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(uid)))
	return append(dst, uid...), nil
}

func appendPrefixedUID(dst []byte, uid string) ([]byte, error) {
	if uid == "" || len(uid) > maxUIDLength {
		return nil, fmt.Errorf("dimse: UID %q must have 1 to 64 characters (PS3.5 9.1)", uid)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(uid)))
	return append(dst, uid...), nil
}

// appendAETitle appends an AE title as a 16-byte field padded with spaces (PS3.8 9.3.2, PS3.5 6.2).
func appendAETitle(dst []byte, ae string) ([]byte, error) {
	if err := checkAETitle(ae); err != nil {
		return nil, err
	}
	dst = append(dst, ae...)
	return append(dst, strings.Repeat(" ", 16-len(ae))...), nil
}

// checkAETitle enforces PS3.5 6.2 (AE): 1–16 characters of the default repertoire, no backslash or control
// characters, not only spaces.
func checkAETitle(ae string) error {
	if strings.TrimSpace(ae) == "" || len(ae) > maxAETitleLength {
		return fmt.Errorf("dimse: AE title %q must have 1 to 16 characters (PS3.5 6.2)", ae)
	}
	for i := 0; i < len(ae); i++ {
		if c := ae[i]; c < 0x20 || c > 0x7E || c == '\\' {
			return fmt.Errorf("dimse: AE title %q contains a character PS3.5 6.2 forbids", ae)
		}
	}
	return nil
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}
