// Package dicom is renkei's model of DICOM data (PS3.5, PS3.10): tags, value representations, a streaming Part 10
// parser with hard limits for untrusted input, an Explicit VR Little Endian writer used for transcoding, and the DICOM
// JSON model of PS3.18 Annex F. Character sets are decoded by the charset subpackage.
//
// The data dictionary (tag → VR, keyword) comes from github.com/suyashkumar/dicom's generated tables; everything
// else is ours, because the archive needs to stream objects of any size without holding them in memory.
package dicom

import (
	"fmt"
	"strconv"

	dtag "github.com/suyashkumar/dicom/pkg/tag"
)

// Tag is a data element tag, group in the high 16 bits.
type Tag uint32

// NewTag builds a tag from group and element.
func NewTag(group, element uint16) Tag { return Tag(uint32(group)<<16 | uint32(element)) }

// Group returns the tag's group number.
func (t Tag) Group() uint16 { return uint16(t >> 16) }

// Element returns the tag's element number.
func (t Tag) Element() uint16 { return uint16(t) }

// String formats the tag as (gggg,eeee).
func (t Tag) String() string { return fmt.Sprintf("(%04X,%04X)", t.Group(), t.Element()) }

// Hex formats the tag as the 8 hex digits used by DICOM JSON and QIDO-RS (e.g. "00100010").
func (t Tag) Hex() string { return fmt.Sprintf("%08X", uint32(t)) }

// IsPrivate reports whether the tag is in an odd (private) group.
func (t Tag) IsPrivate() bool { return t.Group()%2 == 1 }

// ParseTag reads a tag given as 8 hex digits ("00100010") or as a dictionary keyword ("PatientName").
func ParseTag(s string) (Tag, error) {
	if len(s) == 8 {
		if v, err := strconv.ParseUint(s, 16, 32); err == nil {
			return Tag(v), nil
		}
	}
	if t, ok := keywordTags[s]; ok {
		return t, nil
	}
	info, err := dtag.FindByKeyword(s)
	if err != nil || info.Keyword != s {
		return 0, fmt.Errorf("unknown attribute %q: give a PS3.6 keyword or 8 hex digits", s)
	}
	return NewTag(info.Tag.Group, info.Tag.Element), nil
}

// keywordTags caches the keywords renkei uses most, so that ParseTag does not scan the whole dictionary for them.
var keywordTags = map[string]Tag{}

func init() {
	for _, t := range []Tag{SpecificCharacterSet, SOPClassUID, SOPInstanceUID, StudyDate, StudyTime, AccessionNumber,
		Modality, ModalitiesInStudy, ReferringPhysicianName, StudyDescription, SeriesDescription, PatientName, PatientID,
		IssuerOfPatientID, PatientBirthDate, PatientSex, StudyInstanceUID, SeriesInstanceUID, StudyID, SeriesNumber,
		InstanceNumber, NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances, NumberOfSeriesRelatedInstances,
		Rows, Columns, BitsAllocated, NumberOfFrames, InstanceAvailability, RetrieveURL, TimezoneOffsetFromUTC,
		PerformedProcedureStepStartDate, PerformedProcedureStepStartTime, BodyPartExamined, SeriesDate, SeriesTime,
		InstitutionName, ContentDate, ContentTime, SOPClassesInStudy, AcquisitionDateTime} {
		keywordTags[Keyword(t)] = t
	}
}

// VR returns the dictionary VR of a tag, used to read Implicit VR data sets. Unknown and private tags are "UN";
// tags with several possible VRs (e.g. US or SS) get the first, which the reader corrects where the data set says.
func VR(t Tag) string {
	switch {
	case t.Element() == 0x0000:
		return "UL" // group length
	case t.IsPrivate() && t.Element() >= 0x0010 && t.Element() <= 0x00FF:
		return "LO" // private creator
	case t.Group()&0xFF00 == 0x6000 && t.Element() == 0x3000:
		return "OW" // overlay data
	case t.Group()&0xFF00 == 0x5000 || t.Group()&0xFF00 == 0x6000:
		t = NewTag(t.Group()&0xFF00, t.Element()) // repeating groups are listed under 5000/6000
	}
	info, err := dtag.Find(dtag.Tag{Group: t.Group(), Element: t.Element()})
	if err != nil || len(info.VRs) == 0 {
		return "UN"
	}
	vr := info.VRs[0]
	if len(vr) != 2 {
		return "UN"
	}
	return vr
}

// Keyword returns the PS3.6 keyword of a tag, or its hex form when the dictionary does not know it.
func Keyword(t Tag) string {
	info, err := dtag.Find(dtag.Tag{Group: t.Group(), Element: t.Element()})
	if err != nil || info.Keyword == "" {
		return t.Hex()
	}
	return info.Keyword
}

// Tags renkei refers to by name.
const (
	FileMetaInformationGroupLength Tag = 0x00020000
	FileMetaInformationVersion     Tag = 0x00020001
	MediaStorageSOPClassUID        Tag = 0x00020002
	MediaStorageSOPInstanceUID     Tag = 0x00020003
	TransferSyntaxUID              Tag = 0x00020010
	ImplementationClassUID         Tag = 0x00020012
	ImplementationVersionName      Tag = 0x00020013
	SourceApplicationEntityTitle   Tag = 0x00020016

	SpecificCharacterSet            Tag = 0x00080005
	SOPClassUID                     Tag = 0x00080016
	SOPInstanceUID                  Tag = 0x00080018
	StudyDate                       Tag = 0x00080020
	SeriesDate                      Tag = 0x00080021
	ContentDate                     Tag = 0x00080023
	AcquisitionDateTime             Tag = 0x0008002A
	StudyTime                       Tag = 0x00080030
	SeriesTime                      Tag = 0x00080031
	ContentTime                     Tag = 0x00080033
	AccessionNumber                 Tag = 0x00080050
	InstanceAvailability            Tag = 0x00080056
	Modality                        Tag = 0x00080060
	ModalitiesInStudy               Tag = 0x00080061
	SOPClassesInStudy               Tag = 0x00080062
	InstitutionName                 Tag = 0x00080080
	ReferringPhysicianName          Tag = 0x00080090
	TimezoneOffsetFromUTC           Tag = 0x00080201
	StudyDescription                Tag = 0x00081030
	SeriesDescription               Tag = 0x0008103E
	FailedSOPSequence               Tag = 0x00081198
	ReferencedSOPSequence           Tag = 0x00081199
	ReferencedSOPClassUID           Tag = 0x00081150
	ReferencedSOPInstanceUID        Tag = 0x00081155
	RetrieveURL                     Tag = 0x00081190
	FailureReason                   Tag = 0x00081197
	WarningReason                   Tag = 0x00081196
	PatientName                     Tag = 0x00100010
	PatientID                       Tag = 0x00100020
	IssuerOfPatientID               Tag = 0x00100021
	PatientBirthDate                Tag = 0x00100030
	PatientSex                      Tag = 0x00100040
	BodyPartExamined                Tag = 0x00180015
	StudyInstanceUID                Tag = 0x0020000D
	SeriesInstanceUID               Tag = 0x0020000E
	StudyID                         Tag = 0x00200010
	SeriesNumber                    Tag = 0x00200011
	InstanceNumber                  Tag = 0x00200013
	NumberOfStudyRelatedSeries      Tag = 0x00201206
	NumberOfStudyRelatedInstances   Tag = 0x00201208
	NumberOfSeriesRelatedInstances  Tag = 0x00201209
	SamplesPerPixel                 Tag = 0x00280002
	PhotometricInterpretation       Tag = 0x00280004
	PlanarConfiguration             Tag = 0x00280006
	NumberOfFrames                  Tag = 0x00280008
	Rows                            Tag = 0x00280010
	Columns                         Tag = 0x00280011
	BitsAllocated                   Tag = 0x00280100
	BitsStored                      Tag = 0x00280101
	HighBit                         Tag = 0x00280102
	PixelRepresentation             Tag = 0x00280103
	LossyImageCompression           Tag = 0x00282110
	PerformedProcedureStepStartDate Tag = 0x00400244
	PerformedProcedureStepStartTime Tag = 0x00400245
	ExtendedOffsetTable             Tag = 0x7FE00001
	ExtendedOffsetTableLengths      Tag = 0x7FE00002
	FloatPixelData                  Tag = 0x7FE00008
	DoubleFloatPixelData            Tag = 0x7FE00009
	PixelData                       Tag = 0x7FE00010
	Item                            Tag = 0xFFFEE000
	ItemDelimitationItem            Tag = 0xFFFEE00D
	SequenceDelimitationItem        Tag = 0xFFFEE0DD
)
