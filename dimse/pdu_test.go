package dimse_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dimse"
)

// cat joins byte fragments and strings, so golden PDUs can be written field by field with PS3.8's names.
func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		case int:
			b = append(b, byte(p))
		}
	}
	return b
}

func ae16(s string) string { return s + strings.Repeat(" ", 16-len(s)) }

// Golden PDUs, annotated as PS3.8 9.3 lays them out (the shape of pynetdicom's tests/encoded_pdu_items.py).
var (
	// A-ASSOCIATE-RQ (PS3.8 9.3.2): ECHOSCU calls RENKEI proposing Verification in Implicit VR Little Endian.
	goldenAssociateRQ = cat(
		0x01, 0x00, // PDU-type A-ASSOCIATE-RQ, reserved
		[]byte{0x00, 0x00, 0x00, 0xD1},         // PDU-length 209
		[]byte{0x00, 0x01}, []byte{0x00, 0x00}, // protocol-version 1, reserved
		ae16("RENKEI"),                                  // called-AE-title
		ae16("ECHOSCU"),                                 // calling-AE-title
		make([]byte, 32),                                // reserved
		0x10, 0x00, 0x00, 0x15, "1.2.840.10008.3.1.1.1", // application context item, length 21
		0x20, 0x00, 0x00, 0x2E, // presentation context item (RQ), length 46
		0x01, 0x00, 0x00, 0x00, //   presentation-context-ID 1, reserved ×3
		0x30, 0x00, 0x00, 0x11, "1.2.840.10008.1.1", //   abstract syntax sub-item: Verification
		0x40, 0x00, 0x00, 0x11, "1.2.840.10008.1.2", //   transfer syntax sub-item: Implicit VR Little Endian
		0x50, 0x00, 0x00, 0x3E, // user information item, length 62
		0x51, 0x00, 0x00, 0x04, []byte{0x00, 0x00, 0x40, 0x00}, //   maximum length 16384 (PS3.8 D.1)
		0x52, 0x00, 0x00, 0x07, "1.2.3.4", //   implementation class UID (PS3.7 D.3.3.2)
		0x53, 0x00, 0x00, 0x04, []byte{0x00, 0x05, 0x00, 0x01}, //   asynchronous operations window 5 invoked, 1 performed
		0x54, 0x00, 0x00, 0x15, 0x00, 0x11, "1.2.840.10008.1.1", 0x00, 0x01, //   role selection: Verification, SCU 0, SCP 1
		0x55, 0x00, 0x00, 0x06, "TEST_1", //   implementation version name
	)
	goldenAssociateRQValue = &dimse.AAssociateRQ{
		ProtocolVersion: 1, CalledAETitle: "RENKEI", CallingAETitle: "ECHOSCU", ApplicationContextName: dimse.ApplicationContextName,
		PresentationContexts: []dimse.PresentationContext{{ID: 1, AbstractSyntax: "1.2.840.10008.1.1", TransferSyntaxes: []string{"1.2.840.10008.1.2"}}},
		UserInformation: dimse.UserInformation{MaximumLength: 16384, ImplementationClassUID: "1.2.3.4", ImplementationVersionName: "TEST_1",
			AsyncOperationsWindow: &dimse.AsyncOperationsWindow{MaxOperationsInvoked: 5, MaxOperationsPerformed: 1},
			RoleSelections:        []dimse.RoleSelection{{SOPClassUID: "1.2.840.10008.1.1", SCP: true}}},
	}

	// A-ASSOCIATE-AC (PS3.8 9.3.3): context 1 accepted in Implicit VR Little Endian, context 3 refused.
	goldenAssociateAC = cat(
		0x02, 0x00, // PDU-type A-ASSOCIATE-AC, reserved
		[]byte{0x00, 0x00, 0x00, 0xB9},         // PDU-length 185
		[]byte{0x00, 0x01}, []byte{0x00, 0x00}, // protocol-version 1, reserved
		ae16("RENKEI"), ae16("ECHOSCU"), // reserved, sent as the AE titles of the RQ (PS3.8 9.3.3)
		make([]byte, 32),
		0x10, 0x00, 0x00, 0x15, "1.2.840.10008.3.1.1.1", // application context item
		0x21, 0x00, 0x00, 0x19, // presentation context item (AC), length 25
		0x01, 0x00, 0x00, 0x00, //   ID 1, reserved, result 0 acceptance, reserved
		0x40, 0x00, 0x00, 0x11, "1.2.840.10008.1.2", //   transfer syntax sub-item
		0x21, 0x00, 0x00, 0x19, // presentation context item (AC)
		0x03, 0x00, 0x03, 0x00, //   ID 3, result 3 abstract-syntax-not-supported
		0x40, 0x00, 0x00, 0x11, "1.2.840.10008.1.2", //   transfer syntax sub-item (not significant)
		0x50, 0x00, 0x00, 0x1E, // user information item, length 30
		0x51, 0x00, 0x00, 0x04, []byte{0x00, 0x04, 0x00, 0x00}, //   maximum length 262144
		0x52, 0x00, 0x00, 0x07, "1.2.3.4",
		0x56, 0x00, 0x00, 0x07, 0x00, 0x03, "1.2", 0x01, 0x00, //   SOP class extended negotiation: "1.2", info 01 00
	)
	goldenAssociateACValue = &dimse.AAssociateAC{
		ProtocolVersion: 1, CalledAETitle: "RENKEI", CallingAETitle: "ECHOSCU", ApplicationContextName: dimse.ApplicationContextName,
		PresentationContexts: []dimse.PresentationContext{
			{ID: 1, Result: dimse.ResultAcceptance, TransferSyntaxes: []string{"1.2.840.10008.1.2"}},
			{ID: 3, Result: dimse.ResultAbstractSyntaxNotSupported, TransferSyntaxes: []string{"1.2.840.10008.1.2"}},
		},
		UserInformation: dimse.UserInformation{MaximumLength: 262144, ImplementationClassUID: "1.2.3.4",
			ExtendedNegotiations: []dimse.ExtendedNegotiation{{SOPClassUID: "1.2", Info: []byte{1, 0}}}},
	}

	// A-ASSOCIATE-RJ (PS3.8 9.3.4): rejected-transient, service-provider (presentation), local-limit-exceeded.
	goldenAssociateRJ = cat(0x03, 0x00, []byte{0, 0, 0, 4}, 0x00, 0x02, 0x03, 0x02)

	// P-DATA-TF (PS3.8 9.3.5) with two PDVs: the last fragment of a command on context 1 (message control header
	// 0x03, PS3.8 E.2) and a data fragment that is not the last (0x00).
	goldenPDataTF = cat(0x04, 0x00, []byte{0, 0, 0, 0x0E},
		[]byte{0, 0, 0, 4}, 0x01, 0x03, 0xAA, 0xBB, // PDV length 4, context 1, command+last, 2 bytes
		[]byte{0, 0, 0, 2}, 0x01, 0x00, // PDV length 2, context 1, data, no bytes
	)

	goldenReleaseRQ = cat(0x05, 0x00, []byte{0, 0, 0, 4}, []byte{0, 0, 0, 0}) // A-RELEASE-RQ (PS3.8 9.3.6)
	goldenReleaseRP = cat(0x06, 0x00, []byte{0, 0, 0, 4}, []byte{0, 0, 0, 0}) // A-RELEASE-RP (PS3.8 9.3.7)
	// A-ABORT (PS3.8 9.3.8): source 2 service-provider, reason 6 invalid-PDU-parameter-value.
	goldenAbort = cat(0x07, 0x00, []byte{0, 0, 0, 4}, 0x00, 0x00, 0x02, 0x06)
)

func TestPDUGolden(t *testing.T) {
	tests := []struct {
		name  string
		bytes []byte
		pdu   dimse.PDU
	}{
		{"A-ASSOCIATE-RQ", goldenAssociateRQ, goldenAssociateRQValue},
		{"A-ASSOCIATE-AC", goldenAssociateAC, goldenAssociateACValue},
		{"A-ASSOCIATE-RJ", goldenAssociateRJ, &dimse.AAssociateRJ{Result: 2, Source: 3, Reason: 2}},
		{"P-DATA-TF", goldenPDataTF, &dimse.PDataTF{PDVs: []dimse.PDV{
			{PresentationContextID: 1, Command: true, Last: true, Data: []byte{0xAA, 0xBB}},
			{PresentationContextID: 1, Data: []byte{}}}}},
		{"A-RELEASE-RQ", goldenReleaseRQ, &dimse.AReleaseRQ{}},
		{"A-RELEASE-RP", goldenReleaseRP, &dimse.AReleaseRP{}},
		{"A-ABORT", goldenAbort, &dimse.AAbort{Source: dimse.AbortServiceProvider, Reason: dimse.AbortInvalidParameter}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dimse.EncodePDU(tc.pdu)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.bytes, got); diff != "" {
				t.Errorf("encoding differs from the golden bytes (-want +got):\n%s", diff)
			}
			p, err := dimse.ReadPDU(bytes.NewReader(tc.bytes), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.pdu, p); diff != "" {
				t.Errorf("decoding differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReservedRQ(t *testing.T) {
	// Unknown item types in the variable field are ignored (PS3.8 9.3.1); UIDs padded with a NUL are tolerated.
	b := cat(goldenAssociateRQ[:6+68+25], 0x7F, 0x00, 0x00, 0x02, 0xEE, 0xEE, goldenAssociateRQ[6+68+25:])
	b[5] += 6
	p, err := dimse.DecodePDU(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(goldenAssociateRQValue, p); diff != "" {
		t.Error(diff)
	}
}

func TestPDULimits(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		reason dimse.AbortReason
	}{
		{"length 0xFFFFFFFF", cat(0x04, 0x00, []byte{0xFF, 0xFF, 0xFF, 0xFF}), dimse.AbortInvalidParameter},
		{"P-DATA over max", cat(0x04, 0x00, []byte{0x00, 0x01, 0x00, 0x01}), dimse.AbortInvalidParameter},
		{"RQ over 1 MiB", cat(0x01, 0x00, []byte{0x00, 0x10, 0x00, 0x01}), dimse.AbortInvalidParameter},
		{"RQ shorter than fixed part", cat(0x01, 0x00, []byte{0, 0, 0, 10}), dimse.AbortInvalidParameter},
		{"unknown type", cat(0x09, 0x00, []byte{0, 0, 0, 0}), dimse.AbortUnrecognizedPDU},
		{"release of length 5", cat(0x05, 0x00, []byte{0, 0, 0, 5}, []byte{0, 0, 0, 0, 0}), dimse.AbortInvalidParameter},
		{"PDV past end", cat(0x04, 0x00, []byte{0, 0, 0, 6}, []byte{0, 0, 0, 9}, 1, 3), dimse.AbortInvalidParameter},
		{"PDV of length 1", cat(0x04, 0x00, []byte{0, 0, 0, 5}, []byte{0, 0, 0, 1}, 1), dimse.AbortInvalidParameter},
		{"empty P-DATA", cat(0x04, 0x00, []byte{0, 0, 0, 0}), dimse.AbortInvalidParameter},
		{"reserved MCH bits", cat(0x04, 0x00, []byte{0, 0, 0, 6}, []byte{0, 0, 0, 2}, 1, 0x07), dimse.AbortInvalidParameter},
		{"item past end", func() []byte {
			b := append([]byte(nil), goldenAssociateRQ...)
			b[6+68+3] = 0xFF // application context item length 255
			return b
		}(), dimse.AbortInvalidParameter},
		{"no application context", func() []byte {
			b := cat(goldenAssociateRQ[:6+68], goldenAssociateRQ[6+68+25:])
			b[5] -= 25
			return b
		}(), dimse.AbortInvalidParameter},
		{"UID of 65 characters", func() []byte {
			b := cat(goldenAssociateRQ[:6+68], 0x10, 0x00, 0x00, 65, strings.Repeat("1", 65), goldenAssociateRQ[6+68+25:])
			b[5] += 65 - 21
			return b
		}(), dimse.AbortInvalidParameter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The stream behind the header is empty: a limit must be enforced before reading (and allocating) a body.
			_, err := dimse.ReadPDU(bytes.NewReader(tc.in), 1<<16)
			var pe *dimse.PDUError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *PDUError", err)
			}
			if pe.Reason != tc.reason {
				t.Errorf("abort reason %d, want %d (%v)", pe.Reason, tc.reason, err)
			}
		})
	}
}

func TestReadPDUTruncated(t *testing.T) {
	for n := 0; n < len(goldenAssociateRQ); n++ {
		_, err := dimse.ReadPDU(bytes.NewReader(goldenAssociateRQ[:n]), 0)
		if n == 0 && err != io.EOF {
			t.Fatalf("empty stream: %v, want io.EOF", err)
		}
		if n > 0 && err != io.ErrUnexpectedEOF {
			t.Fatalf("%d bytes: %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
}

// A peer that announces a large PDU and sends a few bytes costs a few bytes of memory.
func TestReadPDUAllocatesWhatArrives(t *testing.T) {
	in := cat(0x04, 0x00, []byte{0x00, 0x0F, 0xFF, 0xFF}, make([]byte, 100))
	allocs := testing.AllocsPerRun(10, func() {
		_, _ = dimse.ReadPDU(bytes.NewReader(in), 1<<20)
	})
	if allocs > 5 {
		t.Errorf("%v allocations", allocs)
	}
}

func TestEncodeRejectsBadValues(t *testing.T) {
	for _, p := range []dimse.PDU{
		&dimse.AAssociateRQ{CalledAETitle: "A_TITLE_THAT_IS_TOO_LONG", CallingAETitle: "X"},
		&dimse.AAssociateRQ{CalledAETitle: "A", CallingAETitle: ""},
		&dimse.AAssociateRQ{CalledAETitle: "A", CallingAETitle: "B\\C"},
		&dimse.AAssociateRQ{CalledAETitle: "A", CallingAETitle: "B", PresentationContexts: []dimse.PresentationContext{
			{ID: 1, AbstractSyntax: strings.Repeat("1", 65), TransferSyntaxes: []string{"1.2"}}}},
	} {
		if _, err := dimse.EncodePDU(p); err == nil {
			t.Errorf("%+v encoded", p)
		}
	}
}
