package dicomtest

import "strconv"

// SOP Class UIDs, PS3.4 Table B.5-1.
const (
	sopCR           = "1.2.840.10008.5.1.4.1.1.1"
	sopCT           = "1.2.840.10008.5.1.4.1.1.2"
	sopMR           = "1.2.840.10008.5.1.4.1.1.4"
	sopUSMultiFrame = "1.2.840.10008.5.1.4.1.1.3.1"
	sopUS           = "1.2.840.10008.5.1.4.1.1.6.1"
	sopSC           = "1.2.840.10008.5.1.4.1.1.7"
	sopMFGrayByteSC = "1.2.840.10008.5.1.4.1.1.7.2"
	sopMFGrayWordSC = "1.2.840.10008.5.1.4.1.1.7.3"
)

// study holds the Patient and General Study module attributes, as UTF-8 text to be encoded with cs.
type study struct {
	key string // names the study's UIDs
	cs  charset

	patientName, patientID, issuer, birthDate, sex            string
	date, time, accession, studyID                            string
	referringPhysician, description, institution, stationName string
}

func (st *study) uid() string { return UID("study/" + st.key) }

func (st *study) attrs(d *dataset) {
	if st.cs.term != "" {
		d.str(0x00080005, "CS", st.cs.term)
	}
	d.str(0x00080020, "DA", st.date)
	d.str(0x00080030, "TM", st.time)
	d.text(0x00080050, "SH", st.accession)
	d.text(0x00080080, "LO", st.institution)
	d.text(0x00080090, "PN", st.referringPhysician)
	d.text(0x00081010, "SH", st.stationName)
	d.text(0x00081030, "LO", st.description)
	d.text(0x00100010, "PN", st.patientName)
	d.text(0x00100020, "LO", st.patientID)
	if st.issuer != "" {
		d.text(0x00100021, "LO", st.issuer)
	}
	d.str(0x00100030, "DA", st.birthDate)
	d.str(0x00100040, "CS", st.sex)
	d.str(0x0020000D, "UI", st.uid())
	d.text(0x00200010, "SH", st.studyID)
}

// image describes the pixel data of a base file and its modality-specific attributes.
type image struct {
	sopClass, modality        string
	rows, cols, frames, spp   int
	photometric               string
	bitsAllocated, bitsStored int
	signed                    bool
	planar                    int // PlanarConfiguration when spp is 3
	seed                      uint64
	row                       func(dst []byte, seed uint64, frame, y, rows, cols int) // one row, samples interleaved
	extra                     func(d *dataset)
}

func (im *image) attrs(d *dataset) {
	d.us(0x00280002, uint16(im.spp))
	d.str(0x00280004, "CS", im.photometric)
	if im.spp > 1 {
		d.us(0x00280006, uint16(im.planar))
	}
	d.us(0x00280010, uint16(im.rows))
	d.us(0x00280011, uint16(im.cols))
	d.us(0x00280100, uint16(im.bitsAllocated))
	d.us(0x00280101, uint16(im.bitsStored))
	d.us(0x00280102, uint16(im.bitsStored-1))
	pr := uint16(0)
	if im.signed {
		pr = 1
	}
	d.us(0x00280103, pr)
	if im.extra != nil {
		im.extra(d)
	}
}

// pixelVR is OB for 8-bit and OW for 16-bit pixel data, PS3.5 A.2.
func (im *image) pixelVR() string {
	if im.bitsAllocated == 8 {
		return "OB"
	}
	return "OW"
}

func (im *image) pixels() []byte {
	frames := max(1, im.frames)
	rowLen := im.cols * im.spp * im.bitsAllocated / 8
	frameLen := rowLen * im.rows
	b := make([]byte, frameLen*frames)
	for f := range frames {
		fr := b[f*frameLen : (f+1)*frameLen]
		for y := range im.rows {
			im.row(fr[y*rowLen:(y+1)*rowLen], im.seed, f, y, im.rows, im.cols)
		}
		if im.spp == 3 && im.planar == 1 {
			// PS3.3 C.7.6.3.1.3: all red values of the frame, then all green, then all blue.
			planes := make([]byte, frameLen)
			n := im.rows * im.cols
			for i := range n {
				planes[i], planes[n+i], planes[2*n+i] = fr[3*i], fr[3*i+1], fr[3*i+2]
			}
			copy(fr, planes)
		}
	}
	return b
}

// series is one series of a study: a base image written uncompressed and the transfer syntaxes it is converted to.
type series struct {
	name        string // base of the sample names: "ct" gives "ct-explicit-le", "ct-rle"…
	study       *study
	number      int
	description string
	img         image
	variants    []variant
}

func (se *series) sample(v variant) Sample {
	name := se.name + v.suffix
	return Sample{
		Name:                 name,
		TransferSyntaxUID:    v.ts,
		SOPClassUID:          se.img.sopClass,
		SOPInstanceUID:       UID("instance/" + name),
		SeriesInstanceUID:    UID("series/" + se.name),
		StudyInstanceUID:     se.study.uid(),
		PatientID:            se.study.patientID,
		IssuerOfPatientID:    se.study.issuer,
		PatientName:          se.study.patientName,
		SpecificCharacterSet: se.study.cs.term,
		Modality:             se.img.modality,
		Rows:                 se.img.rows,
		Columns:              se.img.cols,
		Frames:               max(1, se.img.frames),
		Lossy:                v.lossy,
	}
}

func ds(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// planeAttrs adds the Image Plane module (PS3.3 C.7.6.2) and Frame of Reference for a slice at z.
func planeAttrs(d *dataset, forKey string, spacing, thickness, z float64) {
	d.str(0x00180050, "DS", ds(thickness))
	d.str(0x00200032, "DS", "-160", "-160", ds(z))
	d.str(0x00200037, "DS", "1", "0", "0", "0", "1", "0")
	d.str(0x00200052, "UI", UID("frame-of-reference/"+forKey))
	d.str(0x00201040, "LO") // PositionReferenceIndicator, type 2
	d.str(0x00201041, "DS", ds(z))
	d.str(0x00280030, "DS", ds(spacing), ds(spacing))
}

// allSeries is the content of Dataset. Study 1 and 2 are one patient (P0001 of HOSP_A) whose name two
// modalities write in different Japanese character sets; study 3 is another patient with the same
// Patient ID from HOSP_B.
func allSeries() []*series {
	yamada := study{
		key: "1", cs: csJIS,
		patientName: "Yamada^Tarou=山田^太郎=やまだ^たろう", patientID: "P0001", issuer: "HOSP_A", birthDate: "19650415", sex: "M",
		date: "20240412", time: "091530", accession: "A240412001", studyID: "1001",
		referringPhysician: "Suzuki^Ichiro=鈴木^一郎=すずき^いちろう", description: "胸部CT", institution: "中央病院", stationName: "CT01",
	}
	yamadaKana := yamada
	yamadaKana.key, yamadaKana.cs = "2", csKanaJIS
	yamadaKana.patientName = "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"
	yamadaKana.date, yamadaKana.time, yamadaKana.accession, yamadaKana.studyID = "20240419", "140205", "A240419007", "1002"
	yamadaKana.referringPhysician = "ｽｽﾞｷ^ｲﾁﾛｳ=鈴木^一郎=すずき^いちろう"
	yamadaKana.description, yamadaKana.stationName = "頭部MRI", "MR01"
	takahashi := study{
		key: "3", cs: csUTF8,
		patientName: "Takahashi^Hanako=髙橋^花子=たかはし^はなこ", patientID: "P0001", issuer: "HOSP_B", birthDate: "19781102", sex: "F",
		date: "20240603", time: "103000", accession: "B2406-0031", studyID: "77",
		referringPhysician: "Sato^Jiro=佐藤^次郎=さとう^じろう", description: "腹部超音波・胸部X線", institution: "港北クリニック", stationName: "US2",
	}
	buc := study{
		key: "4", cs: csLatin1,
		patientName: "Buc^Jérôme", patientID: "P0002", birthDate: "19820130", sex: "M",
		date: "20231120", time: "161245", accession: "ACC-88120", studyID: "4",
		referringPhysician: "Lefèvre^Anaïs", description: "Capture d'écran", institution: "Hôpital Saint-Éloi", stationName: "WS",
	}
	tanaka := study{
		key: "5", cs: csASCII,
		patientName: "Tanaka^Yuki", patientID: "P0003", birthDate: "19900707", sex: "F",
		date: "20250115", time: "080000", accession: "C0000123", studyID: "5",
		referringPhysician: "Smith^John", description: "Phantom", institution: "renkei test site", stationName: "QA",
	}

	ct := image{
		sopClass: sopCT, modality: "CT", rows: 128, cols: 128, spp: 1, photometric: "MONOCHROME2",
		bitsAllocated: 16, bitsStored: 16, signed: true, seed: 1, row: ctRow,
		extra: func(d *dataset) {
			d.str(0x00080008, "CS", "ORIGINAL", "PRIMARY", "AXIAL")
			d.str(0x00180060, "DS", "120")
			d.str(0x00185100, "CS", "HFS")
			planeAttrs(d, "1", 2.5, 5, -120)
			d.ss(0x00280120, ctPadding)
			d.str(0x00281050, "DS", "40")
			d.str(0x00281051, "DS", "400")
			d.str(0x00281052, "DS", "-1024")
			d.str(0x00281053, "DS", "1")
			d.str(0x00281054, "LO", "HU")
		},
	}
	mr := image{
		sopClass: sopMR, modality: "MR", rows: 128, cols: 96, spp: 1, photometric: "MONOCHROME2",
		bitsAllocated: 16, bitsStored: 16, seed: 2, row: mrRow,
		extra: func(d *dataset) {
			d.str(0x00080008, "CS", "ORIGINAL", "PRIMARY", "OTHER")
			d.str(0x00180020, "CS", "SE")
			d.str(0x00180021, "CS", "NONE")
			d.str(0x00180022, "CS")
			d.str(0x00180023, "CS", "2D")
			d.str(0x00180080, "DS", "500")
			d.str(0x00180081, "DS", "15")
			d.str(0x00180087, "DS", "1.5")
			d.str(0x00180091, "IS", "1")
			d.str(0x00185100, "CS", "HFS")
			planeAttrs(d, "2", 2, 5, 30)
			d.str(0x00281050, "DS", "20000")
			d.str(0x00281051, "DS", "40000")
		},
	}
	cr := image{
		sopClass: sopCR, modality: "CR", rows: 160, cols: 128, spp: 1, photometric: "MONOCHROME1",
		bitsAllocated: 16, bitsStored: 12, seed: 3, row: crRow,
		extra: func(d *dataset) {
			d.str(0x00080008, "CS", "ORIGINAL", "PRIMARY")
			d.str(0x00180015, "CS", "CHEST")
			d.str(0x00181164, "DS", "0.2", "0.2")
			d.str(0x00185101, "CS", "PA")
			d.str(0x00200020, "CS", "L", "F")
			d.str(0x00281050, "DS", "2048")
			d.str(0x00281051, "DS", "4096")
		},
	}
	us := image{
		sopClass: sopUSMultiFrame, modality: "US", rows: 64, cols: 80, frames: 10, spp: 3, photometric: "RGB",
		bitsAllocated: 8, bitsStored: 8, seed: 4, row: usRow,
		extra: func(d *dataset) {
			d.str(0x00080008, "CS", "ORIGINAL", "PRIMARY", "ABDOMINAL")
			d.str(0x00181063, "DS", "33.3")
			d.str(0x00200020, "CS")
			d.at(0x00280009, 0x00181063) // Frame Increment Pointer → Frame Time, PS3.3 C.7.6.6
		},
	}
	palette := image{
		sopClass: sopUS, modality: "US", rows: 64, cols: 64, spp: 1, photometric: "PALETTE COLOR",
		bitsAllocated: 8, bitsStored: 8, seed: 5, row: paletteRow,
		extra: func(d *dataset) {
			d.str(0x00080008, "CS", "ORIGINAL", "PRIMARY", "ABDOMINAL")
			d.str(0x00200020, "CS")
			// PS3.3 C.7.6.3.1.5: 256 entries, first mapped value 0, 16 bits per entry.
			for _, tag := range []uint32{0x00281101, 0x00281102, 0x00281103} {
				d.us(tag, 256, 0, 16)
			}
			r, g, b := paletteLUTs()
			d.add(0x00281201, "OW", r)
			d.add(0x00281202, "OW", g)
			d.add(0x00281203, "OW", b)
		},
	}
	scExtra := func(d *dataset) {
		d.str(0x00080008, "CS", "DERIVED", "SECONDARY")
		d.str(0x00080064, "CS", "SYN") // Conversion Type: synthetic image, PS3.3 C.8.6.1
		d.str(0x00200020, "CS")
	}
	rgb := image{
		sopClass: sopSC, modality: "OT", rows: 96, cols: 128, spp: 3, photometric: "RGB",
		bitsAllocated: 8, bitsStored: 8, seed: 6, row: rgbRow, extra: scExtra,
	}
	rgbPlanar := rgb
	rgbPlanar.planar = 1
	signed12 := image{
		sopClass: sopSC, modality: "OT", rows: 64, cols: 96, spp: 1, photometric: "MONOCHROME2",
		bitsAllocated: 16, bitsStored: 12, signed: true, seed: 7, row: signed12Row,
		extra: func(d *dataset) {
			scExtra(d)
			d.str(0x00281050, "DS", "0")
			d.str(0x00281051, "DS", "4096")
		},
	}

	return []*series{
		{name: "ct", study: &yamada, number: 1, description: "胸部 5mm", img: ct,
			variants: []variant{explicitLE, implicitLE, explicitBE, deflated, jpegLossless, jpegLS, rle, j2k}},
		{name: "mr", study: &yamadaKana, number: 1, description: "T1 SE ｼﾞｸ", img: mr,
			variants: []variant{explicitLE, jpegLossless, jpegLS, j2k}},
		{name: "cr", study: &takahashi, number: 1, description: "胸部正面", img: cr,
			variants: []variant{explicitLE, jpegLossless, jpegLS, jpegExtended}},
		{name: "us-multiframe", study: &takahashi, number: 2, description: "腹部 cine", img: us,
			variants: []variant{explicitLE, rle, jpegBaseline}},
		{name: "us-palette", study: &takahashi, number: 3, description: "腹部 カラー", img: palette,
			variants: []variant{explicitLE, rle}},
		{name: "sc-rgb", study: &buc, number: 1, description: "Écran RGB", img: rgb,
			variants: []variant{explicitLE, jpegBaseline, jpegLossless, jpegLS, rle, j2k}},
		{name: "sc-rgb-planar1", study: &buc, number: 2, description: "Écran RGB planaire", img: rgbPlanar,
			variants: []variant{explicitLE, rle}},
		{name: "sc-signed12", study: &tanaka, number: 1, description: "Signed 12-bit", img: signed12,
			variants: []variant{explicitLE, rle, jpegLS, jpegLossless}},
	}
}
