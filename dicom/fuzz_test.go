package dicom_test

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
	"renkei/internal/dicomtest"
)

// FuzzParse feeds Parse any bytes with the archive's limits. It must not panic; it must take memory in proportion to
// the input (or, for a deflated data set, within the limits); a seekable source and a stream of the same bytes must
// parse alike; and every value it reports must lie inside the input.
//
//	go test -run XXX -fuzz FuzzParse -fuzztime 60s ./dicom
func FuzzParse(f *testing.F) {
	for _, seed := range parseSeeds(f) {
		f.Add(seed)
	}
	deflatedUID := []byte(dicom.DeflatedExplicitVRLittleEndian)
	f.Fuzz(func(t *testing.T, in []byte) {
		var (
			file *dicom.File
			err  error
		)
		n := allocated(func() { file, err = dicom.Parse(bytes.NewReader(in), dicom.DefaultReadOptions) })
		// Two 64 KiB read buffers, a flate reader, and a few hundred bytes per input byte for elements.
		limit := 1<<20 + 400*uint64(len(in))
		if bytes.Contains(in, deflatedUID) {
			limit = 4 * uint64(dicom.DefaultReadOptions.MaxHeaderBytes)
		}
		if n > limit {
			t.Fatalf("a %d-byte input allocated %d bytes (limit %d)", len(in), n, limit)
		}
		file2, err2 := dicom.Parse(stream{bytes.NewReader(in)}, dicom.DefaultReadOptions)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("seekable source: %v; stream: %v", err, err2)
		}
		if err != nil {
			return
		}
		if diff := cmp.Diff(dump(file.DataSet), dump(file2.DataSet)); diff != "" {
			t.Fatalf("a seekable source and a stream parse differently (-seekable +stream):\n%s", diff)
		}
		if !dicom.ValidUID(file.TransferSyntaxUID) {
			t.Fatalf("parsed with transfer syntax %q", file.TransferSyntaxUID)
		}
		if !file.Deflated {
			inside(t, in, file.DataSet)
		}
	})
}

// inside checks that every value and fragment of ds lies within the input it was parsed from.
func inside(t *testing.T, in []byte, ds *dicom.DataSet) {
	t.Helper()
	size := int64(len(in))
	for _, e := range ds.Elements {
		for _, it := range e.Items {
			inside(t, in, it)
		}
		for _, fr := range e.Fragments {
			if fr.Offset < 0 || fr.Offset+int64(fr.Length) > size {
				t.Fatalf("%s: fragment at %d+%d lies outside the %d-byte input", e.Tag, fr.Offset, fr.Length, size)
			}
		}
		if e.Items == nil && e.Fragments == nil && (e.Offset < 0 || e.Offset+int64(e.Length) > size) {
			t.Fatalf("%s: value at %d+%d lies outside the %d-byte input", e.Tag, e.Offset, e.Length, size)
		}
		if e.Value != nil && len(e.Value) != int(e.Length) {
			t.Fatalf("%s: %d bytes loaded for length %d", e.Tag, len(e.Value), e.Length)
		}
	}
}

// parseSeeds are real files from dicomtest.CT and hand-made edge cases.
func parseSeeds(tb testing.TB) [][]byte {
	dir := tb.TempDir()
	var seeds [][]byte
	for i, o := range []dicomtest.CTOptions{
		{Rows: 4, Cols: 4, Seed: 1},
		{Rows: 16, Cols: 8, Seed: 2, PatientName: "山田^太郎"},
	} {
		path := filepath.Join(dir, "ct"+string(rune('a'+i))+".dcm")
		if err := dicomtest.CT(path, o); err != nil {
			tb.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	item := explicitLE().str(dicom.SeriesInstanceUID, "UI", "1.2.3.1")
	seeds = append(seeds,
		part10(dicom.ExplicitVRLittleEndian, header(explicitLE()).sq(refSeriesSeq, false, false, item, explicitLE()).sq(contentSeq, true, true, item).b),
		part10(dicom.ImplicitVRLittleEndian, header(implicitLE()).header(privateData, "", dicom.UndefinedLength).item(0).seqEnd().b),
		part10(dicom.ExplicitVRBigEndian, header(explicitBE()).el(dicom.PixelData, "OW", []byte{1, 2, 3, 4}).b),
		part10(dicom.ExplicitVRLittleEndian, explicitLE().header(refSeriesSeq, "UN", dicom.UndefinedLength).
			raw(implicitLE().item(dicom.UndefinedLength).str(dicom.SeriesInstanceUID, "UI", "1.2.3").itemEnd().seqEnd().b...).b),
		part10(dicom.JPEGBaseline8Bit, header(explicitLE()).header(dicom.PixelData, "OB", dicom.UndefinedLength).
			item(4).raw(binary.LittleEndian.AppendUint32(nil, 0)...).item(4).raw(0xFF, 0xD8, 0xFF, 0xD9).seqEnd().b),
		part10(dicom.ExplicitVRLittleEndian, explicitLE().header(dicom.PatientName, "PN", 100).raw('D', 'o', 'e').b),
	)
	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, flate.BestCompression)
	zw.Write(header(explicitLE()).b)
	zw.Close()
	seeds = append(seeds, part10(dicom.DeflatedExplicitVRLittleEndian, z.Bytes()), append(make([]byte, 128), "DICM"...), nil)
	return seeds
}
