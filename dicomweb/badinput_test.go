package dicomweb_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"renkei/dicom"
	"renkei/internal/dicomtest"
)

// Bad input: every malformed upload is refused with a reason a user can act on, nothing of it is stored, and the
// server keeps answering.

// badCT returns a small valid CT file (explicit VR little endian, 16-bit pixels).
func badCT(t *testing.T, o dicomtest.CTOptions) []byte {
	t.Helper()
	if o.Rows == 0 {
		o.Rows, o.Cols = 16, 16
	}
	path := filepath.Join(t.TempDir(), "ct.dcm")
	if err := dicomtest.CT(path, o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// badElement locates a top-level element of an explicit VR little endian file: where its header starts, where its
// value starts and ends.
type badElement struct {
	tag                dicom.Tag
	header, value, end int
}

func badElements(t *testing.T, file []byte) (meta, ds []badElement) {
	t.Helper()
	f, err := dicom.Parse(bytes.NewReader(file), dicom.DefaultReadOptions)
	if err != nil {
		t.Fatal(err)
	}
	// An element ends where the next one starts, or at end for the last: that also holds for undefined lengths.
	list := func(set *dicom.DataSet, end int) []badElement {
		var out []badElement
		for i, e := range set.Elements {
			h := 8
			if strings.Contains("OB OD OF OL OV OW SQ SV UC UN UR UT UV", e.VR) {
				h = 12
			}
			out = append(out, badElement{tag: e.Tag, header: int(e.Offset) - h, value: int(e.Offset), end: end})
			if i > 0 {
				out[i-1].end = out[i].header
			}
		}
		return out
	}
	return list(f.Meta, int(f.DataSetOffset)), list(f.DataSet, len(file))
}

// badWithout returns file without the element tag.
func badWithout(t *testing.T, file []byte, tag dicom.Tag) []byte {
	t.Helper()
	_, ds := badElements(t, file)
	for _, e := range ds {
		if e.tag == tag {
			return append(append([]byte{}, file[:e.header]...), file[e.end:]...)
		}
	}
	t.Fatalf("no element %s", tag)
	return nil
}

// badInsertBefore inserts raw element bytes before the top-level element tag.
func badInsertBefore(t *testing.T, file []byte, tag dicom.Tag, raw []byte) []byte {
	t.Helper()
	_, ds := badElements(t, file)
	for _, e := range ds {
		if e.tag == tag {
			return append(append(append([]byte{}, file[:e.header]...), raw...), file[e.header:]...)
		}
	}
	t.Fatalf("no element %s", tag)
	return nil
}

// badEl encodes an element in explicit VR little endian; length overrides the value's length when not negative.
func badEl(tag dicom.Tag, vr string, value []byte, length int64) []byte {
	if length < 0 {
		length = int64(len(value))
	}
	b := binary.LittleEndian.AppendUint16(nil, tag.Group())
	b = binary.LittleEndian.AppendUint16(b, tag.Element())
	if vr == "" { // implicit VR
		b = binary.LittleEndian.AppendUint32(b, uint32(length))
		return append(b, value...)
	}
	b = append(b, vr...)
	if strings.Contains("OB OD OF OL OV OW SQ SV UC UN UR UT UV", vr) {
		b = binary.LittleEndian.AppendUint32(append(b, 0, 0), uint32(length))
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(length))
	}
	return append(b, value...)
}

func badUI(tag dicom.Tag, uid string) []byte {
	if len(uid)%2 == 1 {
		uid += "\x00"
	}
	return badEl(tag, "UI", []byte(uid), -1)
}

// badItem wraps a data set in an item of undefined length (PS3.5 7.5.2).
func badItem(body []byte) []byte {
	b := badEl(dicom.Item, "", body, int64(dicom.UndefinedLength))
	return append(b, badEl(dicom.ItemDelimitationItem, "", nil, 0)...)
}

// badSeq is a sequence of undefined length in explicit VR.
func badSeq(tag dicom.Tag, items ...[]byte) []byte {
	b := badEl(tag, "SQ", bytes.Join(items, nil), int64(dicom.UndefinedLength))
	return append(b, badEl(dicom.SequenceDelimitationItem, "", nil, 0)...)
}

// badPart10 wraps a data set in a preamble, "DICM" and File Meta Information naming ts.
func badPart10(ts string, ds []byte) []byte {
	meta := bytes.Join([][]byte{badEl(dicom.FileMetaInformationVersion, "OB", []byte{0, 1}, -1),
		badUI(dicom.MediaStorageSOPClassUID, "1.2.840.10008.5.1.4.1.1.2"), badUI(dicom.MediaStorageSOPInstanceUID, "1.2.3.4"),
		badUI(dicom.TransferSyntaxUID, ts)}, nil)
	out := append(make([]byte, 128), "DICM"...)
	out = append(out, badEl(dicom.FileMetaInformationGroupLength, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(meta))), -1)...)
	return append(append(out, meta...), ds...)
}

var contentSequence = dicom.NewTag(0x0040, 0xA730)

// badStow posts a raw body and returns the status, headers and body of the answer.
func (e *env) badStow(body []byte, contentType string, header ...string) (int, http.Header, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/studies", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/dicom+json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// badOutcome is one instance of a STOW-RS answer: its FailureReason or WarningReason and ErrorComment.
type badOutcome struct {
	Failure, Warning uint16
	Comment          string
	URL              string // RetrieveURL of a stored instance
}

// badResponse decodes a STOW-RS answer (PS3.18 Table 10.5.3-1) into the failed and the stored instances.
func badResponse(t *testing.T, body []byte) (failed, stored []badOutcome) {
	t.Helper()
	type attr struct {
		Value []json.RawMessage
	}
	var resp map[string]struct {
		Value json.RawMessage
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("the STOW-RS answer is not DICOM JSON: %v: %.300s", err, body)
	}
	items := func(tag string) []map[string]attr {
		var v []map[string]attr
		if raw := resp[tag].Value; raw != nil {
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("%s: %v: %.300s", tag, err, body)
			}
		}
		return v
	}
	decode := func(items []map[string]attr) []badOutcome {
		var out []badOutcome
		for _, it := range items {
			var o badOutcome
			if v := it["00081197"].Value; len(v) == 1 {
				json.Unmarshal(v[0], &o.Failure)
			}
			if v := it["00081196"].Value; len(v) == 1 {
				json.Unmarshal(v[0], &o.Warning)
			}
			if v := it["00000902"].Value; len(v) == 1 {
				json.Unmarshal(v[0], &o.Comment)
			}
			if v := it["00081190"].Value; len(v) == 1 {
				json.Unmarshal(v[0], &o.URL)
			}
			out = append(out, o)
		}
		return out
	}
	return decode(items("00081198")), decode(items("00081199"))
}

// badDetail decodes a problem+json answer (RFC 9457) and returns its detail.
func badDetail(t *testing.T, header http.Header, body []byte) string {
	t.Helper()
	if ct := header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json: %.300s", ct, body)
	}
	var p struct{ Detail string }
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem+json: %v: %.300s", err, body)
	}
	return p.Detail
}

// checkNothingStored verifies that the server still answers QIDO-RS with no instance, and that no blob file exists
// outside the temporary folder, which is empty.
func (e *env) checkNothingStored() {
	e.t.Helper()
	st, _, b := e.get(e.url+"/instances", "application/dicom+json")
	if st != 200 || string(b) != "[]" {
		e.t.Errorf("QIDO-RS /instances after a refused upload: %d %.300s; want 200 []", st, b)
	}
	root := filepath.Join(e.dir, "blobs")
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			e.t.Errorf("blob folder: %v", err)
			return nil
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			e.t.Errorf("blob folder holds %s after a refused upload", rel)
		}
		return nil
	})
}

// checkRefused checks a one-part STOW-RS answer: 409 with the part failed for reason with a comment containing
// comment, and nothing stored.
func (e *env) checkRefused(status int, body []byte, reason uint16, comment string) {
	e.t.Helper()
	if status != http.StatusConflict {
		e.t.Errorf("status %d, want 409: %.300s", status, body)
	}
	failed, stored := badResponse(e.t, body)
	if len(failed) != 1 || len(stored) != 0 {
		e.t.Fatalf("%d failed and %d stored, want one failure: %.300s", len(failed), len(stored), body)
	}
	if failed[0].Failure != reason {
		e.t.Errorf("FailureReason %04X, want %04X (%s)", failed[0].Failure, reason, failed[0].Comment)
	}
	if !strings.Contains(failed[0].Comment, comment) {
		e.t.Errorf("ErrorComment %q; want it to contain %q", failed[0].Comment, comment)
	}
	e.checkNothingStored()
}

const (
	cannotUnderstand = 0xC000 // PS3.4 Annex B.2.3 Error: Cannot understand
	dataSetMismatch  = 0xA900 // Error: Data Set does not match SOP Class
	processingFail   = 0x0110 // Processing failure
)

// TestStowBadInput sends malformed files and requests to one server; each is refused with its reason, nothing is
// stored, and the server keeps answering.
func TestStowBadInput(t *testing.T) {
	e := newEnv(t)
	// sub gives a subtest the server, reporting to the subtest.
	sub := func(t *testing.T) *env { c := *e; c.t = t; return &c }
	t.Run("files", func(t *testing.T) { testStowBadFiles(t, sub) })
	t.Run("truncated", func(t *testing.T) { testStowTruncated(t, sub(t)) })
	t.Run("requests", func(t *testing.T) { testStowBadRequests(t, sub) })
	e.checkNothingStored()
}

// testStowBadFiles stores one malformed file per case.
func testStowBadFiles(t *testing.T, sub func(*testing.T) *env) {
	uid65 := "1.2." + strings.Repeat("3", 61)
	withUID := func(o dicomtest.CTOptions) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return badCT(t, o) }
	}
	nested := func(depth int) []byte {
		b := badUI(dicom.ReferencedSOPInstanceUID, "1.2.3")
		for range depth {
			b = badSeq(contentSequence, badItem(b))
		}
		return b
	}
	implicitUIDs := bytes.Join([][]byte{badEl(dicom.SOPClassUID, "", []byte("1.2.840.10008.5.1.4.1.1.2\x00"), -1),
		badEl(dicom.SOPInstanceUID, "", []byte("1.2.3.4\x00"), -1), badEl(dicom.StudyInstanceUID, "", []byte("1.2.3\x00"), -1),
		badEl(dicom.SeriesInstanceUID, "", []byte("1.2.3.1\x00"), -1)}, nil)
	cases := []struct {
		name    string
		file    func(t *testing.T) []byte
		reason  uint16
		comment string
	}{
		{"missing DICM", func(t *testing.T) []byte {
			b := badCT(t, dicomtest.CTOptions{Seed: 1})
			copy(b[128:], "DICX")
			return b
		}, cannotUnderstand, "not a DICOM file"},
		{"length past the end", func(t *testing.T) []byte {
			b := badCT(t, dicomtest.CTOptions{Seed: 2})
			_, ds := badElements(t, b)
			px := ds[len(ds)-1]
			binary.LittleEndian.PutUint32(b[px.value-4:], uint32(px.end-px.value+1000))
			return b
		}, cannotUnderstand, "the data ends early"},
		{"text length past the end", func(t *testing.T) []byte {
			b := badWithout(t, badCT(t, dicomtest.CTOptions{Seed: 3}), dicom.PixelData)
			return append(b, badEl(dicom.NewTag(0x0040, 0xA160), "UT", []byte("short"), 1<<20)...)
		}, cannotUnderstand, "the data ends early"},
		{"undefined length on PN", func(t *testing.T) []byte {
			return badPart10(dicom.ImplicitVRLittleEndian, append(append(implicitUIDs[:0:0], implicitUIDs...),
				badEl(dicom.PatientName, "", []byte("Doe^John"), int64(dicom.UndefinedLength))...))
		}, cannotUnderstand, "undefined length (0xFFFFFFFF) is not allowed for VR PN"},
		{"undefined length on US", func(t *testing.T) []byte {
			return badPart10(dicom.ImplicitVRLittleEndian, append(append(implicitUIDs[:0:0], implicitUIDs...),
				badEl(dicom.Rows, "", []byte{0, 2}, int64(dicom.UndefinedLength))...))
		}, cannotUnderstand, "undefined length (0xFFFFFFFF) is not allowed for VR US"},
		{"undefined length on UT", func(t *testing.T) []byte {
			return badInsertBefore(t, badCT(t, dicomtest.CTOptions{Seed: 4}), dicom.PixelData,
				badEl(dicom.NewTag(0x0040, 0xA160), "UT", []byte("text"), int64(dicom.UndefinedLength)))
		}, cannotUnderstand, "undefined length (0xFFFFFFFF) is not allowed for VR UT"},
		{"nesting deeper than the limit", func(t *testing.T) []byte {
			return badInsertBefore(t, badCT(t, dicomtest.CTOptions{Seed: 5}), dicom.PixelData, nested(dicom.DefaultReadOptions.MaxDepth+1))
		}, cannotUnderstand, fmt.Sprintf("sequences are nested deeper than %d levels", dicom.DefaultReadOptions.MaxDepth)},
		{"UID of 65 characters", withUID(dicomtest.CTOptions{Seed: 6, SOPInstanceUID: uid65}), dataSetMismatch,
			fmt.Sprintf("SOPInstanceUID %q is not a valid UID", uid65)},
		{"UID with letters", withUID(dicomtest.CTOptions{Seed: 7, StudyInstanceUID: "1.2.840.abc"}), dataSetMismatch,
			`StudyInstanceUID "1.2.840.abc" is not a valid UID`},
		{"UID with an empty component", withUID(dicomtest.CTOptions{Seed: 8, SeriesInstanceUID: "1..2"}), dataSetMismatch,
			`SeriesInstanceUID "1..2" is not a valid UID`},
		{"UID with a leading zero", withUID(dicomtest.CTOptions{Seed: 9, SOPInstanceUID: "1.02"}), dataSetMismatch,
			`SOPInstanceUID "1.02" is not a valid UID`},
		{"missing SOPInstanceUID", func(t *testing.T) []byte {
			return badWithout(t, badCT(t, dicomtest.CTOptions{Seed: 10}), dicom.SOPInstanceUID)
		}, dataSetMismatch, "the object has no SOPInstanceUID"},
		{"missing StudyInstanceUID", func(t *testing.T) []byte {
			return badWithout(t, badCT(t, dicomtest.CTOptions{Seed: 11}), dicom.StudyInstanceUID)
		}, dataSetMismatch, "the object has no StudyInstanceUID"},
		{"PNG", func(t *testing.T) []byte {
			var b bytes.Buffer
			png.Encode(&b, image.NewGray(image.Rect(0, 0, 64, 64)))
			return b.Bytes()
		}, cannotUnderstand, "not a DICOM file"},
		{"text", func(t *testing.T) []byte {
			return []byte(strings.Repeat("This is not a DICOM file, just some text.\n", 10))
		}, cannotUnderstand, "not a DICOM file"},
		{"empty", func(t *testing.T) []byte { return nil }, cannotUnderstand, "not a DICOM file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := sub(t)
			status, body := e.stow(tc.file(t))
			e.checkRefused(status, body, tc.reason, tc.comment)
		})
	}
}

// testStowTruncated cuts a real CT file, with a sequence added, in the preamble, the meta information, every element
// header, value and nested item, and at a stride through the pixel data, and uploads each prefix. A cut inside an
// element cannot be understood (0xC000); a cut exactly between two elements is a shorter valid file (Part 10 has no
// total length), refused while it lacks one of the UIDs every object must have (0xA900). Cuts between elements after
// the last UID would be valid objects and are not sent.
func testStowTruncated(t *testing.T, e *env) {
	seq := badSeq(contentSequence,
		badItem(append(badUI(dicom.ReferencedSOPClassUID, "1.2.840.10008.5.1.4.1.1.2"), badUI(dicom.ReferencedSOPInstanceUID, "1.2.3.4.5")...)),
		badItem(badSeq(contentSequence, badItem(badUI(dicom.ReferencedSOPInstanceUID, "1.2.3.4.6")))))
	file := badInsertBefore(t, badCT(t, dicomtest.CTOptions{Rows: 64, Cols: 64, Seed: 20}), dicom.PixelData, seq)
	meta, ds := badElements(t, file)

	cuts := map[int]uint16{}
	inside := func(from, to int) {
		for o := from; o < to; o++ {
			cuts[o] = cannotUnderstand
		}
	}
	for _, o := range []int{0, 1, 2, 64, 127, 128, 129, 131} { // in the preamble and "DICM"
		cuts[o] = cannotUnderstand
	}
	for _, e := range meta {
		inside(e.header+1, min(e.value+2, e.end)) // every byte of the header, the start of the value
		inside(e.end-1, e.end)
		if e.tag < dicom.TransferSyntaxUID {
			cuts[e.end] = cannotUnderstand // no transfer syntax yet
		} else {
			cuts[e.end] = dataSetMismatch // a complete meta and an empty data set
		}
	}
	cuts[132] = cannotUnderstand
	required := map[dicom.Tag]bool{dicom.SOPClassUID: true, dicom.SOPInstanceUID: true, dicom.StudyInstanceUID: true, dicom.SeriesInstanceUID: true}
	have := 0
	for _, e := range ds {
		if have < len(required) {
			cuts[e.header] = dataSetMismatch
		}
		if required[e.tag] {
			have++
		}
		for _, d := range []int{1, 2, 4, 6, 8, 10} {
			if e.header+d < e.value {
				cuts[e.header+d] = cannotUnderstand
			}
		}
		step := (e.end - e.value) / 2 // the first, middle and last byte of a value
		switch e.tag {
		case contentSequence:
			step = 3 // throughout the sequence: item headers, nested elements, delimiters
		case dicom.PixelData:
			step = 509
		}
		for o := e.value + 1; o < e.end; o += max(step, 1) {
			cuts[o] = cannotUnderstand
		}
		if e.end > e.value {
			cuts[e.end-1] = cannotUnderstand
		}
	}
	if cuts[len(file)-1] != cannotUnderstand {
		t.Fatal("the last cut is not inside the pixel data")
	}
	n := 0
	for at, reason := range cuts {
		if at >= len(file) {
			continue
		}
		n++
		status, body := e.stow(file[:at])
		failed, stored := badResponse(t, body)
		if status != http.StatusConflict || len(stored) != 0 || len(failed) != 1 || failed[0].Failure != reason {
			t.Errorf("cut at byte %d of %d: status %d, %d stored, failures %+v; want 409 with FailureReason %04X",
				at, len(file), status, len(stored), failed, reason)
		}
	}
	t.Logf("%d truncated uploads refused", n)
	e.checkNothingStored()
}

// testStowBadRequests covers requests refused as a whole or part by part because of their framing.
func testStowBadRequests(t *testing.T, sub func(*testing.T) *env) {
	ct := badCT(t, dicomtest.CTOptions{Seed: 30})

	t.Run("no boundary", func(t *testing.T) {
		e := sub(t)
		body, _ := multipartBody(t, ct)
		status, h, b := e.badStow(body, `multipart/related; type="application/dicom"`)
		if status != http.StatusBadRequest {
			t.Errorf("status %d, want 400: %s", status, b)
		}
		if d := badDetail(t, h, b); !strings.Contains(d, "no boundary parameter") {
			t.Errorf("detail %q", d)
		}
		e.checkNothingStored()
	})

	t.Run("not multipart", func(t *testing.T) {
		e := sub(t)
		status, h, b := e.badStow(ct, "application/dicom")
		if status != http.StatusUnsupportedMediaType {
			t.Errorf("status %d, want 415: %s", status, b)
		}
		if d := badDetail(t, h, b); !strings.Contains(d, "multipart/related") {
			t.Errorf("detail %q", d)
		}
		e.checkNothingStored()
	})

	t.Run("part of type image/png", func(t *testing.T) {
		e := sub(t)
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"image/png"}})
		png.Encode(w, image.NewGray(image.Rect(0, 0, 8, 8)))
		mw.Close()
		status, _, b := e.badStow(buf.Bytes(), `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
		e.checkRefused(status, b, cannotUnderstand, "part 1 is image/png, not application/dicom")
	})

	t.Run("request of type image/png", func(t *testing.T) {
		e := sub(t)
		body, _ := multipartBody(t, ct)
		status, h, b := e.badStow(body, `multipart/related; type="image/png"; boundary=x`)
		if status != http.StatusUnsupportedMediaType {
			t.Errorf("status %d, want 415: %s", status, b)
		}
		if d := badDetail(t, h, b); !strings.Contains(d, `parts of type "image/png" are not accepted`) {
			t.Errorf("detail %q", d)
		}
		e.checkNothingStored()
	})

	t.Run("100000 parts", func(t *testing.T) {
		e := sub(t)
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for range 100000 {
			w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
			w.Write([]byte("x"))
		}
		mw.Close()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		status, h, b := e.badStow(buf.Bytes(), `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
		runtime.ReadMemStats(&after)
		t.Logf("%d-byte body: %d in %v, %d MiB allocated, %d-byte answer", buf.Len(), status, time.Since(start).Round(time.Millisecond),
			(after.TotalAlloc-before.TotalAlloc)>>20, len(b))
		switch status {
		case http.StatusRequestEntityTooLarge:
			badDetail(t, h, b)
		case http.StatusConflict:
			failed, stored := badResponse(t, b)
			if len(stored) != 0 || len(failed) == 0 || len(failed) > e.handler.MaxParts {
				t.Errorf("%d failed, %d stored; want every part failed, at most MaxParts = %d", len(failed), len(stored), e.handler.MaxParts)
			}
			if w := h.Get("Warning"); !strings.Contains(w, "more than") {
				t.Errorf("Warning %q; want the parts beyond MaxParts reported", w)
			}
		default:
			t.Errorf("status %d, want 409 or 413: %.300s", status, b)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 512<<20 {
			t.Errorf("the request allocated %d MiB", n>>20)
		}
		e.checkNothingStored()
	})

	// The client announces 100 MiB, sends part of the body and closes its side: the body ends early, inside the file
	// or just before the closing boundary.
	body, ctype := multipartBody(t, ct)
	for _, c := range []struct {
		name string
		sent []byte
	}{
		{"Content-Length larger than the body, cut in the file", body[:len(body)/2]},
		{"Content-Length larger than the body, cut before the boundary", body[:bytes.LastIndex(body, []byte("\r\n--"))]},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := sub(t)
			conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(conn, "POST /dicomweb/studies HTTP/1.1\r\nHost: renkei\r\nContent-Type: %s\r\nAccept: application/dicom+json\r\nContent-Length: %d\r\n\r\n",
				ctype, 100<<20)
			conn.Write(c.sent)
			conn.(*net.TCPConn).CloseWrite()
			answer, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			head, payload, _ := strings.Cut(string(answer), "\r\n\r\n")
			status, _, _ := strings.Cut(head, "\r\n")
			t.Logf("%s: %.300s", status, payload)
			switch {
			case strings.HasPrefix(status, "HTTP/1.1 409 "):
				failed, stored := badResponse(t, []byte(payload))
				if len(failed) != 1 || len(stored) != 0 {
					t.Errorf("%d failed, %d stored; want the one part failed", len(failed), len(stored))
				}
			case strings.HasPrefix(status, "HTTP/1.1 400 "):
			default:
				t.Errorf("answer %q; want 400 or 409", status)
			}
			e.checkNothingStored()
		})
	}

	for _, enc := range []string{"gzip", "zstd"} {
		t.Run(enc+" bomb", func(t *testing.T) {
			e := sub(t)
			// A valid header whose pixel data is 10 MiB of zeros, which gzip shrinks about a thousandfold (zstd more).
			bomb := badWithout(t, ct, dicom.PixelData)
			bomb = append(bomb, badEl(dicom.PixelData, "OW", make([]byte, 10<<20), -1)...)
			body, ctype := multipartBody(t, bomb)
			z := encode(t, enc, body)
			start := time.Now()
			status, h, b := e.badStow(z, ctype, "Content-Encoding", enc)
			took := time.Since(start)
			t.Logf("%d-byte body: %d in %v", len(z), status, took.Round(time.Millisecond))
			msg := "looks like a compression bomb"
			switch status {
			case http.StatusRequestEntityTooLarge:
				if d := badDetail(t, h, b); !strings.Contains(d, msg) {
					t.Errorf("detail %q", d)
				}
			case http.StatusConflict:
				failed, _ := badResponse(t, b)
				if len(failed) != 1 || !strings.Contains(failed[0].Comment, msg) {
					t.Errorf("failures %+v; want the part refused as a bomb", failed)
				}
			default:
				t.Errorf("status %d, want 409 or 413: %.300s", status, b)
			}
			if took > 5*time.Second {
				t.Errorf("refusing the bomb took %v", took)
			}
			e.checkNothingStored()
		})
	}
	t.Run("unknown encoding", func(t *testing.T) {
		e := sub(t)
		body, ctype := multipartBody(t, ct)
		status, h, b := e.badStow(body, ctype, "Content-Encoding", "br")
		if d := badDetail(t, h, b); status != http.StatusBadRequest || !strings.Contains(d, "not supported") {
			t.Errorf("status %d, detail %q; want 400 naming what is supported", status, d)
		}
		e.checkNothingStored()
	})
}

// encode compresses body as the HTTP Content-Encoding enc (gzip or zstd).
func encode(t *testing.T, enc string, body []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	switch enc {
	case "gzip":
		zw := gzip.NewWriter(&z)
		zw.Write(body)
		zw.Close()
	case "zstd":
		zw, err := zstd.NewWriter(&z)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(body)
		zw.Close()
	default:
		t.Fatalf("no encoder for %q", enc)
	}
	return z.Bytes()
}

// TestStowExecutablePreamble: CVE-2019-11687 lets a file be both valid DICOM and a program, through its preamble. Such
// a file is stored with a warning and its preamble zeroed; every other byte is kept. A gzip-encoded upload at a sane
// ratio is stored too (the bomb refusal above is not gzip failing).
func TestStowExecutablePreamble(t *testing.T) {
	e := newEnv(t)
	for i, magic := range []string{"MZ", "\x7fELF", "#!"} {
		t.Run(fmt.Sprintf("%q", magic), func(t *testing.T) {
			e := &env{t: t, dir: e.dir, db: e.db, archive: e.archive, handler: e.handler, srv: e.srv, url: e.url}
			orig := badCT(t, dicomtest.CTOptions{Seed: int64(40 + i)})
			file := append([]byte{}, orig...)
			copy(file, magic+"\x90\x00\x03\x00This program cannot be run in DOS mode.\r\n/bin/sh -c 'echo pwned'\n")
			status, body := e.stow(file)
			if status != http.StatusAccepted {
				t.Fatalf("status %d, want 202: %s", status, body)
			}
			failed, stored := badResponse(t, body)
			if len(failed) != 0 || len(stored) != 1 || stored[0].Warning == 0 {
				t.Fatalf("failed %+v, stored %+v; want one instance stored with a WarningReason", failed, stored)
			}
			var resp map[string]json.RawMessage
			var refs struct {
				Value []map[string]struct{ Value []string }
			}
			json.Unmarshal(body, &resp)
			json.Unmarshal(resp["00081199"], &refs)
			url := refs.Value[0]["00081190"].Value[0]
			st, ctype, b := e.get(url, `multipart/related; type="application/dicom"; transfer-syntax=*`)
			if st != 200 {
				t.Fatalf("WADO-RS %s: %d %s", url, st, b)
			}
			got, _ := parts(t, ctype, b)
			if len(got) != 1 {
				t.Fatalf("WADO-RS returned %d parts", len(got))
			}
			if !bytes.Equal(got[0][:128], make([]byte, 128)) {
				t.Errorf("retrieved preamble %q; want 128 zero bytes", got[0][:16])
			}
			if !bytes.Equal(got[0][128:], file[128:]) {
				t.Errorf("the bytes after the preamble differ from the upload (%d bytes, want %d)", len(got[0]), len(file))
			}
			if !bytes.Equal(got[0], orig) { // dicomtest writes a zero preamble
				t.Error("the retrieved file differs from the file before its preamble was filled")
			}
		})
	}
	for _, enc := range []string{"gzip", "zstd"} {
		t.Run(enc, func(t *testing.T) {
			e := &env{t: t, dir: e.dir, db: e.db, archive: e.archive, handler: e.handler, srv: e.srv, url: e.url}
			seed := map[string]int64{"gzip": 49, "zstd": 50}[enc]
			file := badCT(t, dicomtest.CTOptions{Seed: seed, Rows: 256, Cols: 256})
			body, ctype := multipartBody(t, file)
			z := encode(t, enc, body)
			status, _, b := e.badStow(z, ctype, "Content-Encoding", enc)
			if status != http.StatusOK {
				t.Fatalf("a %s body of ratio %.1f: status %d: %.300s", enc, float64(len(body))/float64(len(z)), status, b)
			}
			// renkei keeps the sender's bytes, not the encoding.
			_, stored := badResponse(t, b)
			st, rctype, got := e.get(stored[0].URL, `multipart/related; type="application/dicom"; transfer-syntax=*`)
			if p, _ := parts(t, rctype, got); st != 200 || len(p) != 1 || !bytes.Equal(p[0], file) {
				t.Errorf("WADO-RS %d: the stored instance is not the bytes sent inside the %s body", st, enc)
			}
		})
	}
}
