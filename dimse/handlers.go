package dimse

import (
	"context"
	"io"

	"renkei/dicom"
)

// Handlers are the services an application provides over DIMSE: the archive side implements them, this package
// calls them (the Orthanc and pynetdicom shape). A nil handler means the service is not offered and its presentation
// contexts are refused, except Echo: C-ECHO is always answered, with success when Echo is nil.
//
// A handler's context is canceled when the association ends (released, aborted, lost) and, for C-FIND, C-MOVE and
// C-GET, when the peer sends C-CANCEL-RQ.
type Handlers struct {
	// Echo answers C-ECHO (PS3.4 A, PS3.7 9.1.5).
	Echo func(ctx context.Context, a *Association) Status
	// Store receives C-STORE data sets (PS3.4 B, PS3.7 9.1.1), also the sub-operations of our own C-GET.
	Store StoreHandler
	// Find answers C-FIND in the Patient Root and Study Root information models (PS3.4 C.4.1).
	Find FindHandler
	// FindOptions are the C-FIND extended negotiation options Find performs (PS3.4 C.5.1.1). A requestor that
	// proposes some is answered with those of them Find performs; Association.FindOptions tells Find what was
	// agreed. None (the zero value) answers nothing, which the requestor reads as none agreed.
	FindOptions FindOptions
	// Move and MoveDestination serve C-MOVE (PS3.4 C.4.2): Move selects the instances, MoveDestination maps the
	// destination AE title to an address (ok false: status 0xA801, move destination unknown).
	Move            RetrieveHandler
	MoveDestination func(ctx context.Context, a *Association, ae string) (addr string, ok bool)
	// Get serves C-GET (PS3.4 C.4.3): the instances go back on the same association.
	Get RetrieveHandler
	// Commit serves the Storage Commitment Push Model as SCP (PS3.4 J).
	Commit CommitmentHandler
	// EventReport receives N-EVENT-REPORT requests, such as storage commitment results sent to us as SCU (PS3.4 J.3.3).
	EventReport func(ctx context.Context, a *Association, r *EventReport) Status
}

// StoreRequest describes a C-STORE-RQ (PS3.7 9.1.1.1, 9.3.1.1).
type StoreRequest struct {
	MessageID               uint16
	Priority                uint16
	SOPClassUID             string // Affected SOP Class UID
	SOPInstanceUID          string // Affected SOP Instance UID
	TransferSyntaxUID       string // of the data set: the presentation context's
	MoveOriginatorAETitle   string // set when the store is a C-MOVE sub-operation
	MoveOriginatorMessageID uint16
}

// StoreHandler stores the data set of a C-STORE-RQ. data yields the data set exactly as the peer sent it (no
// preamble or File Meta Information) as its P-DATA-TF PDUs arrive, and fails if the association ends before the
// last fragment: an object is complete only when data returned io.EOF. The handler returns the status to answer
// (PS3.4 B.2.3): 0x0000, a warning such as 0xB000, or a failure such as 0xA700 (out of resources), 0xA900 (data set
// does not match SOP class) or 0xC000 (cannot understand). Whatever it leaves unread is read and dropped before the
// response is sent.
type StoreHandler interface {
	Store(ctx context.Context, a *Association, req *StoreRequest, data io.Reader) Status
}

// StoreFunc adapts a function to StoreHandler.
type StoreFunc func(ctx context.Context, a *Association, req *StoreRequest, data io.Reader) Status

// Store calls f.
func (f StoreFunc) Store(ctx context.Context, a *Association, req *StoreRequest, data io.Reader) Status {
	return f(ctx, a, req, data)
}

// FindRequest describes a C-FIND-RQ (PS3.7 9.1.2.1).
type FindRequest struct {
	MessageID         uint16
	Priority          uint16
	SOPClassUID       string         // the information model, e.g. StudyRootQueryRetrieveInformationModelFind
	Identifier        *dicom.DataSet // the query keys, QueryRetrieveLevel included (PS3.4 C.4.1.1.3)
	TransferSyntaxUID string
}

// FindHandler answers a C-FIND. It calls emit once per match, in the order they should reach the peer; emit sends a
// pending response (0xFF00) at once, and fails when the peer canceled (C-CANCEL-RQ) or the association ended, after
// which the handler should return. The returned status ends the operation: 0x0000, 0xA700 (out of resources), 0xA900
// (identifier does not match SOP class) or 0xCxxx (unable to process); after a cancel the peer is told 0xFE00
// whatever is returned (PS3.4 C.4.1.1.4).
type FindHandler interface {
	Find(ctx context.Context, a *Association, req *FindRequest, emit func(*dicom.DataSet) error) Status
}

// FindFunc adapts a function to FindHandler.
type FindFunc func(ctx context.Context, a *Association, req *FindRequest, emit func(*dicom.DataSet) error) Status

// Find calls f.
func (f FindFunc) Find(ctx context.Context, a *Association, req *FindRequest, emit func(*dicom.DataSet) error) Status {
	return f(ctx, a, req, emit)
}

// RetrieveRequest describes a C-MOVE-RQ or C-GET-RQ (PS3.7 9.1.3.1, 9.1.4.1).
type RetrieveRequest struct {
	MessageID         uint16
	Priority          uint16
	SOPClassUID       string // the information model, e.g. StudyRootQueryRetrieveInformationModelMove
	Identifier        *dicom.DataSet
	TransferSyntaxUID string
	MoveDestination   string // C-MOVE only
}

// Instance is one object a C-MOVE or C-GET sends as a C-STORE sub-operation.
type Instance struct {
	SOPClassUID, SOPInstanceUID string
	TransferSyntaxUID           string // as stored
	// Open returns the data set (no preamble or File Meta Information) in transferSyntax: the stored syntax when the
	// destination accepted it, otherwise Explicit or Implicit VR Little Endian, which the archive produces by
	// transcoding or refuses with an error (the sub-operation then fails, PS3.4 C.4.2.3.1).
	Open func(ctx context.Context, transferSyntax string) (io.ReadCloser, error)
}

// RetrieveHandler selects the instances a C-MOVE or C-GET identifier matches (PS3.4 C.4.2.1.4, C.4.3.1.3). A status
// other than success ends the operation with it (e.g. 0xA701, 0xA900, 0xC000); the package then performs the
// sub-operations, sends pending responses with their counts and the final status.
type RetrieveHandler interface {
	Retrieve(ctx context.Context, a *Association, req *RetrieveRequest) ([]Instance, Status)
}

// RetrieveFunc adapts a function to RetrieveHandler.
type RetrieveFunc func(ctx context.Context, a *Association, req *RetrieveRequest) ([]Instance, Status)

// Retrieve calls f.
func (f RetrieveFunc) Retrieve(ctx context.Context, a *Association, req *RetrieveRequest) ([]Instance, Status) {
	return f(ctx, a, req)
}
