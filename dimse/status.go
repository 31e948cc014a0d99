package dimse

import (
	"fmt"

	"renkei/dicom"
)

// DIMSE status codes (PS3.7 Annex C; service-specific ones from PS3.4 B.2.3, C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).
const (
	StatusSuccess        uint16 = 0x0000
	StatusPending        uint16 = 0xFF00 // C-FIND, C-MOVE, C-GET: a match or sub-operations continue
	StatusPendingWarning uint16 = 0xFF01 // C-FIND: optional keys were not supported for this match
	StatusCancel         uint16 = 0xFE00 // the operation ended because of a C-CANCEL

	StatusAttributeListError         uint16 = 0x0107 // warning
	StatusCoercionOfDataElements     uint16 = 0xB000 // C-STORE warning
	StatusSubOperationsWarning       uint16 = 0xB000 // C-MOVE/C-GET: sub-operations completed, one or more failed or warned
	StatusElementsDiscarded          uint16 = 0xB006 // C-STORE warning
	StatusDataSetDoesNotMatchWarning uint16 = 0xB007 // C-STORE warning

	StatusProcessingFailure           uint16 = 0x0110
	StatusNoSuchSOPInstance           uint16 = 0x0112
	StatusInvalidObjectInstance       uint16 = 0x0117
	StatusNoSuchSOPClass              uint16 = 0x0118
	StatusMissingAttribute            uint16 = 0x0120
	StatusSOPClassNotSupported        uint16 = 0x0122
	StatusNoSuchActionType            uint16 = 0x0123
	StatusNotAuthorized               uint16 = 0x0124
	StatusDuplicateInvocation         uint16 = 0x0210
	StatusUnrecognizedOperation       uint16 = 0x0211
	StatusMistypedArgument            uint16 = 0x0212
	StatusResourceLimitation          uint16 = 0x0213
	StatusOutOfResources              uint16 = 0xA700 // C-STORE, C-FIND: refused, out of resources
	StatusOutOfResourcesMatches       uint16 = 0xA701 // C-MOVE, C-GET: unable to calculate the number of matches
	StatusOutOfResourcesSubOps        uint16 = 0xA702 // C-MOVE, C-GET: unable to perform sub-operations
	StatusMoveDestinationUnknown      uint16 = 0xA801 // C-MOVE
	StatusDataSetDoesNotMatchSOPClass uint16 = 0xA900 // C-STORE; for C-FIND/C-MOVE/C-GET: identifier does not match
	StatusCannotUnderstand            uint16 = 0xC000 // C-STORE; for C-FIND/C-MOVE/C-GET: unable to process
)

// Status is the outcome of a DIMSE operation: the Status code and the optional Error Comment and Offending Element of
// the response command (PS3.7 Annex C). The zero value is success.
type Status struct {
	Code             uint16
	ErrorComment     string      // sent when not empty; at most 64 characters (LO) are sent
	OffendingElement []dicom.Tag // sent when not empty
}

// Success is the status of an operation that succeeded.
func Success() Status { return Status{} }

// Failure returns a status with the given code and error comment.
func Failure(code uint16, comment string) Status { return Status{Code: code, ErrorComment: comment} }

// IsSuccess reports a 0x0000 status.
func (s Status) IsSuccess() bool { return s.Code == StatusSuccess }

// IsPending reports a pending status (0xFF00, 0xFF01).
func (s Status) IsPending() bool { return isPending(s.Code) }

// IsCancel reports the cancel status 0xFE00.
func (s Status) IsCancel() bool { return s.Code == StatusCancel }

// IsWarning reports a warning status (PS3.7 C.3): 0x0001, 0x0107, 0x0116 and 0xBxxx.
func (s Status) IsWarning() bool {
	c := s.Code
	return c == 0x0001 || c == 0x0107 || c == 0x0116 || c&0xF000 == 0xB000
}

// IsFailure reports a failure status: anything that is not success, warning, pending or cancel (PS3.7 C.4).
func (s Status) IsFailure() bool {
	return !s.IsSuccess() && !s.IsWarning() && !s.IsPending() && !s.IsCancel()
}

// Err returns nil for success, warning and pending, and a *StatusError for failure and cancel.
func (s Status) Err() error {
	if s.IsFailure() || s.IsCancel() {
		return &StatusError{Status: s}
	}
	return nil
}

// String formats the code, its kind and the error comment, e.g. "0xA700 (failure): disk full".
func (s Status) String() string {
	kind := "failure"
	switch {
	case s.IsSuccess():
		kind = "success"
	case s.IsPending():
		kind = "pending"
	case s.IsCancel():
		kind = "cancel"
	case s.IsWarning():
		kind = "warning"
	}
	if s.ErrorComment != "" {
		return fmt.Sprintf("0x%04X (%s): %s", s.Code, kind, s.ErrorComment)
	}
	return fmt.Sprintf("0x%04X (%s)", s.Code, kind)
}

// StatusError is a DIMSE response status that reports a failure or a cancel, as an error.
type StatusError struct {
	Status Status
}

// Error reports the status.
func (e *StatusError) Error() string { return "DIMSE status " + e.Status.String() }

func isPending(code uint16) bool { return code == StatusPending || code == StatusPendingWarning }

// statusOf reads the status of a response command.
func statusOf(c *Command) Status {
	return Status{Code: c.Status, ErrorComment: c.ErrorComment, OffendingElement: c.OffendingElement}
}

// setStatus copies a status into a response command, cutting the comment to the 64 characters of LO.
func setStatus(c *Command, s Status) {
	c.Status = s.Code
	c.ErrorComment = s.ErrorComment
	if len(c.ErrorComment) > 64 {
		c.ErrorComment = c.ErrorComment[:64]
	}
	c.OffendingElement = s.OffendingElement
}
