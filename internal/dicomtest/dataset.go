// Package dicomtest generates DICOM Part 10 test data: a small data set covering the modalities, pixel
// formats, transfer syntaxes and Japanese character sets the archive must handle, compressed by the real
// tools (dcmtk, GDCM), and a fast pure-Go writer of CT-like files for benchmarks.
//
// It is test support: other packages call it from their tests and from the benchmark command. Everything it
// writes is deterministic (UIDs come from UID, pixels from a seeded hash), so two calls give the same data.
package dicomtest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// Sample is one generated file.
type Sample struct {
	Name string // e.g. "ct-explicit-le", "ct-jpeg-lossless", "us-multiframe-rle"
	Path string

	TransferSyntaxUID, SOPClassUID, SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID, PatientID string

	IssuerOfPatientID    string // "" when the file has none
	PatientName          string // as UTF-8; the file holds it in SpecificCharacterSet
	SpecificCharacterSet string // the value of (0008,0005), backslash-separated; "" when absent (ASCII)
	Modality             string
	Rows, Columns        int
	Frames               int
	Lossy                bool
	// Source names the uncompressed sample with the same pixels that this one was converted from (its
	// decoded pixel data equals Source's exactly unless Lossy); "" for samples written directly.
	Source string
}

// tool is an external program Dataset runs, and the Debian package that provides it.
type tool struct{ name, pkg string }

var (
	dcmconv  = tool{"dcmconv", "dcmtk"}
	dcmcjpeg = tool{"dcmcjpeg", "dcmtk"}
	dcmcjpls = tool{"dcmcjpls", "dcmtk"}
	dcmcrle  = tool{"dcmcrle", "dcmtk"}
	gdcmconv = tool{"gdcmconv", "libgdcm-tools"}
)

// variant is one transfer syntax a base image is converted to, and how.
type variant struct {
	suffix string // appended to the base name: "ct" + "-jpeg-ls"
	ts     string
	tool   tool
	args   []string // before input and output file names
	lossy  bool
}

var (
	explicitLE   = variant{suffix: "-explicit-le", ts: tsExplicitLE}
	implicitLE   = variant{"-implicit-le", tsImplicitLE, dcmconv, []string{"+ti"}, false}
	explicitBE   = variant{"-explicit-be", tsExplicitBE, dcmconv, []string{"+tb"}, false}
	deflated     = variant{"-deflated", tsDeflated, dcmconv, []string{"+td"}, false}
	jpegLossless = variant{"-jpeg-lossless", tsJPEGLossless, dcmcjpeg, nil, false} // dcmcjpeg's default: process 14 SV1
	// The 12-bit extended process (lossy), which Go's image/jpeg cannot decode.
	jpegExtended = variant{"-jpeg-extended", tsJPEGExt12, dcmcjpeg, []string{"+ee", "+un"}, true}
	// The base file already has its own SOP Instance UID, so dcmcjpeg need not invent one (+un) and the
	// data set stays reproducible; dcmcjpeg still records the lossy compression in (0028,2110) and (0028,2114).
	jpegBaseline = variant{"-jpeg-baseline", tsJPEGBaseline, dcmcjpeg, []string{"+eb", "+un"}, true}
	jpegLS       = variant{"-jpeg-ls", tsJPEGLS, dcmcjpls, []string{"+un"}, false}
	rle          = variant{"-rle", tsRLE, dcmcrle, []string{"+un"}, false}
	j2k          = variant{"-j2k", tsJ2KLossless, gdcmconv, []string{"--j2k"}, false}
)

// Dataset writes the round-trip dataset into dir and returns its samples: 33 files, five studies, four patients.
//
//   - Study 1, patient P0001 issued by HOSP_A, "\ISO 2022 IR 87" (PS3.5 H.3.1 name): CT 128×128 16-bit signed
//     with RescaleIntercept -1024 and PixelPaddingValue, in explicit and implicit VR little endian, explicit VR
//     big endian, deflated, JPEG lossless, JPEG-LS, RLE and JPEG 2000 lossless.
//   - Study 2, the same patient, "ISO 2022 IR 13\ISO 2022 IR 87" (H.3.2 name, half-width katakana): MR 128×96
//     16-bit unsigned (values above 32767), uncompressed, JPEG lossless, JPEG-LS, JPEG 2000.
//   - Study 3, patient P0001 issued by HOSP_B (another person), "ISO_IR 192" with the variant kanji 髙:
//     CR 160×128 MONOCHROME1 12 bits in 16 (uncompressed, JPEG lossless, JPEG-LS, JPEG extended 12-bit); US multi-frame 10 frames
//     64×80 RGB (uncompressed, RLE, JPEG baseline); US PALETTE COLOR 64×64 (uncompressed, RLE).
//   - Study 4, patient P0002 without issuer, "ISO_IR 100": secondary capture 96×128 RGB, PlanarConfiguration 0
//     (uncompressed, JPEG baseline, JPEG lossless, JPEG-LS, RLE, JPEG 2000) and 1 (uncompressed, RLE).
//   - Study 5, patient P0003, no Specific Character Set: secondary capture 64×96 signed, 12 bits stored
//     sign-extended in 16 (uncompressed, RLE, JPEG-LS, JPEG lossless).
//
// Every sample has its own SOP Instance UID (each converted copy is made from a base file written with its
// own UID), so all can be stored in one archive. A tool missing from PATH is an error that wraps
// exec.ErrNotFound and names the Debian package to install; a tool that fails or writes an unexpected
// transfer syntax or SOP Instance UID is an error too.
func Dataset(dir string) ([]Sample, error) {
	for _, t := range []tool{dcmconv, dcmcjpeg, dcmcjpls, dcmcrle, gdcmconv} {
		if _, err := exec.LookPath(t.name); err != nil {
			return nil, fmt.Errorf("dicomtest: %s not found in PATH, install the Debian package %s: %w", t.name, t.pkg, err)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".dicomtest-")
	if err != nil {
		return nil, fmt.Errorf("dicomtest: %w", err)
	}
	defer os.RemoveAll(tmp)

	type job struct {
		in string
		v  variant
		i  int // index in samples
	}
	var samples []Sample
	var jobs []job
	for _, se := range allSeries() {
		for n, v := range se.variants {
			s := se.sample(v)
			s.Path = filepath.Join(dir, s.Name+".dcm")
			in := s.Path
			if v.tool.name != "" {
				in = filepath.Join(tmp, s.Name+".dcm")
				s.Source = se.name + explicitLE.suffix
				jobs = append(jobs, job{in: in, v: v, i: len(samples)})
			}
			if err := se.write(in, s, n+1); err != nil {
				return nil, fmt.Errorf("dicomtest: write %s: %w", s.Name, err)
			}
			samples = append(samples, s)
		}
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, max(2, runtime.NumCPU()))
	)
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			s := &samples[j.i]
			if err := convert(j.v, j.in, s.Path, s); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("dicomtest: %s: %w", s.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return samples, nil
}

// convert runs v's tool on in, writing out, and checks the File Meta Information of the result.
func convert(v variant, in, out string, s *Sample) error {
	args := append(append([]string{}, v.args...), in, out)
	cmd := exec.Command(v.tool.name, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", v.tool.name, strings.Join(args, " "), err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, _ := f.Read(head)
	meta, err := readMeta(head[:n])
	if err != nil {
		return fmt.Errorf("%s wrote %s: %w", v.tool.name, out, err)
	}
	if got := meta[0x00020010]; got != v.ts {
		return fmt.Errorf("%s wrote transfer syntax %q, want %q", v.tool.name, got, v.ts)
	}
	if got := meta[0x00020003]; got != s.SOPInstanceUID {
		return fmt.Errorf("%s wrote SOP Instance UID %q, want %q", v.tool.name, got, s.SOPInstanceUID)
	}
	return nil
}

// write writes the base file of sample s, uncompressed in explicit VR little endian.
func (se *series) write(path string, s Sample, instanceNumber int) error {
	d := &dataset{cs: se.study.cs}
	se.study.attrs(d)
	d.str(0x00080016, "UI", s.SOPClassUID)
	d.str(0x00080018, "UI", s.SOPInstanceUID)
	d.str(0x00080060, "CS", se.img.modality)
	d.str(0x0020000E, "UI", s.SeriesInstanceUID)
	d.is(0x00200011, se.number)
	d.text(0x0008103E, "LO", se.description)
	d.str(0x00080021, "DA", se.study.date)
	d.str(0x00080031, "TM", se.study.time)
	d.str(0x00080023, "DA", se.study.date)
	d.str(0x00080033, "TM", se.study.time)
	d.is(0x00200013, instanceNumber)
	d.text(0x00080070, "LO", "renkei")
	d.text(0x00081090, "LO", "dicomtest")
	se.img.attrs(d)
	if se.img.frames > 1 {
		d.is(0x00280008, se.img.frames)
	}
	d.add(0x7FE00010, se.img.pixelVR(), se.img.pixels())
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	err = writePart10(w, s.SOPClassUID, s.SOPInstanceUID, d)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
