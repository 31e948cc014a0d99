package dicomtest_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/internal/dicomtest"
)

func TestCT(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		write  func(string, dicomtest.CTOptions) error
		o      dicomtest.CTOptions
		frames int
	}{
		{"ct default size", dicomtest.CT, dicomtest.CTOptions{Seed: 7, InstanceNumber: 3}, 1},
		{"ct small, utf-8 name", dicomtest.CT, dicomtest.CTOptions{Seed: 7, InstanceNumber: 4, Rows: 64, Cols: 48, PatientID: "X1", PatientName: "Yamada^Tarou=山田^太郎"}, 1},
		{"ct given uids", dicomtest.CT, dicomtest.CTOptions{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.4", SOPInstanceUID: "1.2.3.4.5", Rows: 32, Cols: 32}, 1},
		{"multi-frame", dicomtest.MultiFrame, dicomtest.CTOptions{Seed: 8, Rows: 40, Cols: 30, Frames: 5}, 5},
		{"ct 12 bits", dicomtest.CT, dicomtest.CTOptions{Seed: 7, InstanceNumber: 5, Rows: 40, Cols: 30, BitsStored: 12}, 1},
		{"multi-frame 8 bits", dicomtest.MultiFrame, dicomtest.CTOptions{Seed: 8, Rows: 40, Cols: 30, Frames: 3, BitsStored: 8}, 3},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strconv.Itoa(i)+".dcm")
			if err := tt.write(path, tt.o); err != nil {
				t.Fatal(err)
			}
			rows, cols := orDefault(tt.o.Rows, 512), orDefault(tt.o.Cols, 512)
			bits := orDefault(tt.o.BitsStored, 16)
			m := dump(t, path, "+U8")
			want := map[string]string{
				"0002,0010": "1.2.840.10008.1.2.1",
				"0028,0010": strconv.Itoa(rows),
				"0028,0011": strconv.Itoa(cols),
				"0028,0100": strconv.Itoa(max(bits, 16)),
				"0028,0101": strconv.Itoa(bits),
				"0028,0102": strconv.Itoa(bits - 1),
				"0028,0103": "1",
			}
			bytesPerSample := 2
			switch bits {
			case 12:
				want["0028,0103"] = "0"
			case 8:
				want["0028,0100"], want["0028,0103"], want["0008,0016"] = "8", "0", "1.2.840.10008.5.1.4.1.1.7.2"
				bytesPerSample = 1
			}
			if tt.o.SOPInstanceUID != "" {
				want["0008,0018"], want["0020,000d"], want["0020,000e"] = tt.o.SOPInstanceUID, tt.o.StudyInstanceUID, tt.o.SeriesInstanceUID
			}
			if tt.o.PatientName != "" {
				want["0010,0010"], want["0010,0020"], want["0008,0005"] = tt.o.PatientName, tt.o.PatientID, "ISO_IR 192"
			}
			if tt.frames > 1 {
				want["0028,0008"] = strconv.Itoa(tt.frames)
			}
			got := map[string]string{}
			for k := range want {
				got[k] = m[k]
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("dcmdump (-want +got):\n%s", d)
			}
			if m["0002,0003"] != m["0008,0018"] {
				t.Errorf("MediaStorageSOPInstanceUID %s != SOPInstanceUID %s", m["0002,0003"], m["0008,0018"])
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if px := int64(rows * cols * bytesPerSample * tt.frames); fi.Size() < px || fi.Size() > px+4096 {
				t.Errorf("file is %d bytes for %d bytes of pixel data", fi.Size(), px)
			}
		})
	}

	// Instances of one seed share study and series and differ in SOP Instance UID; another seed is another study.
	uids := func(seed int64, n int) map[string]string {
		path := filepath.Join(dir, "u.dcm")
		if err := dicomtest.CT(path, dicomtest.CTOptions{Seed: seed, InstanceNumber: n, Rows: 16, Cols: 16}); err != nil {
			t.Fatal(err)
		}
		return dump(t, path)
	}
	a, b, c := uids(1, 1), uids(1, 2), uids(2, 1)
	if a["0020,000d"] != b["0020,000d"] || a["0020,000e"] != b["0020,000e"] || a["0008,0018"] == b["0008,0018"] ||
		a["0020,000d"] == c["0020,000d"] || a["0008,0018"] == c["0008,0018"] {
		t.Errorf("UIDs: seed 1 #1 %v, seed 1 #2 %v, seed 2 #1 %v", a, b, c)
	}
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func TestCTInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.dcm")
	for name, o := range map[string]dicomtest.CTOptions{
		"frames":  {Frames: 2},
		"rows":    {Rows: 70000},
		"columns": {Cols: 1},
		"8 bits":  {BitsStored: 8, Rows: 16, Cols: 16}, // CT allocates 16 bits (PS3.3 C.8.2.1.1.4)
		"10 bits": {BitsStored: 10, Rows: 16, Cols: 16},
	} {
		if err := dicomtest.CT(path, o); err == nil {
			t.Errorf("%s: CT(%+v) succeeded", name, o)
		}
	}
	if err := dicomtest.MultiFrame(path, dicomtest.CTOptions{Frames: 9000}); err == nil {
		t.Error("MultiFrame of 9000 512×512 frames (>4 GiB) succeeded")
	}
}

func BenchmarkCT(b *testing.B) {
	dir := b.TempDir()
	b.SetBytes(512 * 512 * 2)
	for i := 0; b.Loop(); i++ {
		if err := dicomtest.CT(filepath.Join(dir, "ct.dcm"), dicomtest.CTOptions{Seed: 1, InstanceNumber: i}); err != nil {
			b.Fatal(err)
		}
	}
}

// The 12- and 8-bit forms hold the same image as the 16-bit one: padding (negative) becomes 0, 8 bits keep the top
// 8 of the 12.
func TestCTBits(t *testing.T) {
	dir := t.TempDir()
	const rows, cols = 24, 20
	pixels := func(write func(string, dicomtest.CTOptions) error, bits, bytesPerSample int) []byte {
		path := filepath.Join(dir, strconv.Itoa(bits)+".dcm")
		if err := write(path, dicomtest.CTOptions{Seed: 3, InstanceNumber: 2, Rows: rows, Cols: cols, BitsStored: bits}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b[len(b)-rows*cols*bytesPerSample:] // Pixel Data is the last element
	}
	p16, p12, p8 := pixels(dicomtest.CT, 16, 2), pixels(dicomtest.CT, 12, 2), pixels(dicomtest.MultiFrame, 8, 1)
	var padding int
	for i := range rows * cols {
		v16 := int(int16(binary.LittleEndian.Uint16(p16[2*i:])))
		v12 := int(binary.LittleEndian.Uint16(p12[2*i:]))
		if v16 < 0 {
			padding++
		}
		if want := max(0, v16); v12 != want || v12 > 4095 {
			t.Fatalf("pixel %d: 12-bit %d, 16-bit %d", i, v12, v16)
		}
		if int(p8[i]) != v12>>4 {
			t.Fatalf("pixel %d: 8-bit %d, 12-bit %d", i, p8[i], v12)
		}
	}
	if padding == 0 {
		t.Error("no padding outside the body: the 16-bit image is not the CT-like one")
	}
}
