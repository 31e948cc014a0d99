package dicomtest_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei/internal/dicomtest"
)

// Transfer syntax UIDs, PS3.6 Table A-1.
const (
	implicitLE   = "1.2.840.10008.1.2"
	explicitLE   = "1.2.840.10008.1.2.1"
	deflated     = "1.2.840.10008.1.2.1.99"
	explicitBE   = "1.2.840.10008.1.2.2"
	jpegBaseline = "1.2.840.10008.1.2.4.50"
	jpegLossless = "1.2.840.10008.1.2.4.70"
	jpegLS       = "1.2.840.10008.1.2.4.80"
	j2k          = "1.2.840.10008.1.2.4.90"
	rle          = "1.2.840.10008.1.2.5"
)

// The PatientName bytes of PS3.5 H.3.1 and H.3.2, as the standard prints them.
var (
	h31 = "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"
	h32 = "\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J"
)

func TestDataset(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	samples, err := dicomtest.Dataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Dataset: %d samples in %v", len(samples), time.Since(start))

	type row struct {
		Name, TS, Charset, Source string
		Frames                    int
		Lossy                     bool
	}
	const (
		jis  = `\ISO 2022 IR 87`
		kana = `ISO 2022 IR 13\ISO 2022 IR 87`
		utf8 = "ISO_IR 192"
		l1   = "ISO_IR 100"
	)
	want := []row{
		{"ct-explicit-le", explicitLE, jis, "", 1, false},
		{"ct-implicit-le", implicitLE, jis, "ct-explicit-le", 1, false},
		{"ct-explicit-be", explicitBE, jis, "ct-explicit-le", 1, false},
		{"ct-deflated", deflated, jis, "ct-explicit-le", 1, false},
		{"ct-jpeg-lossless", jpegLossless, jis, "ct-explicit-le", 1, false},
		{"ct-jpeg-ls", jpegLS, jis, "ct-explicit-le", 1, false},
		{"ct-rle", rle, jis, "ct-explicit-le", 1, false},
		{"ct-j2k", j2k, jis, "ct-explicit-le", 1, false},
		{"mr-explicit-le", explicitLE, kana, "", 1, false},
		{"mr-jpeg-lossless", jpegLossless, kana, "mr-explicit-le", 1, false},
		{"mr-jpeg-ls", jpegLS, kana, "mr-explicit-le", 1, false},
		{"mr-j2k", j2k, kana, "mr-explicit-le", 1, false},
		{"cr-explicit-le", explicitLE, utf8, "", 1, false},
		{"cr-jpeg-lossless", jpegLossless, utf8, "cr-explicit-le", 1, false},
		{"cr-jpeg-ls", jpegLS, utf8, "cr-explicit-le", 1, false},
		{"cr-jpeg-extended", "1.2.840.10008.1.2.4.51", utf8, "cr-explicit-le", 1, true},
		{"us-multiframe-explicit-le", explicitLE, utf8, "", 10, false},
		{"us-multiframe-rle", rle, utf8, "us-multiframe-explicit-le", 10, false},
		{"us-multiframe-jpeg-baseline", jpegBaseline, utf8, "us-multiframe-explicit-le", 10, true},
		{"us-palette-explicit-le", explicitLE, utf8, "", 1, false},
		{"us-palette-rle", rle, utf8, "us-palette-explicit-le", 1, false},
		{"sc-rgb-explicit-le", explicitLE, l1, "", 1, false},
		{"sc-rgb-jpeg-baseline", jpegBaseline, l1, "sc-rgb-explicit-le", 1, true},
		{"sc-rgb-jpeg-lossless", jpegLossless, l1, "sc-rgb-explicit-le", 1, false},
		{"sc-rgb-jpeg-ls", jpegLS, l1, "sc-rgb-explicit-le", 1, false},
		{"sc-rgb-rle", rle, l1, "sc-rgb-explicit-le", 1, false},
		{"sc-rgb-j2k", j2k, l1, "sc-rgb-explicit-le", 1, false},
		{"sc-rgb-planar1-explicit-le", explicitLE, l1, "", 1, false},
		{"sc-rgb-planar1-rle", rle, l1, "sc-rgb-planar1-explicit-le", 1, false},
		{"sc-signed12-explicit-le", explicitLE, "", "", 1, false},
		{"sc-signed12-rle", rle, "", "sc-signed12-explicit-le", 1, false},
		{"sc-signed12-jpeg-ls", jpegLS, "", "sc-signed12-explicit-le", 1, false},
		{"sc-signed12-jpeg-lossless", jpegLossless, "", "sc-signed12-explicit-le", 1, false},
	}
	var got []row
	byName := map[string]dicomtest.Sample{}
	uids := map[string]string{}
	studies, issuers := map[string]bool{}, map[string]bool{}
	for _, s := range samples {
		got = append(got, row{s.Name, s.TransferSyntaxUID, s.SpecificCharacterSet, s.Source, s.Frames, s.Lossy})
		byName[s.Name] = s
		if other, dup := uids[s.SOPInstanceUID]; dup {
			t.Errorf("%s and %s share SOP Instance UID %s", s.Name, other, s.SOPInstanceUID)
		}
		uids[s.SOPInstanceUID] = s.Name
		studies[s.StudyInstanceUID] = true
		if s.PatientID == "P0001" {
			issuers[s.IssuerOfPatientID] = true
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("samples (-want +got):\n%s", d)
	}
	if len(studies) != 5 || len(issuers) != 2 {
		t.Errorf("%d studies and %d issuers of P0001, want 5 and 2", len(studies), len(issuers))
	}

	raw := t.TempDir() // decompressed copies and pixel data written by dcmdump +W
	for _, s := range samples {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			checkSample(t, s, raw)
			if s.Source != "" && !s.Lossy {
				checkLossless(t, s, byName[s.Source], raw)
			}
		})
	}
}

func checkSample(t *testing.T, s dicomtest.Sample, raw string) {
	m := dump(t, s.Path)
	frames := ""
	if s.Frames > 1 {
		frames = strconv.Itoa(s.Frames)
	}
	lossy := "" // absent in the originals; dcmcjpeg records lossy compression, PS3.3 C.7.6.1.1.5
	if s.Lossy {
		lossy = "01"
	}
	want := map[string]string{
		"0002,0003": s.SOPInstanceUID,
		"0002,0010": s.TransferSyntaxUID,
		"0008,0005": s.SpecificCharacterSet,
		"0008,0016": s.SOPClassUID,
		"0008,0018": s.SOPInstanceUID,
		"0008,0060": s.Modality,
		"0010,0020": s.PatientID,
		"0010,0021": s.IssuerOfPatientID,
		"0020,000d": s.StudyInstanceUID,
		"0020,000e": s.SeriesInstanceUID,
		"0028,0008": frames,
		"0028,0010": strconv.Itoa(s.Rows),
		"0028,0011": strconv.Itoa(s.Columns),
		"0028,2110": lossy,
	}
	got := map[string]string{}
	for k := range want {
		got[k] = m[k]
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("dcmdump %s (-want +got):\n%s", s.Name, d)
	}

	// Dcmtk here converts with iconv, which has no ISO 2022 IR 87 with code extensions: compare those bytes
	// with the standard's examples, and let dcmdump convert the others to UTF-8.
	switch s.SpecificCharacterSet {
	case `\ISO 2022 IR 87`:
		if got := m["0010,0010"]; got != h31 {
			t.Errorf("PatientName = %q, want PS3.5 H.3.1 %q", got, h31)
		}
	case `ISO 2022 IR 13\ISO 2022 IR 87`:
		if got := m["0010,0010"]; got != h32 {
			t.Errorf("PatientName = %q, want PS3.5 H.3.2 %q", got, h32)
		}
	default:
		if got := dump(t, s.Path, "+U8")["0010,0010"]; got != s.PatientName {
			t.Errorf("PatientName via dcmdump +U8 = %q, want %q", got, s.PatientName)
		}
	}
}

// checkLossless decodes s with GDCM (a different toolkit from the dcmtk encoders) and compares its pixel data
// with that of the uncompressed source.
func checkLossless(t *testing.T, s, src dicomtest.Sample, raw string) {
	decoded := filepath.Join(raw, s.Name+".dcm")
	if b, err := exec.Command("gdcmconv", "--raw", s.Path, decoded).CombinedOutput(); err != nil {
		t.Fatalf("gdcmconv --raw %s: %v\n%s", s.Name, err, b)
	}
	got, gotPlanar := pixelData(t, decoded, raw)
	want, wantPlanar := pixelData(t, src.Path, filepath.Join(raw, s.Name+"-src"))
	if gotPlanar != wantPlanar {
		// GDCM decodes RLE to PlanarConfiguration 0 whatever the file says, PS3.5 G.2 encodes planes anyway.
		want = interleave(want, s.Rows*s.Columns, s.Frames)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s decoded differs from %s (%d and %d bytes)", s.Name, src.Name, len(got), len(want))
	}
}

// pixelData returns the native pixel data of path (written little endian by dcmdump +W) and its PlanarConfiguration.
func pixelData(t *testing.T, path, dir string) ([]byte, string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := dump(t, path, "+W", dir)
	b, err := os.ReadFile(filepath.Join(dir, filepath.Base(path)+".0.raw"))
	if err != nil {
		t.Fatal(err)
	}
	return b, m["0028,0006"]
}

// interleave converts 8-bit RGB frames from PlanarConfiguration 1 to 0.
func interleave(b []byte, pixels, frames int) []byte {
	out := make([]byte, len(b))
	for f := range frames {
		p := b[3*pixels*f : 3*pixels*(f+1)]
		o := out[3*pixels*f:]
		for i := range pixels {
			o[3*i], o[3*i+1], o[3*i+2] = p[i], p[pixels+i], p[2*pixels+i]
		}
	}
	return out
}

func TestDatasetMissingTool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := dicomtest.Dataset(t.TempDir())
	if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "Debian package dcmtk") {
		t.Errorf("Dataset without tools: %v, want exec.ErrNotFound naming the dcmtk package", err)
	}
}

func TestUID(t *testing.T) {
	a, b := dicomtest.UID("a"), dicomtest.UID("b")
	if a == b || a != dicomtest.UID("a") || !strings.HasPrefix(a, "2.25.") || len(a) > 64 {
		t.Errorf("UID(a) = %s, UID(b) = %s: want distinct, stable, 2.25 UIDs of at most 64 characters", a, b)
	}
}
