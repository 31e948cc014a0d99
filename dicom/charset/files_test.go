package charset_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom/charset"
)

// pydicomCharsetDir finds the character set example files that ship with pydicom (most of them David Clunie's),
// as Debian's python3-pydicom or pip installs them.
func pydicomCharsetDir(t *testing.T) string {
	t.Helper()
	for _, pattern := range []string{
		"/usr/lib/python3/dist-packages/pydicom/data/charset_files",
		"/usr/lib/python3*/*-packages/pydicom/data/charset_files",
		"/usr/local/lib/python3*/*-packages/pydicom/data/charset_files",
	} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0]
		}
	}
	t.Skip("pydicom's charset_files not installed")
	return ""
}

// scanExplicitLE walks the top level of a Part 10 file in Explicit VR Little Endian and returns the raw values of
// the wanted tags. It is a crude reader for these test files only: it stops at the first undefined length.
func scanExplicitLE(b []byte, want ...uint32) map[uint32][]byte {
	got := map[uint32][]byte{}
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return got
	}
	for i := 132; i+8 <= len(b); {
		tag := uint32(binary.LittleEndian.Uint16(b[i:]))<<16 | uint32(binary.LittleEndian.Uint16(b[i+2:]))
		vr := string(b[i+4 : i+6])
		var n, hdr int
		switch vr {
		case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
			if i+12 > len(b) {
				return got
			}
			n, hdr = int(binary.LittleEndian.Uint32(b[i+8:])), 12
		default:
			n, hdr = int(binary.LittleEndian.Uint16(b[i+6:])), 8
		}
		if n == 0xffffffff || i+hdr+n > len(b) {
			return got
		}
		for _, w := range want {
			if tag == w {
				got[tag] = b[i+hdr : i+hdr+n]
			}
		}
		i += hdr + n
	}
	return got
}

func TestPydicomCharsetFiles(t *testing.T) {
	dir := pydicomCharsetDir(t)
	// Expected names as pydicom's tests/test_charset.py has them (FILE_PATIENT_NAMES), with the trailing empty
	// component group that pydicom drops and the padding kept.
	cases := []struct{ file, want string }{
		{"chrArab", "قباني^لنزار "},
		{"chrFren", "Buc^Jérôme"},
		{"chrFrenMulti", "Buc^Jérôme"},
		{"chrGerm", "Äneas^Rüdiger "},
		{"chrGreek", "Διονυσιος "},
		{"chrH31", "Yamada^Tarou=山田^太郎=やまだ^たろう"},
		{"chrH32", "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"},
		{"chrHbrw", "שרון^דבורה"},
		{"chrI2", "Hong^Gildong=洪^吉洞=홍^길동"},
		{"chrJapMulti", "やまだ^たろう "},
		{"chrJapMultiExplicitIR6", "やまだ^たろう "},
		{"chrKoreanMulti", "김희중 "},
		{"chrRuss", "Люкceмбypг"},
		{"chrX1", "Wang^XiaoDong=王^小東= "},
		{"chrX2", "Wang^XiaoDong=王^小东="},
	}
	const specificCharacterSet, patientName = 0x00080005, 0x00100010
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tc.file+".dcm"))
			if err != nil {
				t.Skip(err)
			}
			el := scanExplicitLE(b, specificCharacterSet, patientName)
			pn, ok := el[patientName]
			if !ok {
				t.Fatal("no (0010,0010) found")
			}
			var terms []string
			if cs, ok := el[specificCharacterSet]; ok {
				terms = strings.Split(strings.TrimRight(string(cs), " \x00"), `\`)
			}
			got, ok := charset.New(terms, "").Decode(pn, "PN")
			if diff := cmp.Diff(tc.want, got); diff != "" || !ok {
				t.Errorf("terms %q: ok = %v, (-want +got):\n%s", terms, ok, diff)
			}
		})
	}
}
