package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"renkei/dicom"
	"renkei/dimse"
	"renkei/internal/dicomtest"
)

// jpegSample is one JPEG lossless file made by dcmcjpeg, and the pixels dcmdjpeg decodes from it.
type jpegSample struct {
	name                                  string
	sv, precision, frames                 int
	sopClass, sop, series, original, jpeg string
	ref                                   []byte // dcmdjpeg's Pixel Data, every frame
}

// TestServeJPEGLosslessPredictors: JPEG Lossless process 14 (1.2.840.10008.1.2.4.57) allows the seven predictors of
// T.81 Table H.1, and renkei decodes them in its own Go code whenever a peer does not take the stored syntax. dcmcjpeg
// compresses CT-like images at 16 bits (signed), 12 bits and 8 bits (two frames) with each selection value; renkei's
// own SCU C-STOREs them in that syntax alone to `renkei serve`; then getscu (+xe), movescu to a storescp that takes
// only uncompressed syntaxes, renkei's SCU taking only Explicit or only Implicit VR Little Endian, and WADO-RS frames
// as application/octet-stream read them back. Every pixel must equal dcmdjpeg's decode, byte for byte: the issue
// allows no wrong pixel data ever sent.
func TestServeJPEGLosslessPredictors(t *testing.T) {
	dicomtest.NeedTools(t, "dcmcjpeg", "dcmdjpeg", "getscu", "movescu", "storescp")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	scpAddr, scpDir := dicomtest.StartStorescp(t, "WORKSTATION", "+B") // storescp's default: uncompressed syntaxes only
	_, scpPort, _ := net.SplitHostPort(scpAddr)
	var out strings.Builder
	for _, args := range [][]string{
		{"admin", "institution", "add", "hosp-j", "--name", "J病院", "--kind", "hospital", "--issuer", "HOSP_J"},
		{"admin", "ae", "add", "MODALITY", "--host", "127.0.0.1", "--institution", "hosp-j"},
		{"admin", "ae", "add", "GETSCU", "--host", "127.0.0.1", "--institution", "hosp-j"},
		{"admin", "ae", "add", "WORKSTATION", "--host", "127.0.0.1", "--port", scpPort, "--institution", "hosp-j"},
		{"admin", "token", "add", "viewer", "--institution", "hosp-j"},
	} {
		if code := Main(context.Background(), append(args, "--data", data), &out, &out); code != 0 {
			t.Fatalf("%v: %s", args, out.String())
		}
	}
	token := regexp.MustCompile(`(?m)^rk_\S+$`).FindString(out.String())
	dimseAddr := freeAddr(t)
	base, stop := serveForTest(t, "serve", "--data", data, "--http", "127.0.0.1:0", "--dimse", dimseAddr, "--log-level", "warn")
	defer stop()
	host, port, _ := net.SplitHostPort(dimseAddr)

	study := dicomtest.UID("jpeg-sv/study")
	samples := makeJPEGSamples(t, filepath.Join(dir, "files"), study)
	var paths []string
	for _, s := range samples {
		paths = append(paths, s.jpeg)
	}
	var sent strings.Builder
	if code := Main(context.Background(), append([]string{"dicom", "send", "--aet", "MODALITY", "--aec", "RENKEI", dimseAddr}, paths...), &sent, &sent); code != 0 ||
		!strings.Contains(sent.String(), fmt.Sprintf("sent %d file(s), 0 refused", len(samples))) {
		t.Fatalf("renkei dicom send of the JPEG lossless files: exit %d\n%s", code, sent.String())
	}

	client := &http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: time.Minute}
	instance := func(s jpegSample) string {
		return fmt.Sprintf("%s/dicomweb/studies/%s/series/%s/instances/%s", base, study, s.series, s.sop)
	}
	// Stored as sent: the archive keeps the compressed bytes, so every retrieve below that is not in 1.2.4.57 decodes.
	for _, s := range samples {
		parts := getParts(t, client, instance(s), `multipart/related; type="application/dicom"; transfer-syntax=*`)
		if len(parts) != 1 {
			t.Fatalf("%s: WADO-RS returned %d parts", s.name, len(parts))
		}
		if ts := pixelsOf(t, parts[0]).ts; ts != dicom.JPEGLossless {
			t.Fatalf("%s: stored in %s, want JPEG lossless %s as sent", s.name, ts, dicom.JPEGLossless)
		}
	}

	// check compares what a peer received (Part 10 files by SOP Instance UID) with dcmdjpeg's pixels.
	check := func(t *testing.T, got map[string]receivedPixels, wantTS string) {
		t.Helper()
		if len(got) != len(samples) {
			t.Errorf("received %d instances, want %d", len(got), len(samples))
		}
		for _, s := range samples {
			r, ok := got[s.sop]
			switch {
			case !ok:
				t.Errorf("%s: not received", s.name)
			case r.ts != wantTS:
				t.Errorf("%s: received in %s, want %s", s.name, r.ts, wantTS)
			case !bytes.Equal(r.pixels, s.ref):
				t.Errorf("%s: received pixel data (%d bytes) differs from dcmdjpeg's decode (%d bytes) at byte %d",
					s.name, len(r.pixels), len(s.ref), firstDiff(r.pixels, s.ref))
			}
		}
	}
	readDir := func(t *testing.T, dir string) map[string]receivedPixels {
		t.Helper()
		got := map[string]receivedPixels{}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			r := pixelsOf(t, b)
			got[r.sop] = r
		}
		return got
	}

	t.Run("getscu +xe", func(t *testing.T) {
		getDir := t.TempDir()
		dicomtest.Run(t, "getscu", "-aet", "GETSCU", "-aec", "RENKEI", "+xe", "+B", "-od", getDir, "-S",
			"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study, host, port)
		check(t, readDir(t, getDir), dicom.ExplicitVRLittleEndian)
	})
	t.Run("movescu to a storescp of uncompressed syntaxes", func(t *testing.T) {
		dicomtest.Run(t, "movescu", "-aet", "GETSCU", "-aec", "RENKEI", "-aem", "WORKSTATION", "-S",
			"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study, host, port)
		check(t, readDir(t, scpDir), dicom.ExplicitVRLittleEndian)
	})
	for _, ts := range []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian} {
		t.Run("C-GET accepting "+ts+" alone", func(t *testing.T) {
			ctx := context.Background()
			pcs := []dimse.PresentationContext{{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian}}}
			seen := map[string]bool{}
			for _, s := range samples {
				if !seen[s.sopClass] {
					seen[s.sopClass] = true
					pcs = append(pcs, dimse.PresentationContext{AbstractSyntax: s.sopClass, TransferSyntaxes: []string{ts}, SCPRole: true})
				}
			}
			a, err := dimse.Dial(ctx, dimseAddr, "GETSCU", "RENKEI", pcs)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Release(ctx)
			id := &dicom.DataSet{}
			id.SetString(0x00080052, "CS", "STUDY")
			id.SetString(dicom.StudyInstanceUID, "UI", study)
			var mu sync.Mutex
			got := map[string]receivedPixels{}
			res, err := a.Get(ctx, dimse.StudyRootQueryRetrieveInformationModelGet, id, dimse.StoreFunc(
				func(ctx context.Context, _ *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
					ds, err := dicom.ParseDataSet(data, req.TransferSyntaxUID, allValuesOptions)
					if err != nil {
						return dimse.Failure(dimse.StatusCannotUnderstand, err.Error())
					}
					mu.Lock()
					defer mu.Unlock()
					got[req.SOPInstanceUID] = receivedPixels{ts: req.TransferSyntaxUID, sop: ds.String(dicom.SOPInstanceUID), pixels: pixelValue(ds)}
					return dimse.Success()
				}))
			if err != nil || !res.Status.IsSuccess() || int(res.SubOperations.Completed) != len(samples) {
				t.Fatalf("C-GET: %v %+v %v", res.Status, res.SubOperations, err)
			}
			check(t, got, ts)
		})
	}
	t.Run("WADO-RS frames as application/octet-stream", func(t *testing.T) {
		for _, s := range samples {
			list := "1"
			for n := 2; n <= s.frames; n++ {
				list += fmt.Sprintf(",%d", n)
			}
			parts := getParts(t, client, instance(s)+"/frames/"+list, `multipart/related; type="application/octet-stream"`)
			if got := bytes.Join(parts, nil); len(parts) != s.frames || !bytes.Equal(got, s.ref) {
				t.Errorf("%s: frames %s: %d parts of %d bytes differ from dcmdjpeg's decode (%d bytes) at byte %d",
					s.name, list, len(parts), len(got), len(s.ref), firstDiff(got, s.ref))
			}
		}
	})
}

// makeJPEGSamples writes the images under dir and has dcmcjpeg compress each with one selection value and point
// transform 0 (lossless), and dcmdjpeg decode it again. It checks that each file is what the test claims: transfer
// syntax 1.2.840.10008.1.2.4.57, the selection value and precision in the JPEG stream's SOS and SOF3, and dcmdjpeg's
// pixels equal to the original's.
func makeJPEGSamples(t *testing.T, dir, study string) []jpegSample {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// precision is the JPEG sample precision (SOF3 P) dcmcjpeg writes. Its true lossless codec (+tl, the default, which
	// forces +ba) encodes all BitsAllocated bits, so 12 bits stored in 16 are P=16 (unsigned, unlike ct16); its
	// pseudo-lossless codec (+pl) writes P=12 but rescales the values and marks the image lossy, so it is not used.
	images := []struct {
		name                    string
		bits, precision, frames int
		write                   func(string, dicomtest.CTOptions) error
		sopClass                string
	}{
		{"ct16", 16, 16, 1, dicomtest.CT, "1.2.840.10008.5.1.4.1.1.2"},
		{"ct12", 12, 16, 1, dicomtest.CT, "1.2.840.10008.5.1.4.1.1.2"},
		{"mf8", 8, 8, 2, dicomtest.MultiFrame, "1.2.840.10008.5.1.4.1.1.7.2"},
	}
	var samples []jpegSample
	for _, im := range images {
		for sv := 1; sv <= 7; sv++ {
			s := jpegSample{name: fmt.Sprintf("%s-sv%d", im.name, sv), sv: sv, precision: im.precision, frames: im.frames, sopClass: im.sopClass,
				sop: dicomtest.UID("jpeg-sv/" + im.name + fmt.Sprint("/", sv)), series: dicomtest.UID("jpeg-sv/series/" + im.name)}
			s.original = filepath.Join(dir, s.name+".dcm")
			s.jpeg = filepath.Join(dir, s.name+"-jpeg.dcm")
			// Rows differ from columns, so that a decoder that mixes them up is caught; each file has its own noise.
			o := dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: s.series, SOPInstanceUID: s.sop, PatientID: "JPEGSV",
				PatientName: "Jpeg^Predictors", Rows: 48, Cols: 64, BitsStored: im.bits, Frames: im.frames, InstanceNumber: sv, Seed: 14}
			if err := im.write(s.original, o); err != nil {
				t.Fatal(err)
			}
			samples = append(samples, s)
		}
	}
	// Two tools at a time: the machine's cores are shared.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	errs := make([]error, len(samples))
	refs := make([]string, len(samples))
	for i, s := range samples {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			refs[i] = filepath.Join(dir, s.name+"-dcmdjpeg.dcm")
			if out, err := dicomtest.RunErr("dcmcjpeg", "+el", "+sv", fmt.Sprint(s.sv), "+pt", "0", s.original, s.jpeg); err != nil {
				errs[i] = fmt.Errorf("dcmcjpeg %s: %v\n%s", s.name, err, out)
				return
			}
			if out, err := dicomtest.RunErr("dcmdjpeg", s.jpeg, refs[i]); err != nil {
				errs[i] = fmt.Errorf("dcmdjpeg %s: %v\n%s", s.name, err, out)
			}
		}()
	}
	wg.Wait()
	for i := range samples {
		s := &samples[i]
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		b, err := os.ReadFile(s.jpeg)
		if err != nil {
			t.Fatal(err)
		}
		f, err := dicom.Parse(bytes.NewReader(b), allValuesOptions)
		if err != nil {
			t.Fatal(err)
		}
		pd := f.DataSet.Get(dicom.PixelData)
		if f.TransferSyntaxUID != dicom.JPEGLossless || pd == nil || len(pd.Fragments) != 1+s.frames {
			t.Fatalf("%s: dcmcjpeg wrote transfer syntax %s with pixel data %v, want %s in %d fragments after the offset table",
				s.name, f.TransferSyntaxUID, pd != nil, dicom.JPEGLossless, s.frames)
		}
		for n, fr := range pd.Fragments[1:] {
			p, sv, pt, err := jpegLosslessParams(fr.Data)
			if err != nil || sv != s.sv || pt != 0 || p != s.precision {
				t.Fatalf("%s frame %d: SOF3 precision %d, SOS selection value %d and point transform %d (%v); want %d, %d and 0",
					s.name, n+1, p, sv, pt, err, s.precision, s.sv)
			}
		}
		ref, err := os.ReadFile(refs[i])
		if err != nil {
			t.Fatal(err)
		}
		orig, err := os.ReadFile(s.original)
		if err != nil {
			t.Fatal(err)
		}
		s.ref = pixelsOf(t, ref).pixels
		if want := pixelsOf(t, orig).pixels; !bytes.Equal(s.ref, want) {
			t.Fatalf("%s: dcmdjpeg's decode differs from the original at byte %d: the compression was not lossless", s.name, firstDiff(s.ref, want))
		}
	}
	return samples
}

// jpegLosslessParams reads, from a lossless JPEG stream, the sample precision of its SOF3 and the selection value
// (Ss) and point transform (Al) of its first SOS (T.81 B.2.2, B.2.3, H.1.1).
func jpegLosslessParams(b []byte) (precision, sv, pt int, err error) {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 0, 0, 0, fmt.Errorf("no SOI")
	}
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xFF {
			return 0, 0, 0, fmt.Errorf("no marker at byte %d", i)
		}
		marker, n := b[i+1], int(binary.BigEndian.Uint16(b[i+2:]))
		seg := b[i+4 : min(len(b), i+2+n)]
		switch marker {
		case 0xC3:
			if len(seg) < 1 {
				return 0, 0, 0, fmt.Errorf("short SOF3")
			}
			precision = int(seg[0])
		case 0xDA:
			if len(seg) < 1 || len(seg) < 1+2*int(seg[0])+3 {
				return 0, 0, 0, fmt.Errorf("short SOS")
			}
			k := 1 + 2*int(seg[0])
			return precision, int(seg[k]), int(seg[k+2] & 0x0F), nil
		}
		i += 2 + n
	}
	return 0, 0, 0, fmt.Errorf("no SOS")
}

// receivedPixels is what a peer got: the transfer syntax, the SOP Instance UID and the native Pixel Data.
type receivedPixels struct {
	ts, sop string
	pixels  []byte
}

var allValuesOptions = dicom.ReadOptions{BulkThreshold: 1 << 30, MaxDepth: 16, MaxHeaderBytes: 1 << 30, MaxInflated: 1 << 30}

// pixelsOf parses a Part 10 file with every value loaded.
func pixelsOf(t *testing.T, b []byte) receivedPixels {
	t.Helper()
	f, err := dicom.Parse(bytes.NewReader(b), allValuesOptions)
	if err != nil {
		t.Fatal(err)
	}
	return receivedPixels{ts: f.TransferSyntaxUID, sop: f.DataSet.String(dicom.SOPInstanceUID), pixels: pixelValue(f.DataSet)}
}

// pixelValue is the native Pixel Data value, or nil when there is none or it is encapsulated.
func pixelValue(ds *dicom.DataSet) []byte {
	if pd := ds.Get(dicom.PixelData); pd != nil && !pd.Encapsulated() {
		return pd.Value
	}
	return nil
}

// firstDiff is the first byte at which a and b differ (the shorter length when one is a prefix of the other).
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
