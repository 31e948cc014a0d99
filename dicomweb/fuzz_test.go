package dicomweb_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"renkei/archive"
	"renkei/blob/disk"
	"renkei/dicomweb"
	"renkei/internal/dicomtest"
	"renkei/sqlstore"
)

// fuzzHandler is the real DICOMweb handler on a SQLite file and a blob folder, for fuzz targets (newEnv takes a *T).
func fuzzHandler(f testing.TB) *dicomweb.Handler {
	f.Helper()
	dir := f.TempDir()
	db, err := sqlstore.Open(context.Background(), filepath.Join(dir, "index.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	blobs, err := disk.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		f.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return dicomweb.New(archive.New(db, blobs, logger), logger, "/dicomweb")
}

func fuzzCT(f testing.TB, o dicomtest.CTOptions) []byte {
	f.Helper()
	path := filepath.Join(f.TempDir(), "ct.dcm")
	if err := dicomtest.CT(path, o); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzSTOW posts a multipart body holding fuzzed bytes, with a fuzzed boundary and optionally gzip-encoded, through the
// real handler. Whatever arrives, the answer is never a server error other than 503, and never a panic.
//
// An input that is stored costs two fsyncs, so minimizing an interesting one can take minutes and starve the run:
// bound minimization.
//
//	go test -run XXX -fuzz FuzzSTOW -fuzztime 60s -fuzzminimizetime 20x ./dicomweb
func FuzzSTOW(f *testing.F) {
	h := fuzzHandler(f)
	ct := fuzzCT(f, dicomtest.CTOptions{Rows: 4, Cols: 4, Seed: 1})
	mz := append([]byte("MZ"), ct[2:]...)
	f.Add("boundary", ct, false)
	f.Add("b", mz, true)
	f.Add("a'()+_,-./:=? b", ct[:len(ct)/2], false)
	f.Add(strings.Repeat("x", 70), ct[:140], false)
	f.Add("", ct, false)
	f.Add("--", []byte("\r\n--\r\n"), false)
	f.Add("xyz", []byte("not DICOM at all"), true)
	f.Add("q", []byte("--q\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--q--"), false)
	// A UID with control characters is refused and echoed in the answer, which must stay JSON.
	f.Add("c", fuzzCT(f, dicomtest.CTOptions{Rows: 4, Cols: 4, Seed: 3, SOPInstanceUID: "1.2.\x01\x1f"}), false)
	f.Fuzz(func(t *testing.T, boundary string, content []byte, gz bool) {
		var body bytes.Buffer
		body.WriteString("--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n")
		body.Write(content)
		body.WriteString("\r\n--" + boundary + "--\r\n")
		ctype := mime.FormatMediaType("multipart/related", map[string]string{"type": "application/dicom", "boundary": boundary})
		if ctype == "" {
			ctype = `multipart/related; type="application/dicom"; boundary=` + boundary
		}
		req := httptest.NewRequest("POST", "/dicomweb/studies", nil)
		req.Header.Set("Content-Type", ctype)
		if gz {
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(body.Bytes())
			zw.Close()
			body = z
			req.Header.Set("Content-Encoding", "gzip")
		}
		req.Body = io.NopCloser(&body)
		req.ContentLength = int64(body.Len())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("status %d with a body that is not JSON: %q", w.Code, w.Body)
		}
	})
}

// FuzzQIDOParams sends a fuzzed query string to the QIDO-RS resources of an archive holding one study: the answer is
// 200 with a JSON array, or 400 with problem+json; never a server error.
//
//	go test -run XXX -fuzz FuzzQIDOParams -fuzztime 60s ./dicomweb
func FuzzQIDOParams(f *testing.F) {
	h := fuzzHandler(f)
	ct := fuzzCT(f, dicomtest.CTOptions{Rows: 4, Cols: 4, Seed: 2, PatientName: "Yamada^Taro=山田^太郎", PatientID: "P1"})
	if res := h.Archive.Store(context.Background(), bytes.NewReader(ct), archive.StoreRequest{Source: "fuzz"}); res.Err != nil {
		f.Fatal(res.Err)
	}
	study := dicomtest.UID("ct/2/study")
	paths := []string{"/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances", "/dicomweb/studies/" + study + "/series",
		"/dicomweb/studies/" + study + "/instances"}
	for _, q := range []string{
		"",
		"PatientName=Yamada*&fuzzymatching=true&limit=10&offset=0&includefield=all",
		"PatientName=山田^太郎&includefield=00081030,StudyDescription",
		"00100020=P1&StudyDate=20250101-20251231&StudyTime=1000-1300",
		"StudyInstanceUID=" + study + `\1.2.3`,
		"StudyInstanceUID=1.02",
		"ModalitiesInStudy=CT,MR&SOPClassesInStudy=1.2.840.10008.5.1.4.1.1.2",
		"limit=-1", "offset=99999999999999999999", "limit=abc",
		"includefield=ReferencedSeriesSequence.SeriesInstanceUID&ReferencedStudySequence.StudyInstanceUID=1.2",
		"PatientID=[a-z]*?&AccessionNumber=A\\B&StudyID=%00",
		"StudyDate=-&StudyTime=-&AcquisitionDateTime=20250101-",
		"NoSuchKeyword=1&FFFFFFFF=2&includefield=bogus",
		"%zz&=&&&a=b=c",
		// More list values than SQLite takes SQL parameters (32766): refused as a bad query, not a 503.
		"StudyInstanceUID=" + strings.Repeat(`1.2.3\`, 33000) + "1.2.4",
		"AccessionNumber=" + strings.Repeat(`A\`, 33000) + "B",
		"ModalitiesInStudy=" + strings.Repeat("CT,", 33000) + "MR",
	} {
		for i := range paths {
			f.Add(q, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, query string, path uint8) {
		req := httptest.NewRequest("GET", paths[int(path)%len(paths)], nil)
		req.URL.RawQuery = query
		req.Header.Set("Accept", "application/dicom+json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK:
			var v []json.RawMessage
			if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
				t.Fatalf("200 with a body that is not a JSON array: %v: %q", err, w.Body)
			}
		case http.StatusBadRequest:
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("400 as %q: %s", ct, w.Body)
			}
		default:
			t.Fatalf("?%s: status %d: %s", query, w.Code, w.Body)
		}
	})
}
