package dicomsvc

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"renkei"
	"renkei/dicom"
)

// row is one C-FIND match: the records of its level and those above it.
type row struct {
	level   level
	patient *patientRow
	study   *renkei.StudyRecord
	series  *renkei.SeriesRecord
	inst    *renkei.InstanceRecord

	attrs     map[string]json.RawMessage // the stored header attributes of the row's level, parsed when first needed
	attrsRead bool
}

// value is the value of one key in a response: text (UTF-8, before encoding), binary, or an empty sequence.
type value struct {
	text string
	bin  []byte
	seq  bool
	vr   string // the VR to write when it is not the request's (from the stored attributes)
}

func text(s string) value { return value{text: s} }

func intText(n int) value { return value{text: strconv.Itoa(n)} }

func intPtrText(p *int) value {
	if p == nil {
		return value{}
	}
	return intText(*p)
}

func us(n int) value {
	if n <= 0 {
		return value{}
	}
	return value{bin: binary.LittleEndian.AppendUint16(nil, uint16(n)), vr: "US"}
}

// value returns the value of a key for the row: from the index record when the index holds the attribute, else
// from the stored header attributes (the record's Attrs, DICOM JSON) when they belong to the row's level, else empty
// (PS3.4 C.4.1.1.3.2: a key the SCP cannot fill is returned with zero length).
func (r *row) value(k findKey, calledAE string) value {
	st, lv := r.study, r.level
	switch k.tag {
	case dicom.PatientName:
		return text(st.PatientName)
	case dicom.PatientID:
		return text(st.Patient.ID)
	case dicom.IssuerOfPatientID:
		return text(st.Patient.Issuer)
	case dicom.PatientBirthDate:
		return text(st.PatientBirthDate)
	case dicom.PatientSex:
		return text(st.PatientSex)
	case tagRetrieveAETitle:
		return text(calledAE)
	case tagNumberOfPatientRelatedStudies, tagNumberOfPatientRelatedSeries, tagNumberOfPatientRelatedInstances:
		if r.patient == nil {
			return value{}
		}
		return intText(map[dicom.Tag]int{tagNumberOfPatientRelatedStudies: r.patient.studies,
			tagNumberOfPatientRelatedSeries: r.patient.series, tagNumberOfPatientRelatedInstances: r.patient.instances}[k.tag])
	}
	if lv >= levelStudy {
		switch k.tag {
		case dicom.StudyInstanceUID:
			return text(st.StudyInstanceUID)
		case dicom.StudyDate:
			return text(st.StudyDate)
		case dicom.StudyTime:
			return text(st.StudyTime)
		case dicom.AccessionNumber:
			return text(st.AccessionNumber)
		case dicom.StudyID:
			return text(st.StudyID)
		case dicom.StudyDescription:
			return text(st.StudyDescription)
		case dicom.ReferringPhysicianName:
			return text(st.ReferringPhysicianName)
		case dicom.TimezoneOffsetFromUTC:
			return text(st.TimezoneOffsetFromUTC)
		case dicom.ModalitiesInStudy:
			return text(strings.Join(st.ModalitiesInStudy, `\`))
		case dicom.NumberOfStudyRelatedSeries:
			return intText(st.NumberOfSeries)
		case dicom.NumberOfStudyRelatedInstances:
			return intText(st.NumberOfInstances)
		case dicom.InstanceAvailability:
			return text("ONLINE")
		}
	}
	if se := r.series; lv >= levelSeries {
		switch k.tag {
		case dicom.SeriesInstanceUID:
			return text(se.SeriesInstanceUID)
		case dicom.Modality:
			return text(se.Modality)
		case dicom.SeriesNumber:
			return intPtrText(se.SeriesNumber)
		case dicom.SeriesDescription:
			return text(se.SeriesDescription)
		case dicom.BodyPartExamined:
			return text(se.BodyPartExamined)
		case dicom.SeriesDate:
			return text(se.SeriesDate)
		case dicom.SeriesTime:
			return text(se.SeriesTime)
		case dicom.PerformedProcedureStepStartDate:
			return text(se.PPSStartDate)
		case dicom.PerformedProcedureStepStartTime:
			return text(se.PPSStartTime)
		case dicom.NumberOfSeriesRelatedInstances:
			return intText(se.NumberOfInstances)
		}
	}
	if in := r.inst; lv >= levelImage {
		switch k.tag {
		case dicom.SOPInstanceUID:
			return text(in.SOPInstanceUID)
		case dicom.SOPClassUID:
			return text(in.SOPClassUID)
		case dicom.InstanceNumber:
			return intPtrText(in.InstanceNumber)
		case dicom.Rows:
			return us(in.Rows)
		case dicom.Columns:
			return us(in.Columns)
		case dicom.BitsAllocated:
			return us(in.BitsAllocated)
		case dicom.NumberOfFrames:
			if in.NumberOfFrames > 0 {
				return intText(in.NumberOfFrames)
			}
			return value{}
		}
	}
	if !levelTag(lv, k.tag) {
		return value{}
	}
	return r.stored(k)
}

// levelTag says whether a stored attribute belongs to a level (PS3.3 C.7.1–C.7.3 modules, as QIDO-RS's includefield
// groups them): patient attributes at every level, study ones from STUDY down, series ones from SERIES down, all at
// IMAGE.
func levelTag(lv level, t dicom.Tag) bool {
	if t.Group() == 0x0010 || lv == levelImage {
		return true
	}
	study := t == dicom.StudyDescription || t == dicom.NewTag(0x0008, 0x1032) || t == dicom.NewTag(0x0008, 0x1060) ||
		t == dicom.NewTag(0x0032, 0x1060) || t == dicom.NewTag(0x0008, 0x1080) || t == dicom.NewTag(0x0008, 0x0090)
	if lv == levelStudy {
		return study
	}
	if lv == levelSeries {
		return study || t == dicom.InstitutionName || t == dicom.NewTag(0x0008, 0x0070) || t == dicom.NewTag(0x0008, 0x1090) ||
			t == dicom.NewTag(0x0018, 0x1030) || t == dicom.NewTag(0x0018, 0x5100) || t == dicom.NewTag(0x0020, 0x0060) ||
			t == dicom.NewTag(0x0008, 0x1010) || t == dicom.NewTag(0x0020, 0x0052) || t == dicom.NewTag(0x0008, 0x1050)
	}
	return false
}

// stored returns a key's value from the row's stored header attributes (DICOM JSON, PS3.18 F.2).
func (r *row) stored(k findKey) value {
	if !r.attrsRead {
		r.attrsRead = true
		var raw []byte
		switch r.level {
		case levelImage:
			raw = r.inst.Attrs
		case levelSeries:
			raw = r.series.Attrs
		default:
			raw = r.study.Attrs
		}
		if len(raw) > 0 && json.Unmarshal(raw, &r.attrs) != nil {
			r.attrs = nil
		}
	}
	raw, ok := r.attrs[k.tag.Hex()]
	if !ok {
		return value{}
	}
	return jsonValue(raw, k.vr)
}

// jsonValue turns one DICOM JSON attribute back into a DICOM value: text joined with backslashes, person names
// with their component groups joined by '=', numbers of binary VRs little endian, InlineBinary decoded. A sequence
// is returned empty (its items are not queried).
func jsonValue(raw json.RawMessage, vr string) value {
	var a struct {
		VR           string            `json:"vr"`
		Value        []json.RawMessage `json:"Value"`
		InlineBinary string            `json:"InlineBinary"`
	}
	if json.Unmarshal(raw, &a) != nil {
		return value{}
	}
	if a.VR != "" {
		vr = a.VR
	}
	v := value{vr: vr}
	switch vr {
	case "SQ":
		v.seq = true
		return v
	case "US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT":
		v.bin = []byte{}
		for _, item := range a.Value {
			v.bin = appendBinary(v.bin, vr, item)
		}
		return v
	}
	if a.InlineBinary != "" {
		b, err := base64.StdEncoding.DecodeString(a.InlineBinary)
		if err == nil {
			v.bin = b
		}
		return v
	}
	parts := make([]string, 0, len(a.Value))
	for _, item := range a.Value {
		if vr == "PN" {
			var pn struct{ Alphabetic, Ideographic, Phonetic string }
			_ = json.Unmarshal(item, &pn)
			parts = append(parts, strings.TrimRight(pn.Alphabetic+"="+pn.Ideographic+"="+pn.Phonetic, "="))
			continue
		}
		var s string
		if json.Unmarshal(item, &s) != nil {
			s = strings.TrimSpace(string(item)) // a number (IS, DS) or null
			if s == "null" {
				s = ""
			}
		}
		parts = append(parts, s)
	}
	v.text = strings.Join(parts, `\`)
	return v
}

func appendBinary(b []byte, vr string, item json.RawMessage) []byte {
	if vr == "AT" {
		var s string
		if json.Unmarshal(item, &s) != nil {
			return b
		}
		t, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			return b
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(t>>16))
		return binary.LittleEndian.AppendUint16(b, uint16(t))
	}
	f, err := strconv.ParseFloat(strings.Trim(string(item), `"`), 64)
	if err != nil {
		return b
	}
	switch vr {
	case "US":
		return binary.LittleEndian.AppendUint16(b, uint16(f))
	case "SS":
		return binary.LittleEndian.AppendUint16(b, uint16(int16(f)))
	case "UL":
		return binary.LittleEndian.AppendUint32(b, uint32(f))
	case "SL":
		return binary.LittleEndian.AppendUint32(b, uint32(int32(f)))
	case "FL":
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(f)))
	case "FD":
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	case "SV":
		n, _ := strconv.ParseInt(strings.Trim(string(item), `"`), 10, 64)
		return binary.LittleEndian.AppendUint64(b, uint64(n))
	case "UV":
		n, _ := strconv.ParseUint(strings.Trim(string(item), `"`), 10, 64)
		return binary.LittleEndian.AppendUint64(b, n)
	}
	return b
}
