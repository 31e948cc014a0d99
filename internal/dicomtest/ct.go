package dicomtest

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
)

// CTOptions describes one instance written by CT or MultiFrame. Zero fields take the defaults noted.
type CTOptions struct {
	// UIDs; each one left empty is derived with UID from Seed (and, for the SOP Instance UID, InstanceNumber),
	// so files for the same Seed share a study and series and each InstanceNumber is a distinct instance.
	StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID string

	PatientID        string // default "BENCH<Seed>"
	PatientName      string // UTF-8; default "Bench^<Seed>"; non-ASCII is written with SpecificCharacterSet ISO_IR 192
	AccessionNumber  string // default none (empty, type 2)
	PatientBirthDate string // YYYYMMDD; default none
	PatientSex       string // M, F or O; default none
	StudyDate        string // YYYYMMDD; default 20250301
	StudyTime        string // HHMMSS; default 120000
	BodyPart         string // BodyPartExamined, e.g. CHEST; default none

	Rows, Cols     int // default 512×512
	BitsStored     int // 16 (default, signed), 12 (unsigned in 16-bit words) or 8 (MultiFrame only): see CT and MultiFrame
	Frames         int // MultiFrame only; default 1. CT rejects more than one.
	InstanceNumber int // also selects the slice position
	Seed           int64
}

// CT writes one CT Image Storage instance (rows×cols, 16-bit signed, RescaleIntercept -1024, explicit VR little
// endian) at path, in pure Go, fast enough for benchmarks that need thousands of files: one buffered write,
// no allocation per pixel. Pixels vary with Seed and InstanceNumber. With o.BitsStored 12 the same image is stored
// unsigned in 12 of 16 bits, as many scanners write CT (air and padding are 0, no PixelPaddingValue); 8 is refused,
// since PS3.3 C.8.2.1.1.4 has CT allocate 16 bits. Errors are invalid options or I/O.
func CT(path string, o CTOptions) error {
	if o.Frames > 1 {
		return fmt.Errorf("dicomtest.CT: %d frames: CT Image Storage is single-frame, use MultiFrame", o.Frames)
	}
	return writeCT(path, o, false)
}

// MultiFrame writes one Multi-frame Grayscale Word Secondary Capture Image Storage instance with o.Frames frames
// of CT-like pixels (16-bit signed, RescaleIntercept -1024, explicit VR little endian), e.g. the 200-frame object
// that frame-level retrieval needs. Each frame differs (a disc moves through them). o.BitsStored 12 stores them as CT
// does; 8 writes Multi-frame Grayscale Byte Secondary Capture instead, one byte a sample: the 12-bit value / 16.
func MultiFrame(path string, o CTOptions) error {
	return writeCT(path, o, true)
}

func writeCT(path string, o CTOptions, multi bool) error {
	op := "dicomtest.CT"
	kind := "ct"
	sopClass := sopCT
	if multi {
		op, kind, sopClass = "dicomtest.MultiFrame", "mf", sopMFGrayWordSC
	}
	rows, cols, frames := o.Rows, o.Cols, max(1, o.Frames)
	bits := o.BitsStored
	switch {
	case bits == 0:
		bits = 16
	case bits == 8 && multi:
		sopClass = sopMFGrayByteSC
	case bits != 16 && bits != 12:
		return fmt.Errorf("%s: BitsStored %d: want 16, 12 or 8 (8 for MultiFrame only)", op, o.BitsStored)
	}
	bytesPerSample := 2
	if bits == 8 {
		bytesPerSample = 1
	}
	if rows == 0 {
		rows = 512
	}
	if cols == 0 {
		cols = 512
	}
	if rows < 2 || cols < 2 || rows > 0xffff || cols > 0xffff {
		return fmt.Errorf("%s: %d×%d: rows and columns must be 2…65535", op, rows, cols)
	}
	pixelLen := uint64(rows) * uint64(cols) * uint64(bytesPerSample) * uint64(frames)
	if pixelLen > 0xfffffffe {
		return fmt.Errorf("%s: %d frames of %d×%d exceed the 4 GiB pixel data length", op, frames, rows, cols)
	}
	seed := strconv.FormatInt(o.Seed, 10)
	def := func(v *string, s string) {
		if *v == "" {
			*v = s
		}
	}
	def(&o.StudyInstanceUID, UID(kind+"/"+seed+"/study"))
	def(&o.SeriesInstanceUID, UID(kind+"/"+seed+"/series"))
	def(&o.SOPInstanceUID, UID(kind+"/"+seed+"/instance/"+strconv.Itoa(o.InstanceNumber)))
	def(&o.PatientID, "BENCH"+seed)
	def(&o.PatientName, "Bench^"+seed)

	d := &dataset{cs: csASCII}
	if _, err := encodeASCII(o.PatientName); err != nil {
		d.cs = csUTF8
		d.str(0x00080005, "CS", csUTF8.term)
	}
	d.str(0x00080016, "UI", sopClass)
	d.str(0x00080018, "UI", o.SOPInstanceUID)
	def(&o.StudyDate, "20250301")
	d.str(0x00080020, "DA", o.StudyDate)
	def(&o.StudyTime, "120000")
	d.str(0x00080030, "TM", o.StudyTime)
	d.text(0x00080050, "SH", o.AccessionNumber)
	d.text(0x00080090, "PN", "")
	d.text(0x00080070, "LO", "renkei")
	d.text(0x00081030, "LO", "Benchmark")
	d.text(0x00100010, "PN", o.PatientName)
	d.text(0x00100020, "LO", o.PatientID)
	d.str(0x00100030, "DA", o.PatientBirthDate)
	d.str(0x00100040, "CS", o.PatientSex)
	d.str(0x0020000D, "UI", o.StudyInstanceUID)
	d.str(0x0020000E, "UI", o.SeriesInstanceUID)
	d.text(0x00200010, "SH", seed)
	d.is(0x00200011, 1)
	d.is(0x00200013, o.InstanceNumber)
	if multi {
		d.str(0x00080008, "CS", "DERIVED", "SECONDARY")
		d.str(0x00080060, "CS", "OT")
		d.str(0x00080064, "CS", "SYN")
		d.str(0x00181063, "DS", "100")
		d.str(0x00200020, "CS")
		d.is(0x00280008, frames)
		d.at(0x00280009, 0x00181063) // Frame Increment Pointer → Frame Time
	} else {
		d.str(0x00080008, "CS", "ORIGINAL", "PRIMARY", "AXIAL")
		d.str(0x00080060, "CS", "CT")
		if o.BodyPart != "" {
			d.str(0x00180015, "CS", o.BodyPart)
		}
		d.str(0x00180060, "DS", "120")
		d.str(0x00185100, "CS", "HFS")
		planeAttrs(d, "ct/"+seed, 0.7, 1, float64(o.InstanceNumber))
		if bits == 16 {
			d.ss(0x00280120, ctPadding)
		}
	}
	d.us(0x00280002, 1)
	d.str(0x00280004, "CS", "MONOCHROME2")
	d.us(0x00280010, uint16(rows))
	d.us(0x00280011, uint16(cols))
	d.us(0x00280100, uint16(8*bytesPerSample))
	d.us(0x00280101, uint16(bits))
	d.us(0x00280102, uint16(bits-1))
	if bits == 16 {
		d.us(0x00280103, 1)
	} else {
		d.us(0x00280103, 0)
	}
	if bits == 8 {
		// PS3.3 C.8.6.3.1: byte secondary capture has no rescale; window over the stored values / 16.
		d.str(0x00281050, "DS", "67")
		d.str(0x00281051, "DS", "25")
	} else {
		d.str(0x00281050, "DS", "40")
		d.str(0x00281051, "DS", "400")
		d.str(0x00281052, "DS", "-1024")
		d.str(0x00281053, "DS", "1")
		d.str(0x00281054, "LO", "HU")
	}

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	err = writePart10(w, sopClass, o.SOPInstanceUID, d)
	if err == nil {
		w.Write(appendHeader(nil, 0x7FE00010, "OW", uint32(pixelLen)))
		pixelSeed := mix(uint64(o.Seed), uint64(o.InstanceNumber))
		row := make([]byte, 2*cols)
		for fr := range frames {
			for y := range rows {
				ctRow(row, pixelSeed, fr, y, rows, cols)
				w.Write(narrowCTRow(row, bits))
			}
		}
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
