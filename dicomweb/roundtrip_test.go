package dicomweb_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei/codec"
	"renkei/internal/dicomtest"
)

// Transfer syntax UIDs, PS3.6 Table A-1.
const (
	tsExplicitLE   = "1.2.840.10008.1.2.1"
	tsJPEGBaseline = "1.2.840.10008.1.2.4.50"
	tsRLE          = "1.2.840.10008.1.2.5"
)

// acceptStored asks WADO-RS for the instances exactly as stored (PS3.18 8.7.3.5.2).
const acceptStored = `multipart/related; type="application/dicom"; transfer-syntax=*`

// TestDatasetEndToEnd sends the whole dicomtest data set (every modality, pixel format, transfer syntax and character
// set renkei promises to handle, compressed by dcmtk and GDCM) through the server the way a modality and a viewer
// would, and checks what comes back with dcmtk as the reference reader.
func TestDatasetEndToEnd(t *testing.T) {
	d := newSampleSet(t)
	e := newEnv(t)

	// One STOW-RS request with every sample.
	files := make([][]byte, len(d.samples))
	for i, s := range d.samples {
		files[i] = d.bytes(s.Name)
	}
	status, body := e.stow(files...)
	if status != http.StatusOK {
		t.Fatalf("STOW-RS of %d files: status %d, want 200: %s", len(files), status, body)
	}
	resp := decodeObject(t, body)
	if failed := resp.items("00081198"); len(failed) > 0 {
		t.Errorf("STOW-RS FailedSOPSequence has %d items, want none: %s", len(failed), body)
	}
	got := map[string]string{}
	for _, it := range resp.items("00081199") {
		got[it.str("00081155")] = it.str("00081190")
	}
	want := map[string]string{}
	for _, s := range d.samples {
		want[s.SOPInstanceUID] = instanceURL(e, s)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("STOW-RS ReferencedSOPSequence: SOP Instance UID → RetrieveURL (-want +got):\n%s", diff)
	}

	t.Run("stored bytes", func(t *testing.T) { testStoredBytes(t, e, d) })
	t.Run("explicit VR little endian", func(t *testing.T) { testConversion(t, e, d) })
	t.Run("metadata", func(t *testing.T) { testMetadata(t, e, d) })
	t.Run("frames", func(t *testing.T) { testFrames(t, e, d) })
}

// testStoredBytes: every sample comes back byte-identical by WADO-RS at the three levels and by WADO-URI.
func testStoredBytes(t *testing.T, e *env, d *sampleSet) {
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	wantSums := func(keep func(dicomtest.Sample) bool) (sums []string, types []string) {
		for _, s := range d.samples {
			if keep(s) {
				sums = append(sums, sum(d.bytes(s.Name)))
				types = append(types, "application/dicom; transfer-syntax="+s.TransferSyntaxUID)
			}
		}
		return sums, types
	}
	type request struct {
		name, url string
		keep      func(dicomtest.Sample) bool
	}
	var reqs []request
	studies, series := map[string]bool{}, map[string]bool{}
	for _, s := range d.samples {
		reqs = append(reqs, request{"instance " + s.Name, instanceURL(e, s), func(o dicomtest.Sample) bool { return o.SOPInstanceUID == s.SOPInstanceUID }})
		if !series[s.SeriesInstanceUID] {
			series[s.SeriesInstanceUID] = true
			reqs = append(reqs, request{"series of " + s.Name, fmt.Sprintf("%s/studies/%s/series/%s", e.url, s.StudyInstanceUID, s.SeriesInstanceUID),
				func(o dicomtest.Sample) bool { return o.SeriesInstanceUID == s.SeriesInstanceUID }})
		}
		if !studies[s.StudyInstanceUID] {
			studies[s.StudyInstanceUID] = true
			reqs = append(reqs, request{"study of " + s.Name, fmt.Sprintf("%s/studies/%s", e.url, s.StudyInstanceUID),
				func(o dicomtest.Sample) bool { return o.StudyInstanceUID == s.StudyInstanceUID }})
		}
	}
	for _, r := range reqs {
		t.Run("WADO-RS "+r.name, func(t *testing.T) {
			st, ct, b := e.get(r.url, acceptStored)
			if st != http.StatusOK {
				t.Fatalf("status %d: %s", st, b)
			}
			bodies, types := parts(t, ct, b)
			var gotSums []string
			for _, p := range bodies {
				gotSums = append(gotSums, sum(p))
			}
			wantS, wantT := wantSums(r.keep)
			// The order of instances in a series or study is not specified: compare as sets, types with their SHA-256.
			pair := func(sums, types []string) []string {
				var out []string
				for i := range sums {
					out = append(out, sums[i]+" "+types[i])
				}
				slices.Sort(out)
				return out
			}
			if diff := cmp.Diff(pair(wantS, wantT), pair(gotSums, types)); diff != "" {
				t.Errorf("parts as SHA-256 and Content-Type (-want +got):\n%s", diff)
			}
		})
	}
	for _, s := range d.samples {
		t.Run("WADO-URI "+s.Name, func(t *testing.T) {
			q := url.Values{"requestType": {"WADO"}, "studyUID": {s.StudyInstanceUID}, "seriesUID": {s.SeriesInstanceUID},
				"objectUID": {s.SOPInstanceUID}, "contentType": {"application/dicom"}, "transferSyntax": {s.TransferSyntaxUID}}
			st, ct, b := e.get(e.url+"/wado?"+q.Encode(), "")
			if st != http.StatusOK || ct != "application/dicom" {
				t.Fatalf("status %d, Content-Type %q: %.300s", st, ct, b)
			}
			if sum(b) != sum(d.bytes(s.Name)) {
				t.Errorf("WADO-URI returned %d bytes that differ from the %d bytes stored", len(b), len(d.bytes(s.Name)))
			}
			// transferSyntax=* asks for the stored bytes too; without the parameter PS3.18 8.2.x gives Explicit VR
			// Little Endian (when the stored syntax can be converted).
			q.Set("transferSyntax", "*")
			if st, _, b := e.get(e.url+"/wado?"+q.Encode(), ""); st != http.StatusOK || sum(b) != sum(d.bytes(s.Name)) {
				t.Errorf("transferSyntax=*: status %d, %d bytes, not the stored ones", st, len(b))
			}
			q.Del("transferSyntax")
			st, _, b = e.get(e.url+"/wado?"+q.Encode(), "")
			if st != http.StatusOK {
				if s.TransferSyntaxUID != "1.2.840.10008.1.2.1" && st == http.StatusNotAcceptable {
					return // a syntax renkei cannot convert is refused, not sent wrong
				}
				t.Fatalf("no transferSyntax: status %d: %.300s", st, b)
			}
			if !bytes.Contains(b[:min(len(b), 1024)], []byte("1.2.840.10008.1.2.1\x00")) {
				t.Errorf("no transferSyntax: the answer is not Explicit VR Little Endian")
			}
		})
	}
}

// testConversion: without a transfer-syntax parameter every instance comes back as Explicit VR Little Endian that
// dcmtk reads, with the pixels of the original and every other attribute unchanged.
func testConversion(t *testing.T, e *env, d *sampleSet) {
	for _, s := range d.samples {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			st, ct, b := e.get(instanceURL(e, s), `multipart/related; type="application/dicom"`)
			if st != http.StatusOK {
				t.Fatalf("status %d: %s", st, b)
			}
			bodies, types := parts(t, ct, b)
			if len(bodies) != 1 {
				t.Fatalf("%d parts, want 1", len(bodies))
			}
			if want := "application/dicom; transfer-syntax=" + tsExplicitLE; types[0] != want {
				t.Errorf("part Content-Type %q, want %q", types[0], want)
			}
			path := filepath.Join(t.TempDir(), s.Name+".dcm")
			if err := os.WriteFile(path, bodies[0], 0o644); err != nil {
				t.Fatal(err)
			}
			got := dcmdump(t, path)
			stored := d.dump(t, s.Name)

			// File Meta Information, PS3.10 7.1.
			wantMeta := map[string]string{"0002,0002": s.SOPClassUID, "0002,0003": s.SOPInstanceUID, "0002,0010": tsExplicitLE}
			gotMeta := map[string]string{}
			for k := range wantMeta {
				gotMeta[k] = got.elems[k]
			}
			if diff := cmp.Diff(wantMeta, gotMeta); diff != "" {
				t.Errorf("File Meta Information (-want +got):\n%s", diff)
			}

			// Every attribute of the data set survives with the same value (dcmdump prints text as its raw bytes, so the
			// Patient Name in ISO 2022 escapes is compared byte for byte), except what decoding the pixels changes.
			wantDS := stored.dataSet()
			if s.TransferSyntaxUID != stored.elems["0002,0010"] {
				t.Fatalf("dcmdump reads the stored file as %s, the sample says %s", stored.elems["0002,0010"], s.TransferSyntaxUID)
			}
			if encapsulated := len(stored.pixels) > 1; encapsulated {
				wantDS["0028,0004"] = d.dump(t, s.Source).elems["0028,0004"]
				if s.Lossy && wantDS["0028,0002"] == "3" {
					wantDS["0028,0004"] = "RGB" // YBR_FULL_422 decoded
				}
				if wantDS["0028,0002"] == "3" {
					wantDS["0028,0006"] = "0" // decoded pixels are interleaved
				}
			}
			if diff := cmp.Diff(wantDS, got.dataSet()); diff != "" {
				t.Errorf("data set attributes, stored vs converted (-want +got):\n%s", diff)
			}
			for _, k := range []string{"0010,0010", "0008,0018", "0020,000d", "0020,000e"} {
				if got.elems[k] == "" {
					t.Errorf("(%s) is missing from the converted file", k)
				}
			}

			// Pixel data.
			if len(got.pixels) != 1 {
				t.Fatalf("converted pixel data has %d items, want native pixel data", len(got.pixels))
			}
			gotPix := got.interleaved(got.pixels[0])
			switch {
			case s.Lossy:
				// The reference is what dcmtk's own decoder makes of the stored file.
				ref := d.dcmdjpeg(t, s.Name)
				wantPix := ref.interleaved(ref.pixels[0])
				if len(gotPix) != len(wantPix) {
					t.Fatalf("decoded pixel data is %d bytes, dcmdjpeg gives %d", len(gotPix), len(wantPix))
				}
				// image/jpeg and libjpeg differ in IDCT rounding and chroma upsampling (nearest vs "fancy"), which moves
				// single pixels at sharp colour edges by tens of levels: judge the whole image instead. A wrong colour
				// transform or a misplaced frame would be far below these bounds.
				src := d.dump(t, s.Source)
				orig := src.interleaved(src.pixels[0])
				if p := psnr(gotPix, wantPix); p < 30 {
					t.Errorf("PSNR against dcmdjpeg's pixels is %.1f dB, want at least 30", p)
				}
				if ours, theirs := psnr(gotPix, orig), psnr(wantPix, orig); ours < theirs-1 {
					t.Errorf("PSNR against the original is %.1f dB, dcmdjpeg's %.1f dB", ours, theirs)
				}
				if got.elems["0028,0004"] != ref.elems["0028,0004"] {
					t.Errorf("PhotometricInterpretation %q, dcmdjpeg says %q", got.elems["0028,0004"], ref.elems["0028,0004"])
				}
			default:
				src := s.Name
				if s.Source != "" {
					src = s.Source
				}
				ref := d.dump(t, src)
				wantPix := ref.interleaved(ref.pixels[0])
				if !bytes.Equal(gotPix, wantPix) {
					t.Errorf("pixel data (%d bytes) differs from the original's (%d bytes) at byte %d", len(gotPix), len(wantPix), firstDiff(gotPix, wantPix))
				}
			}
		})
	}
}

// testMetadata: DICOM JSON of every study, Japanese person names decoded, pixel data by BulkDataURI.
func testMetadata(t *testing.T, e *env, d *sampleSet) {
	byStudy := map[string][]dicomtest.Sample{}
	var order []string
	for _, s := range d.samples {
		if byStudy[s.StudyInstanceUID] == nil {
			order = append(order, s.StudyInstanceUID)
		}
		byStudy[s.StudyInstanceUID] = append(byStudy[s.StudyInstanceUID], s)
	}
	for _, study := range order {
		samples := byStudy[study]
		t.Run(samples[0].Name+" study", func(t *testing.T) {
			st, ct, b := e.get(e.url+"/studies/"+study+"/metadata", "application/dicom+json")
			if mt, _, _ := mime.ParseMediaType(ct); st != http.StatusOK || mt != "application/dicom+json" {
				t.Fatalf("status %d, Content-Type %q: %.300s", st, ct, b)
			}
			var objs []jsonObject
			if err := json.Unmarshal(b, &objs); err != nil {
				t.Fatalf("metadata is not a JSON array of objects: %v", err)
			}
			byUID := map[string]jsonObject{}
			for _, o := range objs {
				byUID[o.str("00080018")] = o
			}
			var wantUIDs, gotUIDs []string
			for _, s := range samples {
				wantUIDs = append(wantUIDs, s.SOPInstanceUID)
			}
			for _, o := range objs {
				gotUIDs = append(gotUIDs, o.str("00080018"))
			}
			slices.Sort(wantUIDs)
			slices.Sort(gotUIDs)
			if diff := cmp.Diff(wantUIDs, gotUIDs); diff != "" {
				t.Fatalf("one object per instance: SOP Instance UIDs (-want +got):\n%s", diff)
			}
			for _, s := range samples {
				o := byUID[s.SOPInstanceUID]
				wantPN := map[string]string{}
				for i, g := range strings.Split(s.PatientName, "=") {
					if g != "" {
						wantPN[[]string{"Alphabetic", "Ideographic", "Phonetic"}[i]] = g
					}
				}
				var gotPN []map[string]string
				if err := o.decodeValue("00100010", &gotPN); err != nil || len(gotPN) != 1 {
					t.Errorf("%s: PatientName %s: %v", s.Name, o["00100010"].Value, err)
				} else if diff := cmp.Diff(wantPN, gotPN[0]); diff != "" {
					t.Errorf("%s: PatientName in %q (-want +got):\n%s", s.Name, s.SpecificCharacterSet, diff)
				}
				if got := o.str("00100020"); got != s.PatientID {
					t.Errorf("%s: PatientID %q, want %q", s.Name, got, s.PatientID)
				}
				if s.Modality == "CT" {
					// Signed pixels: PixelPaddingValue is SS whatever the transfer syntax (read as US from Implicit VR).
					var v []int
					if err := o.decodeValue("00280120", &v); err != nil || o["00280120"].VR != "SS" || len(v) != 1 || v[0] != -2000 {
						t.Errorf("%s: PixelPaddingValue is %s %s, want SS [-2000]", s.Name, o["00280120"].VR, o["00280120"].Value)
					}
				}
				t.Run(s.Name+" bulk data", func(t *testing.T) { testPixelBulkData(t, e, d, s, o) })
			}
		})
	}
}

// testPixelBulkData fetches the BulkDataURI of (7FE0,0010): the native pixels, little endian, or the stored frames.
func testPixelBulkData(t *testing.T, e *env, d *sampleSet, s dicomtest.Sample, o jsonObject) {
	pd, ok := o["7FE00010"]
	if !ok || pd.BulkDataURI == "" {
		t.Fatalf("PixelData is %+v, want a BulkDataURI", pd)
	}
	if !strings.HasPrefix(pd.BulkDataURI, instanceURL(e, s)+"/") {
		t.Errorf("BulkDataURI %q is not under the instance's URL", pd.BulkDataURI)
	}
	st, ct, b := e.get(pd.BulkDataURI, "")
	if st != http.StatusOK {
		t.Fatalf("GET BulkDataURI: status %d: %.300s", st, b)
	}
	got, _ := parts(t, ct, b)
	stored := d.dump(t, s.Name)
	want := stored.pixels // native: one value, which dcmdump writes in little endian whatever the transfer syntax
	if len(stored.pixels) > 1 {
		want = stored.frames(s.Frames)
	}
	if len(got) != len(want) {
		t.Fatalf("%d parts, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("part %d: %d bytes, want the %d bytes of the stored value (differ at byte %d)", i+1, len(got[i]), len(want[i]), firstDiff(got[i], want[i]))
		}
	}
}

// testFrames: frame retrieval, decoded and as stored, and a frame past the end.
func testFrames(t *testing.T, e *env, d *sampleSet) {
	orig := d.dump(t, "us-multiframe-explicit-le")
	frameSize := len(orig.pixels[0]) / 10
	origFrame := func(n int) []byte { return orig.pixels[0][(n-1)*frameSize : n*frameSize] }
	rle := d.dump(t, "us-multiframe-rle").frames(10)
	jpeg := d.dump(t, "us-multiframe-jpeg-baseline").frames(10)
	tests := []struct {
		name, sample, frames, accept string
		wantType                     string // of the parts
		want                         [][]byte
	}{
		{"native, default Accept", "us-multiframe-explicit-le", "1,3", "", "application/octet-stream", [][]byte{origFrame(1), origFrame(3)}},
		{"RLE decoded, default Accept", "us-multiframe-rle", "1,3", "", "application/octet-stream", [][]byte{origFrame(1), origFrame(3)}},
		{"RLE decoded, octet-stream", "us-multiframe-rle", "3,1", `multipart/related; type="application/octet-stream"`, "application/octet-stream", [][]byte{origFrame(3), origFrame(1)}},
		{"RLE as stored", "us-multiframe-rle", "1,3", `multipart/related; type="image/dicom-rle"`, codec.MediaType(tsRLE), [][]byte{rle[0], rle[2]}},
		{"RLE as stored, last frame", "us-multiframe-rle", "10", `multipart/related; type="image/dicom-rle"; transfer-syntax=` + tsRLE, "image/dicom-rle", [][]byte{rle[9]}},
		{"JPEG baseline as stored", "us-multiframe-jpeg-baseline", "1,3", `multipart/related; type="image/jpeg"`, codec.MediaType(tsJPEGBaseline), [][]byte{jpeg[0], jpeg[2]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := d.sample(tt.sample)
			st, ct, b := e.get(instanceURL(e, s)+"/frames/"+tt.frames, tt.accept)
			if st != http.StatusOK {
				t.Fatalf("status %d: %.300s", st, b)
			}
			got, types := parts(t, ct, b)
			if len(got) != len(tt.want) {
				t.Fatalf("%d parts, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if mt, _, _ := mime.ParseMediaType(types[i]); mt != tt.wantType {
					t.Errorf("part %d is %q, want %s", i+1, types[i], tt.wantType)
				}
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Errorf("part %d: %d bytes, want %d (differ at byte %d)", i+1, len(got[i]), len(tt.want[i]), firstDiff(got[i], tt.want[i]))
				}
			}
		})
	}
	for _, frames := range []string{"11", "1,11"} {
		for _, name := range []string{"us-multiframe-explicit-le", "us-multiframe-rle"} {
			t.Run("frame past the end "+frames+" of "+name, func(t *testing.T) {
				st, ct, b := e.get(instanceURL(e, d.sample(name))+"/frames/"+frames, "")
				if st != http.StatusNotFound || ct != "application/problem+json" {
					t.Errorf("status %d, Content-Type %q, want 404 application/problem+json: %.300s", st, ct, b)
				}
			})
		}
	}
}

// TestStowConflicts covers the STOW-RS outcomes a modality relies on when it resends or mixes studies.
func TestStowConflicts(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	study, other := dicomtest.UID("stow-conflicts/study"), dicomtest.UID("stow-conflicts/other")
	write := func(name string, o dicomtest.CTOptions) []byte {
		o.Rows, o.Cols = 32, 32
		path := filepath.Join(dir, name+".dcm")
		if err := dicomtest.CT(path, o); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	series := dicomtest.UID("stow-conflicts/series")
	a := write("a", dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: dicomtest.UID("stow-conflicts/a"), Seed: 1, InstanceNumber: 1})
	b := write("b", dicomtest.CTOptions{StudyInstanceUID: other, SeriesInstanceUID: dicomtest.UID("stow-conflicts/other-series"), SOPInstanceUID: dicomtest.UID("stow-conflicts/b"), Seed: 1, InstanceNumber: 2})
	c := write("c", dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: dicomtest.UID("stow-conflicts/c"), Seed: 1, InstanceNumber: 3})
	// a2 is a with other pixels: the same SOP Instance UID with different content.
	a2 := write("a2", dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: dicomtest.UID("stow-conflicts/a"), Seed: 2, InstanceNumber: 1})
	if bytes.Equal(a, a2) {
		t.Fatal("test setup: a and a2 have the same bytes")
	}
	uid := func(name string) string { return dicomtest.UID("stow-conflicts/" + name) }
	sorted := func(s ...string) []string { slices.Sort(s); return s }

	type outcome struct {
		Status int
		Stored []string          // ReferencedSOPSequence
		Failed map[string]uint16 // FailedSOPSequence: SOP Instance UID → FailureReason
	}
	tests := []struct {
		name  string
		path  string
		files [][]byte
		want  outcome
	}{
		{"another study's instance in /studies/{study}", "/studies/" + study, [][]byte{a, b, c},
			outcome{http.StatusAccepted, sorted(uid("a"), uid("c")), map[string]uint16{uid("b"): 0xA900}}},
		{"the same instance again, identical", "/studies", [][]byte{a},
			outcome{http.StatusOK, []string{uid("a")}, nil}},
		{"the same instance a third time, to its study", "/studies/" + study, [][]byte{a},
			outcome{http.StatusOK, []string{uid("a")}, nil}},
		{"the same SOP Instance UID with other bytes", "/studies", [][]byte{a2},
			outcome{http.StatusConflict, nil, map[string]uint16{uid("a"): 0x0111}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body := stowTo(t, e.url+tt.path, tt.files...)
			resp := decodeObject(t, body)
			got := outcome{Status: st}
			for _, it := range resp.items("00081199") {
				got.Stored = append(got.Stored, it.str("00081155"))
			}
			for _, it := range resp.items("00081198") {
				if got.Failed == nil {
					got.Failed = map[string]uint16{}
				}
				var reason []uint16
				if err := it.decodeValue("00081197", &reason); err != nil || len(reason) != 1 {
					t.Errorf("FailedSOPSequence item without FailureReason (0008,1197): %s", body)
				} else {
					got.Failed[it.str("00081155")] = reason[0]
				}
			}
			slices.Sort(got.Stored)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("STOW-RS outcome (-want +got):\n%s\nbody: %s", diff, body)
			}
		})
	}

	// The first copy of a is still the one served, b was never stored, and no blob of a refused object remains.
	sa := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s", e.url, study, series, uid("a"))
	st, ct, body := e.get(sa, acceptStored)
	if st != http.StatusOK {
		t.Fatalf("WADO-RS of a: status %d: %s", st, body)
	}
	if got, _ := parts(t, ct, body); len(got) != 1 || !bytes.Equal(got[0], a) {
		t.Errorf("WADO-RS of a does not return the first copy unchanged")
	}
	if st, _, body := e.get(e.url+"/studies/"+other, acceptStored); st != http.StatusNotFound {
		t.Errorf("WADO-RS of the refused study: status %d, want 404: %.200s", st, body)
	}
	if diff := cmp.Diff(blobKeys(a, c), e.blobFiles()); diff != "" {
		t.Errorf("blob files (-want +got):\n%s", diff)
	}
}

// TestTrash deletes an instance, a series and a study by DICOMweb, restores them from the trash and purges the rest.
func TestTrash(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	type inst struct{ Study, Series, SOP string }
	u := func(s string) string { return dicomtest.UID("trash/" + s) }
	layout := map[string]inst{
		"a1": {u("A"), u("A/1"), u("a1")}, "a2": {u("A"), u("A/1"), u("a2")},
		"a3": {u("A"), u("A/2"), u("a3")}, "a4": {u("A"), u("A/2"), u("a4")},
		"b1": {u("B"), u("B/1"), u("b1")},
		"c1": {u("C"), u("C/1"), u("c1")},
	}
	files := map[string][]byte{}
	var all [][]byte
	for n, name := range []string{"a1", "a2", "a3", "a4", "b1", "c1"} {
		in := layout[name]
		path := filepath.Join(dir, name+".dcm")
		if err := dicomtest.CT(path, dicomtest.CTOptions{StudyInstanceUID: in.Study, SeriesInstanceUID: in.Series, SOPInstanceUID: in.SOP,
			PatientID: "TRASH" + name[:1], Rows: 16, Cols: 16, InstanceNumber: n + 1}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
		all = append(all, b)
	}
	if st, body := e.stow(all...); st != http.StatusOK {
		t.Fatalf("STOW-RS: status %d: %s", st, body)
	}
	at := func(name, level string) string {
		in := layout[name]
		switch level {
		case "study":
			return "/studies/" + in.Study
		case "series":
			return "/studies/" + in.Study + "/series/" + in.Series
		}
		return "/studies/" + in.Study + "/series/" + in.Series + "/instances/" + in.SOP
	}
	// studies answers QIDO-RS: study UID → NumberOfStudyRelatedInstances.
	studies := func() map[string]int {
		st, _, b := e.get(e.url+"/studies", "application/dicom+json")
		if st != http.StatusOK {
			t.Fatalf("QIDO-RS /studies: status %d: %s", st, b)
		}
		var objs []jsonObject
		if err := json.Unmarshal(b, &objs); err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, o := range objs {
			var n []int
			if err := o.decodeValue("00201208", &n); err != nil || len(n) != 1 {
				t.Fatalf("QIDO-RS study without NumberOfStudyRelatedInstances: %s", b)
			}
			out[o.str("0020000D")] = n[0]
		}
		return out
	}
	instances := func(study string) []string {
		st, _, b := e.get(e.url+"/studies/"+study+"/instances", "application/dicom+json")
		if st != http.StatusOK {
			t.Fatalf("QIDO-RS instances: status %d: %s", st, b)
		}
		var objs []jsonObject
		if err := json.Unmarshal(b, &objs); err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, o := range objs {
			out = append(out, o.str("00080018"))
		}
		slices.Sort(out)
		return out
	}
	sortInsts := func(v []inst) []inst {
		slices.SortFunc(v, func(x, y inst) int { return strings.Compare(x.Study+x.Series+x.SOP, y.Study+y.Series+y.SOP) })
		return v
	}
	trash := func() []inst {
		st, _, b := e.get(e.srv.URL+"/api/trash", "application/json")
		if st != http.StatusOK {
			t.Fatalf("GET /api/trash: status %d: %s", st, b)
		}
		var entries []struct{ StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID string }
		if err := json.Unmarshal(b, &entries); err != nil {
			t.Fatalf("GET /api/trash: %v: %s", err, b)
		}
		out := []inst{}
		for _, en := range entries {
			out = append(out, inst{en.StudyInstanceUID, en.SeriesInstanceUID, en.SOPInstanceUID})
		}
		return sortInsts(out)
	}
	do := func(method, path string) (int, []byte) {
		req, err := http.NewRequest(method, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes()
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	A, B, C := u("A"), u("B"), u("C")

	steps := []struct {
		name        string
		method, url string
		wantStatus  int
		gone        []string // WADO-RS paths that must be 404 after the step
		there       []string // and paths that must still answer
		studies     map[string]int
		instancesA  []string
		trash       []inst
	}{
		{"delete an instance", "DELETE", e.url + at("a1", "instance"), http.StatusNoContent,
			[]string{at("a1", "instance")}, []string{at("a2", "instance"), at("a1", "series")},
			map[string]int{A: 3, B: 1, C: 1}, sorted(u("a2"), u("a3"), u("a4")),
			[]inst{{A, u("A/1"), u("a1")}}},
		{"delete a series", "DELETE", e.url + at("a3", "series"), http.StatusNoContent,
			[]string{at("a3", "series"), at("a3", "instance"), at("a4", "instance")}, []string{at("a2", "series"), at("a2", "study")},
			map[string]int{A: 1, B: 1, C: 1}, []string{u("a2")},
			[]inst{{A, u("A/1"), u("a1")}, {A, u("A/2"), ""}}},
		{"delete a study", "DELETE", e.url + at("b1", "study"), http.StatusNoContent,
			[]string{at("b1", "study"), at("b1", "series"), at("b1", "instance")}, []string{at("c1", "study")},
			map[string]int{A: 1, C: 1}, []string{u("a2")},
			[]inst{{A, u("A/1"), u("a1")}, {A, u("A/2"), ""}, {B, "", ""}}},
		{"delete what is already in the trash", "DELETE", e.url + at("b1", "study"), http.StatusNotFound,
			nil, nil, map[string]int{A: 1, C: 1}, []string{u("a2")},
			[]inst{{A, u("A/1"), u("a1")}, {A, u("A/2"), ""}, {B, "", ""}}},
		{"restore the deleted study", "POST", e.srv.URL + "/api/trash" + at("b1", "study") + "/restore", http.StatusOK,
			nil, []string{at("b1", "instance")},
			map[string]int{A: 1, B: 1, C: 1}, []string{u("a2")},
			[]inst{{A, u("A/1"), u("a1")}, {A, u("A/2"), ""}}},
		{"restore the study of the deleted instance and series", "POST", e.srv.URL + "/api/trash" + at("a1", "study") + "/restore", http.StatusOK,
			nil, []string{at("a1", "instance"), at("a3", "series")},
			map[string]int{A: 4, B: 1, C: 1}, sorted(u("a1"), u("a2"), u("a3"), u("a4")),
			[]inst{}},
		{"restore with nothing in the trash", "POST", e.srv.URL + "/api/trash" + at("a1", "study") + "/restore", http.StatusNotFound,
			nil, nil, map[string]int{A: 4, B: 1, C: 1}, sorted(u("a1"), u("a2"), u("a3"), u("a4")), []inst{}},
		// Delete again, to purge.
		{"delete the study again", "DELETE", e.url + at("c1", "study"), http.StatusNoContent,
			[]string{at("c1", "study")}, nil,
			map[string]int{A: 4, B: 1}, sorted(u("a1"), u("a2"), u("a3"), u("a4")),
			[]inst{{C, "", ""}}},
		{"delete an instance again", "DELETE", e.url + at("a4", "instance"), http.StatusNoContent,
			[]string{at("a4", "instance")}, []string{at("a3", "instance")},
			map[string]int{A: 3, B: 1}, sorted(u("a1"), u("a2"), u("a3")),
			[]inst{{A, u("A/2"), u("a4")}, {C, "", ""}}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if st, body := do(s.method, s.url); st != s.wantStatus {
				t.Fatalf("%s %s: status %d, want %d: %s", s.method, s.url, st, s.wantStatus, body)
			}
			for _, p := range s.gone {
				if st, ct, b := e.get(e.url+p, acceptStored); st != http.StatusNotFound || ct != "application/problem+json" {
					t.Errorf("WADO-RS %s: status %d %q, want 404 problem+json: %.200s", p, st, ct, b)
				}
			}
			for _, p := range s.there {
				if st, _, b := e.get(e.url+p, acceptStored); st != http.StatusOK {
					t.Errorf("WADO-RS %s: status %d, want 200: %.200s", p, st, b)
				}
			}
			if diff := cmp.Diff(s.studies, studies()); diff != "" {
				t.Errorf("QIDO-RS studies → NumberOfStudyRelatedInstances (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(s.instancesA, instances(A)); diff != "" {
				t.Errorf("QIDO-RS instances of study A (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(sortInsts(s.trash), trash()); diff != "" {
				t.Errorf("GET /api/trash (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("purge", func(t *testing.T) {
		// Nothing is old enough within the default period.
		if n, err := e.archive.Purge(context.Background()); err != nil || n != 0 {
			t.Fatalf("Purge within the trash period: %d blobs, %v; want 0", n, err)
		}
		if diff := cmp.Diff(blobKeys(all...), e.blobFiles()); diff != "" {
			t.Errorf("blob files before the period ends (-want +got):\n%s", diff)
		}
		e.archive.Now = func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }
		n, err := e.archive.Purge(context.Background())
		if err != nil || n != 2 {
			t.Errorf("Purge: %d blobs, %v; want 2 (a4 and c1)", n, err)
		}
		if diff := cmp.Diff(blobKeys(files["a1"], files["a2"], files["a3"], files["b1"]), e.blobFiles()); diff != "" {
			t.Errorf("blob files after purge (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]inst{}, trash()); diff != "" {
			t.Errorf("GET /api/trash after purge (-want +got):\n%s", diff)
		}
		if st, body := do("POST", e.srv.URL+"/api/trash"+at("c1", "study")+"/restore"); st != http.StatusNotFound {
			t.Errorf("restore after purge: status %d, want 404: %s", st, body)
		}
		// The purged instance can be sent again; it is a new instance, not a restored one.
		if st, body := e.stow(files["a4"], files["c1"]); st != http.StatusOK {
			t.Fatalf("STOW-RS after purge: status %d: %s", st, body)
		}
		if diff := cmp.Diff(map[string]int{A: 4, B: 1, C: 1}, studies()); diff != "" {
			t.Errorf("QIDO-RS studies after storing again (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(blobKeys(all...), e.blobFiles()); diff != "" {
			t.Errorf("blob files after storing again (-want +got):\n%s", diff)
		}
	})

	t.Run("an instance stored again while in the trash keeps its blob", func(t *testing.T) {
		// a2 is deleted, then sent again with the same bytes: the new copy uses the trashed copy's blob, and a purge
		// must not take it away.
		if st, body := do("DELETE", e.url+at("a2", "instance")); st != http.StatusNoContent {
			t.Fatalf("DELETE: status %d: %s", st, body)
		}
		if st, body := e.stow(files["a2"]); st != http.StatusOK {
			t.Fatalf("STOW-RS: status %d: %s", st, body)
		}
		if n, err := e.archive.Purge(context.Background()); err != nil || n != 0 {
			t.Errorf("Purge: %d blobs, %v; want 0", n, err)
		}
		if diff := cmp.Diff(blobKeys(all...), e.blobFiles()); diff != "" {
			t.Errorf("blob files (-want +got):\n%s", diff)
		}
		st, ct, b := e.get(e.url+at("a2", "instance"), acceptStored)
		if st != http.StatusOK {
			t.Fatalf("WADO-RS: status %d: %s", st, b)
		}
		if got, _ := parts(t, ct, b); len(got) != 1 || !bytes.Equal(got[0], files["a2"]) {
			t.Errorf("WADO-RS does not return the instance stored again")
		}
	})
}

// TestCORS checks the headers a viewer served from another origin needs, and that other origins get none.
func TestCORS(t *testing.T) {
	e := newEnv(t)
	e.handler.AllowedOrigins = []string{"https://viewer.example"}
	tests := []struct {
		name, method, origin string
		preflight            bool
		want                 map[string]string // headers; "" means absent
	}{
		{"preflight from the viewer", "OPTIONS", "https://viewer.example", true, map[string]string{
			"Access-Control-Allow-Origin":  "https://viewer.example",
			"Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
			"Access-Control-Allow-Headers": "Accept, Authorization, Content-Type, Content-Encoding",
		}},
		{"GET from the viewer", "GET", "https://viewer.example", false, map[string]string{
			"Access-Control-Allow-Origin":  "https://viewer.example",
			"Access-Control-Allow-Methods": "",
		}},
		{"preflight from another origin", "OPTIONS", "https://evil.example", true, map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Access-Control-Allow-Headers": "",
		}},
		{"GET from another origin", "GET", "https://evil.example", false, map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "",
		}},
		{"GET from the viewer's host on another scheme", "GET", "http://viewer.example", false, map[string]string{
			"Access-Control-Allow-Origin": "",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, e.url+"/studies", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Origin", tt.origin)
			if tt.preflight {
				req.Header.Set("Access-Control-Request-Method", "GET")
				req.Header.Set("Access-Control-Request-Headers", "accept")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := map[string]string{}
			for k := range tt.want {
				got[k] = resp.Header.Get(k)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if resp.StatusCode >= 500 || (!tt.preflight && resp.StatusCode != http.StatusOK) {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
}

// sampleSet is the dicomtest data set, generated once per test, with dcmdump's reading of each file cached.
type sampleSet struct {
	dir     string
	samples []dicomtest.Sample

	mu    sync.Mutex
	files map[string][]byte
	dumps map[string]*dumpResult
}

func newSampleSet(t *testing.T) *sampleSet {
	t.Helper()
	for _, tool := range []string{"dcmdump", "dcmdjpeg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install the Debian package dcmtk", tool)
		}
	}
	dir := t.TempDir()
	samples, err := dicomtest.Dataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &sampleSet{dir: dir, samples: samples, files: map[string][]byte{}, dumps: map[string]*dumpResult{}}
}

func (d *sampleSet) sample(name string) dicomtest.Sample {
	for _, s := range d.samples {
		if s.Name == name {
			return s
		}
	}
	panic("no sample " + name)
}

func (d *sampleSet) bytes(name string) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b, ok := d.files[name]; ok {
		return b
	}
	b, err := os.ReadFile(d.sample(name).Path)
	if err != nil {
		panic(err)
	}
	d.files[name] = b
	return b
}

func (d *sampleSet) dump(t *testing.T, name string) *dumpResult {
	d.mu.Lock()
	r, ok := d.dumps[name]
	d.mu.Unlock()
	if ok {
		return r
	}
	r = dcmdump(t, d.sample(name).Path)
	d.mu.Lock()
	d.dumps[name] = r
	d.mu.Unlock()
	return r
}

// dcmdjpeg returns dcmdump's reading of what dcmtk's JPEG decoder makes of sample name.
func (d *sampleSet) dcmdjpeg(t *testing.T, name string) *dumpResult {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+"-dcmdjpeg.dcm")
	if b, err := exec.Command("dcmdjpeg", d.sample(name).Path, out).CombinedOutput(); err != nil {
		t.Fatalf("dcmdjpeg %s: %v: %s", name, err, b)
	}
	return dcmdump(t, out)
}

// dumpResult is dcmdump's reading of a file: top-level elements by "gggg,eeee" (values as dcmdump prints them, text
// as its raw bytes; sequences as "SQ"), and the pixel data: one value when native (little endian), or the items of
// encapsulated pixel data, the Basic Offset Table first.
type dumpResult struct {
	elems  map[string]string
	pixels [][]byte
}

var dcmdumpLine = regexp.MustCompile(`^\(([0-9a-f]{4},[0-9a-f]{4})\) ([A-Za-z]{2}) (.*)$`)

// dcmdump runs dcmdump on path; any warning or error fails the test.
func dcmdump(t *testing.T, path string) *dumpResult {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "raw")
	if err := os.Mkdir(raw, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dcmdump", "-Un", "+L", "+W", raw, path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("dcmdump %s: %v\n%s", path, err, stderr.Bytes())
	}
	r := &dumpResult{elems: map[string]string{}}
	for _, line := range bytes.Split(stdout.Bytes(), []byte("\n")) {
		sub := dcmdumpLine.FindSubmatch(line)
		if sub == nil {
			continue // comments, and nested items which start with spaces
		}
		v := sub[3]
		if i := bytes.LastIndex(v, []byte(" #")); i >= 0 {
			v = v[:i]
		}
		v = bytes.TrimRight(v, " ")
		if len(v) > 1 && v[0] == '[' && v[len(v)-1] == ']' {
			v = v[1 : len(v)-1]
		}
		if string(sub[2]) == "SQ" {
			v = []byte("SQ") // the length differs between encodings, the items are not compared
		}
		r.elems[string(sub[1])] = string(v)
	}
	// dcmdump +W names the files <file>.<n>.raw, n counting from 0 in the order of the items.
	ents, err := os.ReadDir(raw)
	if err != nil {
		t.Fatal(err)
	}
	r.pixels = make([][]byte, len(ents))
	for _, en := range ents {
		base := strings.TrimSuffix(en.Name(), ".raw")
		n, err := strconv.Atoi(base[strings.LastIndexByte(base, '.')+1:])
		if err != nil || n >= len(ents) {
			t.Fatalf("dcmdump +W wrote %s", en.Name())
		}
		if r.pixels[n], err = os.ReadFile(filepath.Join(raw, en.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.pixels) == 0 {
		t.Fatalf("dcmdump %s: no pixel data", path)
	}
	return r
}

// dataSet returns the elements outside the File Meta Information and the pixel data.
func (r *dumpResult) dataSet() map[string]string {
	out := map[string]string{}
	for k, v := range r.elems {
		// Group 0002 is the File Meta Information; (FFFE,E0DD) ends encapsulated pixel data.
		if !strings.HasPrefix(k, "0002,") && !strings.HasPrefix(k, "fffe,") && k != "7fe0,0010" {
			out[k] = v
		}
	}
	return out
}

// frames returns the stored frames of encapsulated pixel data: one fragment each, or all fragments of a single frame.
func (r *dumpResult) frames(n int) [][]byte {
	frags := r.pixels[1:]
	if n == 1 {
		return [][]byte{bytes.Join(frags, nil)}
	}
	if len(frags) != n {
		panic(fmt.Sprintf("%d fragments for %d frames", len(frags), n))
	}
	return frags
}

// interleaved returns native pixels with the samples of each pixel together (Planar Configuration 0).
func (r *dumpResult) interleaved(b []byte) []byte {
	if r.elems["0028,0002"] != "3" || r.elems["0028,0006"] != "1" {
		return b
	}
	rows, _ := strconv.Atoi(r.elems["0028,0010"])
	cols, _ := strconv.Atoi(r.elems["0028,0011"])
	bytesPerSample, _ := strconv.Atoi(r.elems["0028,0100"])
	bytesPerSample /= 8
	n := rows * cols
	frame := 3 * n * bytesPerSample
	out := make([]byte, 0, len(b))
	for f := 0; f+frame <= len(b); f += frame {
		for i := range n {
			for s := range 3 {
				off := f + (s*n+i)*bytesPerSample
				out = append(out, b[off:off+bytesPerSample]...)
			}
		}
	}
	return out
}

// psnr is the peak signal-to-noise ratio of 8-bit samples b against a, in dB.
func psnr(a, b []byte) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/(se/float64(len(a))))
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// jsonObject is one DICOM JSON object (PS3.18 F.2).
type jsonObject map[string]jsonAttr

type jsonAttr struct {
	VR           string          `json:"vr"`
	Value        json.RawMessage `json:"Value"`
	BulkDataURI  string
	InlineBinary string
}

func decodeObject(t *testing.T, b []byte) jsonObject {
	t.Helper()
	var o jsonObject
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("not a DICOM JSON object: %v: %s", err, b)
	}
	return o
}

func (o jsonObject) decodeValue(tag string, v any) error {
	a, ok := o[tag]
	if !ok {
		return fmt.Errorf("no (%s)", tag)
	}
	return json.Unmarshal(a.Value, v)
}

// str returns the first string value of tag, or "".
func (o jsonObject) str(tag string) string {
	var v []string
	o.decodeValue(tag, &v)
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (o jsonObject) items(tag string) []jsonObject {
	var v []jsonObject
	o.decodeValue(tag, &v)
	return v
}

func instanceURL(e *env, s dicomtest.Sample) string {
	return fmt.Sprintf("%s/studies/%s/series/%s/instances/%s", e.url, s.StudyInstanceUID, s.SeriesInstanceUID, s.SOPInstanceUID)
}

// stowTo posts files to url as STOW-RS and returns the status and body.
func stowTo(t *testing.T, url string, files ...[]byte) (int, []byte) {
	t.Helper()
	body, ct := multipartBody(t, files...)
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, buf.Bytes()
}

// blobKeys returns the SHA-256 of each file, sorted: the names the blob folder gives them.
func blobKeys(files ...[]byte) []string {
	var keys []string
	for _, f := range files {
		h := sha256.Sum256(f)
		keys = append(keys, hex.EncodeToString(h[:]))
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// blobFiles lists the blobs in the blob folder (not its temporary files), sorted.
func (e *env) blobFiles() []string {
	e.t.Helper()
	var keys []string
	root := filepath.Join(e.dir, "blobs")
	err := filepath.WalkDir(root, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() && de.Name() == "tmp" {
			return filepath.SkipDir
		}
		if !de.IsDir() {
			keys = append(keys, de.Name())
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}
