package dimse

import (
	"fmt"
	"strings"

	"renkei/dicom"
)

// SOP classes this package provides or uses (PS3.4, PS3.6 Annex A; names are the PS3.6 keywords).
const (
	Verification                                 = "1.2.840.10008.1.1"
	StorageCommitmentPushModel                   = "1.2.840.10008.1.20.1"
	StorageCommitmentPushModelInstance           = "1.2.840.10008.1.20.1.1" // the well-known SOP instance (PS3.4 J.3.5)
	PatientRootQueryRetrieveInformationModelFind = "1.2.840.10008.5.1.4.1.2.1.1"
	PatientRootQueryRetrieveInformationModelMove = "1.2.840.10008.5.1.4.1.2.1.2"
	PatientRootQueryRetrieveInformationModelGet  = "1.2.840.10008.5.1.4.1.2.1.3"
	StudyRootQueryRetrieveInformationModelFind   = "1.2.840.10008.5.1.4.1.2.2.1"
	StudyRootQueryRetrieveInformationModelMove   = "1.2.840.10008.5.1.4.1.2.2.2"
	StudyRootQueryRetrieveInformationModelGet    = "1.2.840.10008.5.1.4.1.2.2.3"
)

// Reject is the result, source and reason of an A-ASSOCIATE-RJ (PS3.8 Table 9-21), packed as 0xRRSSDD, for
// Server.AcceptAE.
type Reject uint32

// Rejections a Server sends (PS3.8 Table 9-21).
const (
	RejectNoReason            Reject = 0x010101 // rejected-permanent; service-user; no-reason-given
	RejectApplicationContext  Reject = 0x010102 // rejected-permanent; service-user; application-context-name-not-supported
	RejectCallingAETitle      Reject = 0x010103 // rejected-permanent; service-user; calling-AE-title-not-recognized
	RejectCalledAETitle       Reject = 0x010107 // rejected-permanent; service-user; called-AE-title-not-recognized
	RejectProtocolVersion     Reject = 0x010202 // rejected-permanent; service-provider (ACSE); protocol-version-not-supported
	RejectTemporaryCongestion Reject = 0x020301 // rejected-transient; service-provider (presentation); temporary-congestion
	RejectLocalLimitExceeded  Reject = 0x020302 // rejected-transient; service-provider (presentation); local-limit-exceeded
)

// PDU returns the A-ASSOCIATE-RJ PDU of the rejection.
func (r Reject) PDU() *AAssociateRJ {
	return &AAssociateRJ{Result: byte(r >> 16), Source: byte(r >> 8), Reason: byte(r)}
}

func rejectText(rj AAssociateRJ) string {
	switch {
	case rj.Source == 1 && rj.Reason == 2:
		return "application context name not supported"
	case rj.Source == 1 && rj.Reason == 3:
		return "calling AE title not recognized"
	case rj.Source == 1 && rj.Reason == 7:
		return "called AE title not recognized"
	case rj.Source == 2 && rj.Reason == 2:
		return "protocol version not supported"
	case rj.Source == 3 && rj.Reason == 1:
		return "temporary congestion"
	case rj.Source == 3 && rj.Reason == 2:
		return "local limit exceeded"
	}
	return "no reason given"
}

// IsStorage reports whether a SOP class UID is taken for storage by default: every standard storage SOP class
// (1.2.840.10008.5.1.4.1.1.*, and the few defined elsewhere: hanging protocols, color palettes, implant templates,
// protocols), and any private SOP class (outside the 1.2.840.10008 root), since vendors store private objects too.
// Other standard SOP classes (verification, query/retrieve, worklists, print…) are services, not storage.
func IsStorage(sopClass string) bool {
	if !dicom.ValidUID(sopClass) {
		return false
	}
	if strings.HasPrefix(sopClass, "1.2.840.10008.5.1.4.1.1.") {
		return true
	}
	switch sopClass {
	case "1.2.840.10008.5.1.4.38.1", // Hanging Protocol Storage
		"1.2.840.10008.5.1.4.39.1",  // Color Palette Storage
		"1.2.840.10008.5.1.4.43.1",  // Generic Implant Template Storage
		"1.2.840.10008.5.1.4.44.1",  // Implant Assembly Template Storage
		"1.2.840.10008.5.1.4.45.1",  // Implant Template Group Storage
		"1.2.840.10008.5.1.4.34.10": // RT Brachy Application Setup Delivery Instruction Storage
		return true
	}
	return !strings.HasPrefix(sopClass, "1.2.840.10008.")
}

// StorageTransferSyntax reports whether a Server accepts a transfer syntax for storage by default: those of the
// dicom package, the High-Throughput JPEG 2000 ones, the video ones and encapsulated uncompressed (PS3.5 A.4, A.5).
// An unknown syntax is refused: its header might not even be Explicit VR Little Endian.
func StorageTransferSyntax(ts string) bool {
	switch ts {
	case dicom.ImplicitVRLittleEndian, dicom.ExplicitVRLittleEndian, dicom.DeflatedExplicitVRLittleEndian,
		dicom.ExplicitVRBigEndian, dicom.JPEGBaseline8Bit, dicom.JPEGExtended12Bit, dicom.JPEGLossless,
		dicom.JPEGLosslessSV1, dicom.JPEGLSLossless, dicom.JPEGLSNearLossless, dicom.JPEG2000Lossless, dicom.JPEG2000,
		dicom.RLELossless,
		"1.2.840.10008.1.2.1.98",  // Encapsulated Uncompressed Explicit VR Little Endian
		"1.2.840.10008.1.2.4.201", // High-Throughput JPEG 2000 (lossless only)
		"1.2.840.10008.1.2.4.202", // High-Throughput JPEG 2000 with RPCL options (lossless only)
		"1.2.840.10008.1.2.4.203", // High-Throughput JPEG 2000
		"1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103",
		"1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.106", // MPEG-2, MPEG-4, HEVC
		"1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108":
		return true
	}
	return false
}

// ChooseTransferSyntax picks the transfer syntax to accept among those proposed in one presentation context, of
// which ok tells the ones the handler supports: Explicit VR Little Endian when proposed; otherwise the first
// compressed (encapsulated) syntax in the peer's order of preference, so an object is stored as the sender holds it;
// otherwise Implicit VR Little Endian; otherwise the first supported. It returns "" when none is supported.
func ChooseTransferSyntax(proposed []string, ok func(string) bool) string {
	has := func(ts string) bool {
		for _, p := range proposed {
			if p == ts {
				return ok(ts)
			}
		}
		return false
	}
	if has(dicom.ExplicitVRLittleEndian) {
		return dicom.ExplicitVRLittleEndian
	}
	for _, p := range proposed {
		if dicom.IsEncapsulated(p) && ok(p) {
			return p
		}
	}
	if has(dicom.ImplicitVRLittleEndian) {
		return dicom.ImplicitVRLittleEndian
	}
	for _, p := range proposed {
		if ok(p) {
			return p
		}
	}
	return ""
}

// identifierSyntax reports the transfer syntaxes accepted for contexts whose data sets this package decodes and
// encodes itself (verification, query/retrieve, storage commitment): the two little endian ones.
func identifierSyntax(ts string) bool {
	return ts == dicom.ExplicitVRLittleEndian || ts == dicom.ImplicitVRLittleEndian
}

// service is what a Server does with an abstract syntax.
type service int

const (
	serviceNone service = iota
	serviceVerification
	serviceStorage
	serviceFind
	serviceMove
	serviceGet
	serviceCommit
)

func (s *Server) serviceFor(abstract string) service {
	h := &s.Handlers
	switch abstract {
	case Verification:
		return serviceVerification
	case PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind:
		if h.Find != nil {
			return serviceFind
		}
		return serviceNone
	case PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove:
		if h.Move != nil {
			return serviceMove
		}
		return serviceNone
	case PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet:
		if h.Get != nil {
			return serviceGet
		}
		return serviceNone
	case StorageCommitmentPushModel:
		if h.Commit != nil || h.EventReport != nil { // as SCP, or as SCU receiving reports on a new association
			return serviceCommit
		}
		return serviceNone
	}
	// Storage contexts serve C-STORE requests to us, and the C-STORE sub-operations we send for a C-GET.
	if (h.Store != nil || h.Get != nil) && s.acceptsStorage(abstract, "") {
		return serviceStorage
	}
	return serviceNone
}

// acceptsStorage applies Server.AcceptStorage, or the default rule (IsStorage and StorageTransferSyntax). An empty
// transfer syntax asks about the SOP class alone.
func (s *Server) acceptsStorage(sopClass, ts string) bool {
	if s.AcceptStorage != nil {
		return s.AcceptStorage(sopClass, ts)
	}
	return IsStorage(sopClass) && (ts == "" || StorageTransferSyntax(ts))
}

// negotiate is the Server's answer to an A-ASSOCIATE indication (PS3.8 7.1.1, PS3.7 D.3): an A-ASSOCIATE-AC with a
// result for each presentation context, or an A-ASSOCIATE-RJ.
func (s *Server) negotiate(a *Association, rq *AAssociateRQ) PDU {
	reject := func(r Reject) PDU {
		a.log.Info("dimse association rejected", "reason", rejectText(*r.PDU()))
		return r.PDU()
	}
	if rq.ApplicationContextName != ApplicationContextName {
		return reject(RejectApplicationContext)
	}
	if !s.admit(a) {
		return reject(RejectTemporaryCongestion) // transient (PS3.8 Table 9-21): the peer tries again later
	}
	if s.AETitle != "" && rq.CalledAETitle != s.AETitle {
		return reject(RejectCalledAETitle)
	}
	if s.AcceptAE != nil {
		if ok, r := s.AcceptAE(a.peer); !ok {
			if r == 0 {
				r = RejectNoReason
			}
			return reject(r)
		}
	}
	ac := &AAssociateAC{
		ProtocolVersion: 1, CalledAETitle: rq.CalledAETitle, CallingAETitle: rq.CallingAETitle,
		ApplicationContextName: ApplicationContextName,
		UserInformation: UserInformation{MaximumLength: a.maxPDU, ImplementationClassUID: dicom.RenkeiImplementationClassUID,
			ImplementationVersionName: dicom.RenkeiImplementationVersion},
	}
	for _, pc := range rq.PresentationContexts {
		res := PresentationContext{ID: pc.ID, Result: ResultAbstractSyntaxNotSupported}
		svc := serviceNone
		if pc.ID%2 == 1 {
			svc = s.serviceFor(pc.AbstractSyntax)
		} else {
			res.Result = ResultNoReason // PS3.8 9.3.2.2: IDs are odd
		}
		if svc != serviceNone {
			ok := identifierSyntax
			if svc == serviceStorage {
				ok = func(ts string) bool { return s.acceptsStorage(pc.AbstractSyntax, ts) }
			}
			if ts := ChooseTransferSyntax(pc.TransferSyntaxes, ok); ts != "" {
				res.Result, res.TransferSyntaxes = ResultAcceptance, []string{ts}
			} else {
				res.Result = ResultTransferSyntaxesNotSupported
			}
		}
		if res.TransferSyntaxes == nil {
			// PS3.8 9.3.3.2: the transfer syntax sub-item is present but not significant when not accepted.
			res.TransferSyntaxes = []string{dicom.ImplicitVRLittleEndian}
		}
		ac.PresentationContexts = append(ac.PresentationContexts, res)
	}
	// PS3.4 C.5.1.1.2: the options of a C-FIND SOP class the requestor proposed that the Find handler performs.
	if s.Handlers.FindOptions != (FindOptions{}) {
		for _, x := range rq.UserInformation.ExtendedNegotiations {
			if s.serviceFor(x.SOPClassUID) == serviceFind && len(x.Info) > 0 {
				ac.UserInformation.ExtendedNegotiations = append(ac.UserInformation.ExtendedNegotiations,
					ExtendedNegotiation{SOPClassUID: x.SOPClassUID, Info: s.Handlers.FindOptions.answer(x.Info)})
			}
		}
	}
	// PS3.7 D.3.3.4: we take the SCP role for storage only when a C-GET handler exists, i.e. when we may send
	// C-STORE sub-operations to a requestor that plays the SCP role.
	for _, r := range rq.UserInformation.RoleSelections {
		if s.serviceFor(r.SOPClassUID) != serviceStorage {
			continue
		}
		ac.UserInformation.RoleSelections = append(ac.UserInformation.RoleSelections,
			RoleSelection{SOPClassUID: r.SOPClassUID, SCU: r.SCU, SCP: r.SCP && s.Handlers.Get != nil})
	}
	return ac
}

// FindOptions are the options of SOP Class Extended Negotiation for the Query/Retrieve SOP classes with C-FIND
// (PS3.4 C.5.1.1, Tables C.5-1 and C.5-2): one byte each in the service-class-application-information field, 1 for
// proposed or performed, 0 for not.
type FindOptions struct {
	RelationalQueries       bool // byte 1: relational queries (PS3.4 C.4.1.2.2)
	DateTimeMatching        bool // byte 2: range matching of a date and its time combined (PS3.4 C.2.2.2.5.1)
	FuzzySemanticMatching   bool // byte 3: fuzzy semantic matching of person names
	TimezoneQueryAdjustment bool // byte 4: times in the query adjusted to the timezone of the data
}

// maxFindInfo is the length of the longest service-class-application-information field of C-FIND (PS3.4 Table
// C.5-2: bytes 5 to 7 are enhanced multi-frame image conversion, empty value and multiple value matching).
const maxFindInfo = 7

// Info returns the options as a service-class-application-information field, for PresentationContext.
// ExtendedNegotiation.
func (o FindOptions) Info() []byte {
	return []byte{b2u(o.RelationalQueries), b2u(o.DateTimeMatching), b2u(o.FuzzySemanticMatching), b2u(o.TimezoneQueryAdjustment)}
}

// ParseFindOptions reads a service-class-application-information field. The field may end after any byte (PS3.4
// C.5.1.1.1): a byte absent is an option not proposed or not performed, as is any value but 1.
func ParseFindOptions(info []byte) FindOptions {
	at := func(i int) bool { return i < len(info) && info[i] == 1 }
	return FindOptions{RelationalQueries: at(0), DateTimeMatching: at(1), FuzzySemanticMatching: at(2), TimezoneQueryAdjustment: at(3)}
}

// answer is the acceptor's field for a proposed one: as many bytes as proposed (up to the seven C-FIND defines),
// each 1 only when it was proposed and o performs it (PS3.4 C.5.1.1.2).
func (o FindOptions) answer(proposed []byte) []byte {
	out := make([]byte, min(len(proposed), maxFindInfo))
	ours := o.Info()
	for i := range out {
		if i < len(ours) && proposed[i] == 1 {
			out[i] = ours[i]
		}
	}
	return out
}

// NoContextError is returned by a client operation when no accepted presentation context fits it.
type NoContextError struct {
	AbstractSyntax, TransferSyntax string
}

// Error names the syntaxes no context was accepted for.
func (e *NoContextError) Error() string {
	if e.TransferSyntax != "" {
		return fmt.Sprintf("dimse: no accepted presentation context for %s in transfer syntax %s", e.AbstractSyntax, e.TransferSyntax)
	}
	return fmt.Sprintf("dimse: no accepted presentation context for %s", e.AbstractSyntax)
}

// contextFor finds an accepted context for an abstract syntax (and transfer syntax, when not empty), preferring
// Explicit VR Little Endian.
func (a *Association) contextFor(abstract, ts string) (*PresentationContext, error) {
	var found *PresentationContext
	for _, pc := range a.Contexts() {
		if pc.AbstractSyntax != abstract || (ts != "" && pc.TransferSyntaxes[0] != ts) {
			continue
		}
		if found == nil || pc.TransferSyntaxes[0] == dicom.ExplicitVRLittleEndian {
			found = &pc
		}
	}
	if found == nil {
		return nil, &NoContextError{AbstractSyntax: abstract, TransferSyntax: ts}
	}
	return found, nil
}
