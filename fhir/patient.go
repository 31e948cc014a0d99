package fhir

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"renkei"
)

// PatientInfo is the patient an export is about, in the forms renkei keeps them (LocalPatient, Referral):
// the name as a DICOM PN and the birth date as a DICOM DA.
type PatientInfo struct {
	Key renkei.PatientKey
	// IDSystem is the FHIR identifier system of Key.ID, e.g. PatientIDSystem(the institution's code). Empty: the
	// issuer itself when it is a URI, else none. The issuer is always written as the identifier's assigner.
	IDSystem  string
	Name      string // PN: alphabetic=ideographic=phonetic, components family^given^middle^prefix^suffix
	BirthDate string // YYYYMMDD (DICOM) or YYYY-MM-DD
	Sex       string // M, F, O (DICOM) or male, female, other, unknown (FHIR)
}

// Identifier is one identifier of an imported Patient.
type Identifier struct {
	System   string
	Value    string
	Assigner string // the assigner's display: renkei writes the IssuerOfPatientID here
}

// Patient is an imported Patient: what the caller needs to check it is the patient it imports for.
type Patient struct {
	ID          string
	Identifiers []Identifier
	Name        string // PN built from the names: ABC=IDE=SYL representations (JP Core: IDE 漢字, SYL カナ)
	BirthDate   string // as written, YYYY-MM-DD
	Gender      string // male, female, other, unknown
}

// Has reports whether the patient carries the identifier of key (issuer as assigner or system, and ID).
func (p *Patient) Has(key renkei.PatientKey) bool {
	return slices.ContainsFunc(p.Identifiers, func(id Identifier) bool {
		return id.Value == key.ID && (id.Assigner == key.Issuer || (id.Assigner == "" && id.System == key.Issuer))
	})
}

// Info returns the patient in renkei's forms: the first identifier as Key, the birth date as YYYYMMDD, the sex as
// M, F or O.
func (p *Patient) Info() PatientInfo {
	info := PatientInfo{Name: p.Name, BirthDate: strings.ReplaceAll(p.BirthDate, "-", "")}
	if len(p.Identifiers) > 0 {
		id := p.Identifiers[0]
		info.Key = keyOf(identifier{System: id.System, Value: id.Value, Assigner: &reference{Display: id.Assigner}})
		if id.System != info.Key.Issuer {
			info.IDSystem = id.System
		}
	}
	switch p.Gender {
	case "male":
		info.Sex = "M"
	case "female":
		info.Sex = "F"
	case "other":
		info.Sex = "O"
	}
	return info
}

func patientOf(r *patient) Patient {
	p := Patient{ID: r.ID, Name: pnOf(r.Name), BirthDate: r.BirthDate, Gender: r.Gender}
	for _, id := range r.Identifier {
		x := Identifier{System: id.System, Value: id.Value}
		if id.Assigner != nil {
			x.Assigner = id.Assigner.Display
		}
		p.Identifiers = append(p.Identifiers, x)
	}
	return p
}

// isURI reports whether s looks like an absolute URI usable as an identifier system.
func isURI(s string) bool {
	return strings.HasPrefix(s, "urn:") || strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// identifierOf writes a PatientKey as an identifier.
func identifierOf(key renkei.PatientKey, system string) identifier {
	if system == "" && isURI(key.Issuer) {
		system = key.Issuer
	}
	id := identifier{System: system, Value: key.ID}
	if key.Issuer != "" {
		id.Assigner = &reference{Display: key.Issuer}
	}
	return id
}

// patientResource writes a JP Core Patient with the patient's identifier and those of the facts' local patients.
func patientResource(info PatientInfo, id, profile string, others []renkei.PatientKey) (*patient, error) {
	if info.Key.ID == "" {
		return nil, fmt.Errorf("patient has no ID")
	}
	r := &patient{header: header{ResourceType: "Patient", ID: id, Meta: &meta{Profile: []string{profile}}}}
	r.Identifier = append(r.Identifier, identifierOf(info.Key, info.IDSystem))
	for _, k := range others {
		if k != info.Key && k.ID != "" {
			r.Identifier = append(r.Identifier, identifierOf(k, ""))
		}
	}
	r.Name = namesOf(info.Name)
	switch info.Sex {
	case "M", "male":
		r.Gender = "male"
	case "F", "female":
		r.Gender = "female"
	case "O", "other":
		r.Gender = "other"
	case "unknown":
		r.Gender = "unknown"
	case "":
	default:
		return nil, fmt.Errorf("patient sex %q is not M, F or O", info.Sex)
	}
	b := info.BirthDate
	if len(b) == 8 && !strings.Contains(b, "-") {
		b = b[:4] + "-" + b[4:6] + "-" + b[6:]
	}
	if b != "" && (!reDate.MatchString(b) || !validCalendar(b)) {
		return nil, fmt.Errorf("patient birth date %q is not a date", info.BirthDate)
	}
	r.BirthDate = b
	return r, nil
}

var representations = []string{"ABC", "IDE", "SYL"} // ISO 21090 EN.representation, in DICOM PN group order

func representation(n humanName) string {
	for _, x := range n.Extension {
		if x.URL == extNameRepresentation {
			return x.ValueCode
		}
	}
	return ""
}

// namesOf writes a DICOM PN as FHIR HumanNames, one per component group, marked ABC, IDE or SYL as JP Core
// asks. A single group written in kanji or kana is ideographic, whatever its position.
func namesOf(pn string) []humanName {
	var out []humanName
	for i, g := range strings.Split(pn, "=") {
		if i >= len(representations) || strings.Trim(g, "^ ") == "" {
			continue
		}
		rep := representations[i]
		if i == 0 && !strings.Contains(pn, "=") && !isASCII(g) {
			rep = "IDE"
		}
		c := strings.Split(g, "^")
		for len(c) < 5 {
			c = append(c, "")
		}
		n := humanName{
			Extension: []extension{{URL: extNameRepresentation, ValueCode: rep}},
			Use:       "official",
			Family:    c[0],
			Text:      strings.TrimSpace(strings.Join(nonEmpty(c[0], c[1], c[2]), " ")),
		}
		n.Given = nonEmpty(c[1], c[2])
		n.Prefix = nonEmpty(c[3])
		n.Suffix = nonEmpty(c[4])
		out = append(out, n)
	}
	return out
}

// pnOf writes HumanNames back as a DICOM PN.
func pnOf(names []humanName) string {
	var groups [3]string
	for _, n := range names {
		i := slices.Index(representations, representation(n))
		if i < 0 {
			switch {
			case isASCII(n.Text + n.Family + strings.Join(n.Given, "")):
				i = 0
			case groups[1] == "":
				i = 1
			default:
				i = 2
			}
		}
		if groups[i] != "" {
			continue
		}
		family := n.Family
		var given, middle string
		if len(n.Given) > 0 {
			given = n.Given[0]
			middle = strings.Join(n.Given[1:], " ")
		}
		if family == "" && given == "" {
			family = n.Text
		}
		g := strings.Join([]string{family, given, middle, strings.Join(n.Prefix, " "), strings.Join(n.Suffix, " ")}, "^")
		groups[i] = strings.TrimRight(g, "^")
	}
	return strings.TrimRight(strings.Join(groups[:], "="), "=")
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func isASCII(s string) bool {
	for _, r := range s {
		if r > unicode.MaxASCII {
			return false
		}
	}
	return true
}
