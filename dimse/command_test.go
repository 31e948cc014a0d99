package dimse_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
	"renkei/dimse"
)

// le16 and le32 write little-endian values for golden command sets.
func le16(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }
func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// A C-ECHO-RQ command set in Implicit VR Little Endian (PS3.7 9.3.5.1, Annex E): tag, 32-bit length, value.
var goldenEchoRQ = cat(
	le16(0x0000), le16(0x0000), le32(4), le32(56), // (0000,0000) CommandGroupLength UL 56
	le16(0x0000), le16(0x0002), le32(18), "1.2.840.10008.1.1", 0x00, // (0000,0002) AffectedSOPClassUID, NUL-padded
	le16(0x0000), le16(0x0100), le32(2), le16(0x0030), // (0000,0100) CommandField C-ECHO-RQ
	le16(0x0000), le16(0x0110), le32(2), le16(7), // (0000,0110) MessageID 7
	le16(0x0000), le16(0x0800), le32(2), le16(0x0101), // (0000,0800) CommandDataSetType: no data set
)

func TestCommandGolden(t *testing.T) {
	c := &dimse.Command{CommandField: dimse.CEchoRQ, AffectedSOPClassUID: dimse.Verification, MessageID: 7,
		CommandDataSetType: dimse.NoDataSet}
	got, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(goldenEchoRQ, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	back, err := dimse.ParseCommand(goldenEchoRQ)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		c    dimse.Command
	}{
		{"C-ECHO-RSP", dimse.Command{CommandField: dimse.CEchoRSP, AffectedSOPClassUID: dimse.Verification, MessageIDBeingRespondedTo: 7, CommandDataSetType: dimse.NoDataSet}},
		{"C-STORE-RQ from a move", dimse.Command{CommandField: dimse.CStoreRQ, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.1.2", MessageID: 9,
			Priority: dimse.PriorityHigh, CommandDataSetType: dimse.DataSetPresent, AffectedSOPInstanceUID: "1.2.3.4.5",
			MoveOriginatorApplicationEntityTitle: "MOVESCU", MoveOriginatorMessageID: 3}},
		{"C-STORE-RSP failure", dimse.Command{CommandField: dimse.CStoreRSP, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
			MessageIDBeingRespondedTo: 9, CommandDataSetType: dimse.NoDataSet, Status: dimse.StatusOutOfResources,
			ErrorComment: "disk full", AffectedSOPInstanceUID: "1.2.3.4.5", OffendingElement: []dicom.Tag{dicom.PatientID}}},
		{"C-FIND-RQ", dimse.Command{CommandField: dimse.CFindRQ, AffectedSOPClassUID: dimse.StudyRootQueryRetrieveInformationModelFind,
			MessageID: 1, CommandDataSetType: dimse.DataSetPresent}},
		{"C-MOVE-RQ", dimse.Command{CommandField: dimse.CMoveRQ, AffectedSOPClassUID: dimse.StudyRootQueryRetrieveInformationModelMove,
			MessageID: 2, MoveDestination: "STORESCP", CommandDataSetType: dimse.DataSetPresent}},
		{"C-MOVE-RSP pending", dimse.Command{CommandField: dimse.CMoveRSP, AffectedSOPClassUID: dimse.StudyRootQueryRetrieveInformationModelMove,
			MessageIDBeingRespondedTo: 2, CommandDataSetType: dimse.NoDataSet, Status: dimse.StatusPending,
			SubOperations: &dimse.SubOperations{Remaining: 3, Completed: 1, Failed: 1, Warning: 0}}},
		{"C-GET-RSP final", dimse.Command{CommandField: dimse.CGetRSP, AffectedSOPClassUID: dimse.PatientRootQueryRetrieveInformationModelGet,
			MessageIDBeingRespondedTo: 2, CommandDataSetType: dimse.NoDataSet, Status: dimse.StatusSuccess,
			SubOperations: &dimse.SubOperations{Completed: 5}}},
		{"C-CANCEL-RQ", dimse.Command{CommandField: dimse.CCancelRQ, MessageIDBeingRespondedTo: 4, CommandDataSetType: dimse.NoDataSet}},
		{"N-ACTION-RQ", dimse.Command{CommandField: dimse.NActionRQ, RequestedSOPClassUID: dimse.StorageCommitmentPushModel,
			RequestedSOPInstanceUID: dimse.StorageCommitmentPushModelInstance, MessageID: 5, ActionTypeID: 1, CommandDataSetType: dimse.DataSetPresent}},
		{"N-ACTION-RSP", dimse.Command{CommandField: dimse.NActionRSP, AffectedSOPClassUID: dimse.StorageCommitmentPushModel,
			AffectedSOPInstanceUID: dimse.StorageCommitmentPushModelInstance, MessageIDBeingRespondedTo: 5, ActionTypeID: 1, CommandDataSetType: dimse.NoDataSet}},
		{"N-EVENT-REPORT-RQ", dimse.Command{CommandField: dimse.NEventReportRQ, AffectedSOPClassUID: dimse.StorageCommitmentPushModel,
			AffectedSOPInstanceUID: dimse.StorageCommitmentPushModelInstance, MessageID: 1, EventTypeID: 2, CommandDataSetType: dimse.DataSetPresent}},
		{"N-EVENT-REPORT-RSP", dimse.Command{CommandField: dimse.NEventReportRSP, AffectedSOPClassUID: dimse.StorageCommitmentPushModel,
			AffectedSOPInstanceUID: dimse.StorageCommitmentPushModelInstance, MessageIDBeingRespondedTo: 1, EventTypeID: 2, CommandDataSetType: dimse.NoDataSet}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := dimse.ParseCommand(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tc.c, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if gl := uint32(b[8]) | uint32(b[9])<<8 | uint32(b[10])<<16 | uint32(b[11])<<24; int(gl) != len(b)-12 {
				t.Errorf("CommandGroupLength %d, %d bytes follow", gl, len(b)-12)
			}
		})
	}
}

func TestCommandFinalOmitsRemaining(t *testing.T) {
	c := dimse.Command{CommandField: dimse.CMoveRSP, Status: dimse.StatusSuccess, SubOperations: &dimse.SubOperations{Remaining: 9, Completed: 2}}
	b, _ := c.Encode()
	got, _ := dimse.ParseCommand(b)
	if got.SubOperations.Remaining != 0 || got.SubOperations.Completed != 2 {
		t.Errorf("final response sub-operations %+v: PS3.7 9.3.3.2 leaves Remaining out of a final response", got.SubOperations)
	}
}

func TestParseCommandErrors(t *testing.T) {
	tests := map[string][]byte{
		"no command field":   cat(le16(0), le16(0x0110), le32(2), le16(7)),
		"length past end":    cat(le16(0), le16(0x0100), le32(200), le16(0x30)),
		"group 0008":         cat(le16(0), le16(0x0100), le32(2), le16(0x30), le16(8), le16(0x18), le32(0)),
		"US of 3 bytes":      cat(le16(0), le16(0x0100), le32(3), le16(0x30), 0),
		"short header":       cat(le16(0), le16(0x0100), le16(2)),
		"duplicate element":  cat(le16(0), le16(0x0100), le32(2), le16(0x30), le16(0), le16(0x0100), le32(2), le16(0x30)),
		"AT of 6 bytes":      cat(le16(0), le16(0x0100), le32(2), le16(0x30), le16(0), le16(0x0901), le32(6), le32(0), le16(0)),
		"UID of 66 bytes":    cat(le16(0), le16(0x0100), le32(2), le16(0x30), le16(0), le16(0x0002), le32(66), strings.Repeat("1", 66)),
		"over 64 KiB":        make([]byte, dimse.MaxCommandLength+1),
		"group length short": cat(le16(0), le16(0), le32(2), le16(0), le16(0), le16(0x0100), le32(2), le16(0x30)),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := dimse.ParseCommand(b)
			var ce *dimse.CommandError
			if !errors.As(err, &ce) {
				t.Errorf("got %v, want a *CommandError", err)
			}
		})
	}
}

func TestStatusKinds(t *testing.T) {
	tests := []struct {
		code                                     uint16
		success, warning, failure, pending, canc bool
	}{
		{0x0000, true, false, false, false, false},
		{0xFF00, false, false, false, true, false},
		{0xFF01, false, false, false, true, false},
		{0xFE00, false, false, false, false, true},
		{0xB000, false, true, false, false, false},
		{0x0107, false, true, false, false, false},
		{0xA700, false, false, true, false, false},
		{0xC000, false, false, true, false, false},
		{0x0211, false, false, true, false, false},
	}
	for _, tc := range tests {
		s := dimse.Status{Code: tc.code}
		got := [5]bool{s.IsSuccess(), s.IsWarning(), s.IsFailure(), s.IsPending(), s.IsCancel()}
		want := [5]bool{tc.success, tc.warning, tc.failure, tc.pending, tc.canc}
		if got != want {
			t.Errorf("0x%04X: got %v, want %v", tc.code, got, want)
		}
		if (s.Err() != nil) != (tc.failure || tc.canc) {
			t.Errorf("0x%04X: Err() = %v", tc.code, s.Err())
		}
	}
}
