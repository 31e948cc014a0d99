package dicom

import (
	"bytes"
	"crypto/rand"
	"math/big"
	"time"
)

// NewUID returns a new globally unique UID under the 2.25 root (PS3.5 B.2: the decimal form of a random UUID).
func NewUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant RFC 4122
	return "2.25." + new(big.Int).SetBytes(b[:]).String()
}

// EncapsulatedPDFStorage is the SOP Class of a PDF kept as a DICOM object (PS3.3 A.45.1).
const EncapsulatedPDFStorage = "1.2.840.10008.5.1.4.1.1.104.1"

// DocumentStudy is the patient and study a document object joins: it is filed in the study it reports on, in a
// series of its own, so that a PACS that receives it shows it beside the images.
type DocumentStudy struct {
	PatientName, PatientID, IssuerOfPatientID, PatientBirthDate, PatientSex string
	StudyInstanceUID, StudyDate, StudyTime, AccessionNumber, StudyID        string
	ReferringPhysicianName, StudyDescription                                string
}

// EncapsulatedPDF writes a Part 10 Encapsulated PDF object (UTF-8 text, ISO_IR 192) holding pdf, filed in st's study
// in a new series. It returns the file and the new SOP Instance and Series Instance UIDs.
func EncapsulatedPDF(st DocumentStudy, pdf []byte, title, institution string, now time.Time) ([]byte, string, string) {
	sop, series := NewUID(), NewUID()
	ds := &DataSet{}
	s := func(t Tag, vr, v string) { ds.SetString(t, vr, v) }
	s(0x00080005, "CS", "ISO_IR 192")
	s(0x00080016, "UI", EncapsulatedPDFStorage)
	s(0x00080018, "UI", sop)
	s(0x00080020, "DA", st.StudyDate)
	s(0x00080023, "DA", now.Format("20060102")) // ContentDate
	s(0x0008002A, "DT", now.Format("20060102150405"))
	s(0x00080030, "TM", st.StudyTime)
	s(0x00080033, "TM", now.Format("150405")) // ContentTime
	s(0x00080050, "SH", st.AccessionNumber)
	s(0x00080060, "CS", "DOC")
	s(0x00080064, "CS", "WSD") // ConversionType: workstation
	s(0x00080070, "LO", "renkei")
	s(0x00080080, "LO", institution)
	s(0x00080090, "PN", st.ReferringPhysicianName)
	s(0x00081030, "LO", st.StudyDescription)
	s(0x0008103E, "LO", title)
	s(0x00100010, "PN", st.PatientName)
	s(0x00100020, "LO", st.PatientID)
	s(0x00100021, "LO", st.IssuerOfPatientID)
	s(0x00100030, "DA", st.PatientBirthDate)
	s(0x00100040, "CS", st.PatientSex)
	s(0x0020000D, "UI", st.StudyInstanceUID)
	s(0x0020000E, "UI", series)
	s(0x00200010, "SH", st.StudyID)
	s(0x00200011, "IS", "9001")
	s(0x00200013, "IS", "1")
	s(0x00280301, "CS", "YES")                                           // BurnedInAnnotation: a report names the patient
	ds.Set(&Element{Tag: 0x0040A043, VR: "SQ", Length: UndefinedLength}) // ConceptNameCodeSequence, type 2
	s(0x00420010, "ST", title)                                           // DocumentTitle
	doc := pdf
	if len(doc)%2 == 1 {
		doc = append(append([]byte{}, doc...), 0)
	}
	ds.Set(&Element{Tag: 0x00420011, VR: "OB", Length: uint32(len(doc)), Value: doc})
	s(0x00420012, "LO", "application/pdf")
	meta := &DataSet{}
	meta.Set(&Element{Tag: 0x00020001, VR: "OB", Length: 2, Value: []byte{0, 1}})
	meta.SetString(MediaStorageSOPClassUID, "UI", EncapsulatedPDFStorage)
	meta.SetString(MediaStorageSOPInstanceUID, "UI", sop)
	meta.SetString(TransferSyntaxUID, "UI", ExplicitVRLittleEndian)
	meta.SetString(0x00020012, "UI", RenkeiImplementationClassUID)
	meta.SetString(0x00020013, "SH", RenkeiImplementationVersion)
	var b bytes.Buffer
	WriteFile(&b, meta, ds, nil, nil)
	return b.Bytes(), sop, series
}
