package dicomweb_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pydicomFiles returns pydicom's test files as Debian installs them (python3-pydicom), or skips.
func pydicomFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"/usr/lib/python3/dist-packages/pydicom/data/test_files", "/usr/lib/python3/dist-packages/pydicom/data/charset_files"} {
		m, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Skip("pydicom's sample files are not installed (Debian python3-pydicom; scripts/setup installs it)")
	}
	return files
}

// TestPydicomCorpus stores every sample file pydicom ships, one request each, the way a clinic would upload a folder
// of files from many vendors: each is either stored and then returned byte for byte, or refused with a reason — never
// a server error — and a refused file leaves nothing behind.
func TestPydicomCorpus(t *testing.T) {
	e := newEnv(t)
	stored := 0
	for _, path := range pydicomFiles(t) {
		name := filepath.Base(path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		status, body := e.stow(data)
		var resp map[string]struct {
			Value []any
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			if status >= 500 {
				t.Errorf("%s: server error %d: %s", name, status, body)
			}
			continue
		}
		switch status {
		case 200, 202:
			ok := resp["00081199"].Value
			if len(ok) != 1 {
				t.Errorf("%s: status %d but %d stored: %s", name, status, len(ok), body)
				continue
			}
			url := ok[0].(map[string]any)["00081190"].(map[string]any)["Value"].([]any)[0].(string)
			st, ct, b := e.get(url, `multipart/related; type="application/dicom"; transfer-syntax=*`)
			if st != 200 {
				t.Errorf("%s: stored but WADO-RS gives %d: %s", name, st, b)
				continue
			}
			got, _ := parts(t, ct, b)
			want := data
			if status == 202 && (bytes.HasPrefix(data, []byte("MZ")) || bytes.HasPrefix(data, []byte("\x7fELF"))) {
				want = append(make([]byte, 128), data[128:]...)
			}
			if len(got) != 1 || sha256.Sum256(got[0]) != sha256.Sum256(want) {
				t.Errorf("%s: the retrieved bytes differ from the stored ones", name)
			}
			stored++
		case 409:
			failed := resp["00081198"].Value
			if len(failed) != 1 || failed[0].(map[string]any)["00081197"] == nil {
				t.Errorf("%s: refused without a FailureReason: %s", name, body)
				continue
			}
			t.Logf("%s refused: %v", name, failed[0].(map[string]any)["00000902"])
		default:
			t.Errorf("%s: unexpected status %d: %s", name, status, body)
		}
	}
	if stored < 40 {
		t.Errorf("only %d of pydicom's sample files were stored; most are valid DICOM", stored)
	}
	// Refused files left no blob behind: every blob file belongs to a stored instance.
	var blobs int
	filepath.WalkDir(filepath.Join(e.dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, string(filepath.Separator)+"tmp"+string(filepath.Separator)) {
			blobs++
		}
		return nil
	})
	if blobs > stored {
		t.Errorf("%d blob files for %d stored instances: refused uploads left files behind", blobs, stored)
	}
	t.Logf("%d files stored", stored)
}
