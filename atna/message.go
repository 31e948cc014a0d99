package atna

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net"
	"strings"
	"time"

	"renkei"
)

// Source says who writes the audit messages: AuditSourceIdentification and renkei's own ActiveParticipant.
type Source struct {
	ID   string // AuditSourceID: this renkei (default: the host name)
	Site string // AuditEnterpriseSiteID: the region (its operator institution's ID)
	Host string // renkei's NetworkAccessPointID (a host name)
	AE   string // renkei's AE title, written as AlternativeUserID "AETITLES=…" as PS3.15 A.5.2.1 suggests
	// Institutions names institutions by their index key; events name them by key only.
	Institutions map[int64]renkei.Institution
}

// The XML of PS3.15 A.5.1 (the DICOM audit message schema). Element order follows the schema's sequences.
type auditMessage struct {
	XMLName      xml.Name            `xml:"AuditMessage"`
	Event        eventIdentification `xml:"EventIdentification"`
	Participants []activeParticipant `xml:"ActiveParticipant"`
	Source       auditSource         `xml:"AuditSourceIdentification"`
	Objects      []participantObject `xml:"ParticipantObjectIdentification"`
}

type codedValue struct {
	Code    string `xml:"csd-code,attr"`
	System  string `xml:"codeSystemName,attr"`
	Meaning string `xml:"originalText,attr"`
}

func coded(c Code) codedValue { return codedValue{c.Code, c.System, c.Meaning} }

type eventIdentification struct {
	ActionCode         string       `xml:"EventActionCode,attr"`
	DateTime           string       `xml:"EventDateTime,attr"`
	Outcome            string       `xml:"EventOutcomeIndicator,attr"`
	EventID            codedValue   `xml:"EventID"`
	Types              []codedValue `xml:"EventTypeCode"`
	OutcomeDescription string       `xml:"EventOutcomeDescription,omitempty"`
	PurposeOfUse       []codedValue `xml:"PurposeOfUse"`
}

type activeParticipant struct {
	UserID            string       `xml:"UserID,attr"`
	AlternativeUserID string       `xml:"AlternativeUserID,attr,omitempty"`
	UserName          string       `xml:"UserName,attr,omitempty"`
	Requestor         bool         `xml:"UserIsRequestor,attr"`
	AccessPoint       string       `xml:"NetworkAccessPointID,attr,omitempty"`
	AccessPointType   string       `xml:"NetworkAccessPointTypeCode,attr,omitempty"`
	Roles             []codedValue `xml:"RoleIDCode"`
}

type auditSource struct {
	Site  string       `xml:"AuditEnterpriseSiteID,attr,omitempty"`
	ID    string       `xml:"AuditSourceID,attr"`
	Types []codedValue `xml:"AuditSourceTypeCode"`
}

type participantObject struct {
	ID       string      `xml:"ParticipantObjectID,attr"`
	TypeCode string      `xml:"ParticipantObjectTypeCode,attr"`
	Role     string      `xml:"ParticipantObjectTypeCodeRole,attr"`
	IDType   codedValue  `xml:"ParticipantObjectIDTypeCode"`
	Details  []typeValue `xml:"ParticipantObjectDetail"`
}

type typeValue struct {
	Type  string `xml:"type,attr"`
	Value string `xml:"value,attr"` // base64 (xsd:base64Binary)
}

// auditSourceApplicationServer is AuditSourceTypeCode 4, "Application Server process tier in a multi-tier system".
var auditSourceApplicationServer = codedValue{"4", SystemDCM, "Application Server process tier in a multi-tier system"}

// Message writes e as a DICOM audit message (PS3.15 A.5), UTF-8 XML without a declaration or line breaks.
//
// The requestor (UserIsRequestor true) is the actor: a user's login, a token's name or an AE title, with the client
// address as NetworkAccessPointID and its institution in UserName; renkei is the other participant. The patient is
// a ParticipantObject of type 1 whose ID is "PatientID^^^Issuer" (HL7 CX), with the institution that holds the data
// as a detail; the study is one of type 2 identified by its Study Instance UID. The event's free text (what was
// asked, why it failed, the reason given for break-glass) is EventOutcomeDescription; its purpose is PurposeOfUse.
func Message(e *renkei.AuditEvent, src Source) ([]byte, error) {
	c := Classify(e)
	m := auditMessage{
		Event: eventIdentification{
			ActionCode: c.ActionCode,
			DateTime:   e.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
			Outcome:    c.Outcome,
			EventID:    coded(c.EventID),
			// EventOutcomeDescription may hold any text; control characters other than tab are not allowed in XML.
			OutcomeDescription: xmlText(e.Detail),
		},
		Source: auditSource{Site: src.Site, ID: or(src.ID, "renkei"), Types: []codedValue{auditSourceApplicationServer}},
	}
	for _, t := range c.Types {
		m.Event.Types = append(m.Event.Types, coded(t))
	}
	if e.Purpose != "" {
		m.Event.PurposeOfUse = []codedValue{{xmlText(e.Purpose), SystemPurpose, xmlText(e.Purpose)}}
	}

	requestor := activeParticipant{UserID: xmlText(or(e.Actor, "unknown")), Requestor: true}
	if in, ok := src.Institutions[e.Institution]; ok {
		requestor.UserName = xmlText(fmt.Sprintf("%s (%s)", or(e.Actor, "unknown"), in.ID))
	}
	if host := AccessPoint(e.Source); host != "" {
		requestor.AccessPoint, requestor.AccessPointType = host, AccessPointType(host)
	}
	if c.RequestorRole != nil {
		requestor.Roles = append(requestor.Roles, coded(*c.RequestorRole))
	}
	if e.Role != "" {
		requestor.Roles = append(requestor.Roles, codedValue{xmlText(string(e.Role)), SystemRole, xmlText(string(e.Role))})
	}
	self := activeParticipant{UserID: or(src.ID, "renkei"), Requestor: false}
	if src.AE != "" {
		self.AlternativeUserID = "AETITLES=" + src.AE
	}
	if src.Host != "" {
		self.AccessPoint, self.AccessPointType = src.Host, AccessPointType(src.Host)
	}
	if c.RenkeiRole != nil {
		self.Roles = append(self.Roles, coded(*c.RenkeiRole))
	}
	m.Participants = []activeParticipant{requestor, self}

	if e.Patient.ID != "" {
		p := participantObject{ID: xmlText(PatientID(e.Patient)), TypeCode: "1", Role: "1", IDType: coded(IDPatientNumber)}
		if in, ok := src.Institutions[e.DataInstitution]; ok {
			p.Details = append(p.Details, typeValue{"DataInstitution", base64.StdEncoding.EncodeToString([]byte(in.ID))})
		}
		m.Objects = append(m.Objects, p)
	}
	if e.Study != "" {
		m.Objects = append(m.Objects, participantObject{ID: xmlText(e.Study), TypeCode: "2", Role: "3", IDType: coded(IDStudyUID)})
	}
	b, err := xml.Marshal(&m)
	if err != nil {
		return nil, fmt.Errorf("audit message for event %d: %w", e.Seq, err)
	}
	return b, nil
}

// PatientID writes a patient key as HL7 CX: "ID^^^Issuer" (the issuer is the assigning authority).
func PatientID(k renkei.PatientKey) string {
	if k.Issuer == "" {
		return k.ID
	}
	return k.ID + "^^^" + k.Issuer
}

// AccessPoint is the host of an event's source: a client address ("192.0.2.1"), an address with a port, or an AE's
// "TITLE@address:port"; "" when the source is not a network address.
func AccessPoint(source string) string {
	if i := strings.LastIndexByte(source, '@'); i >= 0 {
		source = source[i+1:]
	}
	if host, _, err := net.SplitHostPort(source); err == nil {
		source = host
	}
	// renkei records client addresses; anything else ("shell" for the admin commands) names no network access point.
	if net.ParseIP(source) == nil && !strings.Contains(source, ".") {
		return ""
	}
	return source
}

// AccessPointType is NetworkAccessPointTypeCode: 2 for an IP address, 1 for a machine name.
func AccessPointType(host string) string {
	if net.ParseIP(host) != nil {
		return "2"
	}
	return "1"
}

// xmlText drops the characters XML 1.0 cannot carry (control characters other than tab, newline, return), which
// encoding/xml would otherwise refuse or escape into something no parser accepts.
func xmlText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20 || r == 0xFFFE || r == 0xFFFF || (r >= 0xD800 && r <= 0xDFFF):
			return -1
		}
		return r
	}, s)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// timestamp is the RFC 5424 TIMESTAMP (RFC 3339 with at most six fractional digits).
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
