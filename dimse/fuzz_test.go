package dimse_test

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
	"renkei/dimse"
)

// allocated returns the bytes allocated while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzReadPDU feeds ReadPDU any bytes. It must not panic, must allocate in proportion to the input whatever lengths
// it announces, and a PDU it decodes must encode to bytes that decode to the same PDU.
//
//	go test -run XXX -fuzz FuzzReadPDU -fuzztime 60s ./dimse
func FuzzReadPDU(f *testing.F) {
	for _, seed := range [][]byte{goldenAssociateRQ, goldenAssociateAC, goldenAssociateRJ, goldenPDataTF, goldenReleaseRQ,
		goldenReleaseRP, goldenAbort, cat(0x04, 0x00, []byte{0xFF, 0xFF, 0xFF, 0xFF})} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var (
			p   dimse.PDU
			err error
		)
		n := allocated(func() { p, err = dimse.ReadPDU(bytes.NewReader(in), 1<<20) })
		if limit := 64<<10 + 200*uint64(len(in)); n > limit {
			t.Fatalf("a %d-byte input allocated %d bytes", len(in), n)
		}
		if err != nil {
			return
		}
		b, err := dimse.EncodePDU(p)
		if err != nil {
			return // decodable but not encodable (an AE title with a backslash, say)
		}
		q, err := dimse.DecodePDU(b, 1<<20)
		if err != nil {
			t.Fatalf("re-encoded PDU does not decode: %v", err)
		}
		if diff := cmp.Diff(p, q); diff != "" {
			t.Fatalf("round trip differs:\n%s", diff)
		}
	})
}

// FuzzParseCommand feeds ParseCommand any bytes: no panic, and a command it decodes encodes to a command set that
// decodes to the same command.
//
//	go test -run XXX -fuzz FuzzParseCommand -fuzztime 60s ./dimse
func FuzzParseCommand(f *testing.F) {
	f.Add(goldenEchoRQ)
	for _, c := range []dimse.Command{
		{CommandField: dimse.CStoreRQ, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.1.2", AffectedSOPInstanceUID: "1.2.3", MessageID: 3,
			CommandDataSetType: dimse.DataSetPresent, MoveOriginatorApplicationEntityTitle: "MOVER", MoveOriginatorMessageID: 2},
		{CommandField: dimse.CMoveRSP, MessageIDBeingRespondedTo: 3, Status: dimse.StatusPending, CommandDataSetType: dimse.NoDataSet,
			SubOperations: &dimse.SubOperations{Remaining: 1, Completed: 2}, ErrorComment: "x", OffendingElement: []dicom.Tag{1}},
	} {
		b, _ := c.Encode()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := dimse.ParseCommand(in)
		if err != nil {
			return
		}
		b, err := c.Encode()
		if err != nil {
			return // e.g. an AE value longer than 16 characters
		}
		d, err := dimse.ParseCommand(b)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		// Encode writes the fields the command field calls for: compare what it wrote.
		b2, _ := d.Encode()
		if !bytes.Equal(b, b2) {
			t.Fatalf("encoding is not stable:\n%x\n%x", b, b2)
		}
	})
}
