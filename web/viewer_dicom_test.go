package web_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"math"
	"mime/multipart"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"

	"renkei"
	"renkei/dicom"
	"renkei/internal/dicomtest"
)

// The viewer's tests write the images they need with the repository's own DICOM writer: an element list in, a
// Part 10 file in explicit VR little endian out.

func txt(tag uint32, vr string, s string) *dicom.Element {
	return &dicom.Element{Tag: dicom.Tag(tag), VR: vr, Length: uint32(len(s)), Value: []byte(s)}
}

func u16s(tag uint32, vr string, v ...uint16) *dicom.Element {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return &dicom.Element{Tag: dicom.Tag(tag), VR: vr, Length: uint32(len(b)), Value: b}
}

func u32s(tag uint32, v ...uint32) *dicom.Element {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return &dicom.Element{Tag: dicom.Tag(tag), VR: "UL", Length: uint32(len(b)), Value: b}
}

func f64s(tag uint32, v ...float64) *dicom.Element {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return &dicom.Element{Tag: dicom.Tag(tag), VR: "FD", Length: uint32(len(b)), Value: b}
}

func bin(tag uint32, vr string, b []byte) *dicom.Element {
	return &dicom.Element{Tag: dicom.Tag(tag), VR: vr, Length: uint32(len(b)), Value: b}
}

func sq(tag uint32, items ...[]*dicom.Element) *dicom.Element {
	e := &dicom.Element{Tag: dicom.Tag(tag), VR: "SQ", Length: dicom.UndefinedLength, Items: []*dicom.DataSet{}}
	for _, it := range items {
		ds := &dicom.DataSet{}
		for _, x := range it {
			ds.Set(x)
		}
		e.Items = append(e.Items, ds)
	}
	return e
}

// testImage is a grey image of one frame for patient VIEW1 of the hospital, with the UIDs derived from key.
type testImage struct {
	key         string // names its UIDs: one study and series per key
	sopClass    string
	modality    string
	rows, cols  int
	bits        int // 8 or 16 bits allocated
	bitsStored  int
	signed      bool
	pixels      []int // stored values, rows×cols
	photometric string
	extra       []*dicom.Element
}

// uids are the study, series and instance UIDs of im.
func (im testImage) uids() (study, series, instance string) {
	return dicomtest.UID("viewer-study/" + im.key), dicomtest.UID("viewer-series/" + im.key), dicomtest.UID("viewer-instance/" + im.key)
}

func (im testImage) file() []byte {
	study, series, inst := im.uids()
	var px []byte
	for _, v := range im.pixels {
		if im.bits == 8 {
			px = append(px, byte(v))
		} else {
			px = binary.LittleEndian.AppendUint16(px, uint16(v))
		}
	}
	if len(px)%2 == 1 {
		px = append(px, 0)
	}
	pr, pvr := uint16(0), "OW"
	if im.signed {
		pr = 1
	}
	if im.bits == 8 {
		pvr = "OB"
	}
	photometric := im.photometric
	if photometric == "" {
		photometric = "MONOCHROME2"
	}
	ds := &dicom.DataSet{}
	for _, e := range append([]*dicom.Element{
		txt(0x00080016, "UI", im.sopClass), txt(0x00080018, "UI", inst), txt(0x00080020, "DA", "20250401"), txt(0x00080060, "CS", im.modality),
		txt(0x0008103E, "LO", im.key), txt(0x00100010, "PN", "Viewer^Test"), txt(0x00100020, "LO", "VIEW1"),
		txt(0x0020000D, "UI", study), txt(0x0020000E, "UI", series), txt(0x00200013, "IS", "1"),
		u16s(0x00280002, "US", 1), txt(0x00280004, "CS", photometric), u16s(0x00280010, "US", uint16(im.rows)), u16s(0x00280011, "US", uint16(im.cols)),
		u16s(0x00280100, "US", uint16(im.bits)), u16s(0x00280101, "US", uint16(im.bitsStored)), u16s(0x00280102, "US", uint16(im.bitsStored-1)),
		u16s(0x00280103, "US", pr), bin(0x7FE00010, pvr, px),
	}, im.extra...) {
		ds.Set(e)
	}
	meta := &dicom.DataSet{}
	meta.Set(bin(0x00020001, "OB", []byte{0, 1}))
	meta.SetString(0x00020002, "UI", im.sopClass)
	meta.SetString(0x00020003, "UI", inst)
	meta.SetString(0x00020010, "UI", dicom.ExplicitVRLittleEndian)
	var buf bytes.Buffer
	if err := dicom.WriteFile(&buf, meta, ds, nil, nil); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// write saves im as a file in dir and returns its path.
func (im testImage) write(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, im.key+".dcm")
	if err := os.WriteFile(p, im.file(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// stowFiles stores Part 10 files as the hospital by STOW-RS.
func (r *region) stowFiles(t *testing.T, files ...[]byte) {
	t.Helper()
	token, err := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "modality-" + strconv.Itoa(len(files)), Write: true})
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range files {
		pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		pw.Write(f)
	}
	mw.Close()
	if st := r.withToken(token).do("POST", "/dicomweb/studies", &body, "Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary()); st != 200 {
		t.Fatalf("STOW-RS: %d %s", st, r.withToken(token).body)
	}
}

// openStudy shows a study in the viewer of a logged-in browser and waits for its first series.
func openStudy(ctx context.Context, t *testing.T, r *region, study string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(r.srv.URL+"/#/viewer/"+study), chromedp.WaitVisible(`#viewport[data-stack="loaded"]`)); err != nil {
		t.Fatalf("open the viewer on %s: %v", study, err)
	}
}

// canvasGreys reads the grey level the viewer's canvas shows at the centre of every image pixel (the canvas is
// larger than these test images, which are drawn without smoothing, so each image pixel is a block of one level).
func canvasGreys(ctx context.Context, t *testing.T, rows, cols int) []int {
	t.Helper()
	g, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](fmt.Sprintf(`(() => {
		const c = document.querySelector('#viewport'); const v = JSON.parse(c.dataset.view);
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; const out = [];
		for (let y = 0; y < %d; y++) for (let x = 0; x < %d; x++) {
			const cx = Math.floor(v.ox + (x + 0.5) * v.scale); const cy = Math.floor(v.oy + (y + 0.5) * v.scale);
			out.push(d[(cy * c.width + cx) * 4]);
		}
		return out; })()`, rows, cols)))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// dcm2pnmGreys runs dcmtk's dcm2pnm with args on a file and returns its grey levels, row by row.
func dcm2pnmGreys(t *testing.T, path string, args ...string) (image.Rectangle, []int) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.png")
	if b, err := exec.Command("dcm2pnm", append(append([]string{"+on"}, args...), path, out)...).CombinedOutput(); err != nil {
		t.Fatalf("dcm2pnm: %v %s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return m.Bounds(), greys(m)
}

func greys(m image.Image) []int {
	b := m.Bounds()
	var g []int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, _, _, _ := m.At(x, y).RGBA()
			g = append(g, int(r>>8))
		}
	}
	return g
}

// worst is the largest difference between two lists of levels of the same length.
func worst(t *testing.T, want, got []int) int {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%d levels, want %d", len(got), len(want))
	}
	w := 0
	for i := range want {
		w = max(w, want[i]-got[i], got[i]-want[i])
	}
	return w
}
