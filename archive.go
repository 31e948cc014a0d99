package renkei

import "time"

// PatientKey identifies a patient as one institution's system knows them: PatientID is unique only within its issuer
// (IssuerOfPatientID, or the issuer configured for the sender). The same PatientID from two issuers is two patients.
type PatientKey struct {
	Issuer string
	ID     string
}

// Instance is what the index records of one stored DICOM instance, with the patient, study and series attributes it
// carries. Text is UTF-8, decoded from the object's character set.
type Instance struct {
	// Institution is the index key of the owning institution: the one that sent it (token, user or AE). Instances are
	// unique per (Institution, SOPInstanceUID): another institution's copy of the same object is its own.
	Institution      int64
	Patient          PatientKey
	PatientName      string   // PN in DICOM form, component groups separated by '='
	PatientNameKeys  []string // folded search keys of the name (each component group, with and without '^')
	PatientBirthDate string
	PatientSex       string

	StudyInstanceUID       string
	StudyDate              string // YYYYMMDD
	StudyTime              string // HHMMSS.FFFFFF, normalised so that strings compare in time order
	AccessionNumber        string
	StudyID                string
	StudyDescription       string
	ReferringPhysicianName string
	ReferringPhysicianKey  string // folded search keys, each between \x1f delimiters
	TimezoneOffsetFromUTC  string

	SeriesInstanceUID string
	Modality          string
	SeriesNumber      *int
	SeriesDescription string
	BodyPartExamined  string
	SeriesDate        string
	SeriesTime        string
	PPSStartDate      string
	PPSStartTime      string

	SOPInstanceUID    string
	SOPClassUID       string
	InstanceNumber    *int
	TransferSyntaxUID string
	Rows, Columns     int
	NumberOfFrames    int
	BitsAllocated     int

	BlobKey     string // hex SHA-256 of the stored bytes
	Size        int64
	CharsetFlag bool // some text could not be decoded; the raw bytes are kept
	// Charset is the sender's registered fallback character set the text was decoded with ("" for the server's).
	Charset    string
	Attrs      []byte // DICOM JSON object of the top-level header attributes (no bulk data)
	ReceivedAt time.Time
	Source     string // how it arrived: "STOW-RS", "C-STORE from AE X", "import"

	// Audit is the event of the write, appended to the audit chain in the same transaction as the instance.
	Audit *AuditEvent
}

// StoreOutcome says what the index did with an instance.
type StoreOutcome int

// Outcomes of storing one instance.
const (
	Stored    StoreOutcome = iota // new instance
	Duplicate                     // the same bytes were already stored: nothing changed
)

// QueryLevel is the QIDO-RS / C-FIND level.
type QueryLevel int

// Query levels.
const (
	StudyLevel QueryLevel = iota
	SeriesLevel
	InstanceLevel
)

// MatchKind says how a query key is compared (PS3.4 C.2.2.2).
type MatchKind int

// Matching kinds.
const (
	MatchSingle   MatchKind = iota // single value matching
	MatchList                      // UID list matching: any of Values
	MatchWildcard                  // '*' and '?' in Value
	MatchRange                     // Lo-Hi, either may be empty
)

// Match is one query key.
type Match struct {
	Keyword string // PS3.6 keyword of the attribute, e.g. "PatientName"
	Kind    MatchKind
	Value   string
	Values  []string
	Lo, Hi  string
}

// Query is a search at one level. Matches on attributes the index cannot match are reported back by the index.
type Query struct {
	Level         QueryLevel
	Matches       []Match
	FuzzyMatching bool // PS3.18 8.3.4.1: names match on any component's prefix
	// CombinedDateTime matches a date and the time that goes with it (StudyDate and StudyTime, SeriesDate and
	// SeriesTime, PerformedProcedureStepStartDate and …Time), when both are matched, as one range of moments from
	// the first date at the first time to the last date at the last time (PS3.4 C.2.2.2.5.1), instead of the dates
	// and, on each of them, the times. A C-FIND SCU asks for it by extended negotiation (PS3.4 C.5.1.1).
	CombinedDateTime bool
	Limit, Offset    int
	// Deleted selects what is in the trash instead of what is live.
	Deleted bool
	// Sort orders studies: "" or "date" (newest first), "date-asc", "name", "patient-id". Other levels ignore it.
	Sort string
	// Owner limits the answer to the studies one institution owns (0: any); the scope still applies.
	Owner int64
	// Patients limits the answer to the studies of these local patients (index keys): the linked IDs of one regional
	// patient. Empty does not limit.
	Patients []int64
	// Scope limits the answer to what the caller may see; nil is unlimited (system tasks only). The access
	// decorator sets it from the caller's principal; nothing else should.
	Scope *Scope
	// NoAttrs leaves the records' Attrs (the stored DICOM JSON headers) empty, for a caller that needs only keys
	// and blob locations: a C-MOVE or C-GET of a study then reads a few kB less from the index per instance.
	NoAttrs bool
}

// PatientQuery finds the local patients a caller may see by what a person types at a counter: the start of the
// patient ID, in any case, or the start of the name or of one of its components in any script or width (the name is
// folded as the index folds names, see charset.Fold). Unlike a study query it finds patients who have no study:
// those known from their clinical record, a consent, a referral or an identity link.
type PatientQuery struct {
	Text string // what was typed; archive.Service.QueryPatients derives IDPrefix and NameKey from it
	// IDPrefix is the start of the patient ID, upper-cased (IDs are compared upper-cased); NameKey is the folded start
	// of the name or of one of its components. Either may match; an empty one is not matched.
	IDPrefix, NameKey string
	Owner             int64 // the institution whose patients are searched (0: any); the scope still applies
	Limit             int
	// Scope limits the answer to the patients the caller may see (their institution's, and those a share in force
	// grants, wholly or by some of their studies); nil is unlimited. The access decorator sets it; nothing else should.
	Scope *Scope
}

// PatientRecord is one local patient found by a PatientQuery, with the date of their latest live study ("" when
// they have none).
type PatientRecord struct {
	LocalPatient
	LastStudyDate string
}

// StudyRecord is one study as the index knows it.
type StudyRecord struct {
	Institution            int64 // the owning institution
	PatientPK, StudyPK     int64 // index keys, used by grants
	Patient                PatientKey
	PatientName            string
	PatientBirthDate       string
	PatientSex             string
	StudyInstanceUID       string
	StudyDate, StudyTime   string
	AccessionNumber        string
	StudyID                string
	StudyDescription       string
	ReferringPhysicianName string
	TimezoneOffsetFromUTC  string
	ModalitiesInStudy      []string
	NumberOfSeries         int
	NumberOfInstances      int
	Attrs                  []byte // header attributes of one instance of the study (DICOM JSON)
	DeletedAt              *time.Time
}

// SeriesRecord is one series.
type SeriesRecord struct {
	Study             StudyRecord
	SeriesInstanceUID string
	Modality          string
	SeriesNumber      *int
	SeriesDescription string
	BodyPartExamined  string
	SeriesDate        string
	SeriesTime        string
	PPSStartDate      string
	PPSStartTime      string
	NumberOfInstances int
	Attrs             []byte
	DeletedAt         *time.Time
}

// InstanceRecord is one instance with where its bytes are.
type InstanceRecord struct {
	Series            SeriesRecord
	SOPInstanceUID    string
	SOPClassUID       string
	InstanceNumber    *int
	TransferSyntaxUID string
	Rows, Columns     int
	NumberOfFrames    int
	BitsAllocated     int
	BlobKey           string
	Size              int64
	Attrs             []byte
	ReceivedAt        time.Time
	DeletedAt         *time.Time
	// Charset is the fallback character set its sender is registered with ("" for the server's): what undeclared
	// text in the stored bytes is decoded with.
	Charset string
}

// InstanceRef names one stored instance and how it arrived, for reports to operators.
type InstanceRef struct {
	Study, Series, Instance string
	Source                  string // "STOW-RS", "C-STORE from CT1"…
}

// TrashRequest names what to move into the trash or restore from it: a study, a series of it, or one instance.
type TrashRequest struct {
	Study, Series, Instance string
	Restore                 bool
	// Purge removes a study that is wholly in the trash from the index at once, without waiting for the trash
	// period (a wrong study deleted to be sent again corrected, which its UID would otherwise refuse meanwhile).
	// Its blobs go with the next sweep of blobs nothing refers to. Series and Instance must be empty.
	Purge bool
	// Scope limits what may be changed (the access decorator sets the caller's own institution); nil is unlimited.
	Scope *Scope
	// Audit is the template of the events written, one per study changed, in the same transaction.
	Audit *AuditEvent
}
