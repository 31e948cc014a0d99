package dicomweb_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"testing"

	"renkei/archive"
	"renkei/blob/disk"
	"renkei/dicomweb"
	"renkei/sqlstore"
)

// env is a running DICOMweb server on a real SQLite file and a real blob folder.
type env struct {
	t       *testing.T
	dir     string
	db      *sqlstore.DB
	archive *archive.Service
	handler *dicomweb.Handler
	srv     *httptest.Server
	url     string // base URL of DICOMweb, e.g. http://127.0.0.1:1234/dicomweb
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := disk.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a := archive.New(db, blobs, logger)
	h := dicomweb.New(a, logger, "/dicomweb")
	mux := http.NewServeMux()
	mux.Handle("/dicomweb/", h)
	mux.Handle("/api/", h)
	srv := httptest.NewServer(mux)
	e := &env{t: t, dir: dir, db: db, archive: a, handler: h, srv: srv, url: srv.URL + "/dicomweb"}
	t.Cleanup(func() {
		srv.Close()
		db.Close()
	})
	return e
}

// multipartBody builds a multipart/related; type="application/dicom" body from file contents.
func multipartBody(t testing.TB, parts ...[]byte) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p)
	}
	mw.Close()
	return buf.Bytes(), fmt.Sprintf(`multipart/related; type="application/dicom"; boundary=%s`, mw.Boundary())
}

// stow posts files to /studies and returns the status and body.
func (e *env) stow(files ...[]byte) (int, []byte) {
	e.t.Helper()
	body, ct := multipartBody(e.t, files...)
	req, _ := http.NewRequest("POST", e.url+"/studies", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// get fetches a URL with an Accept header and returns status, content type and body.
func (e *env) get(url, accept string) (int, string, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// parts splits a multipart/related response into its parts' bodies and content types.
func parts(t testing.TB, contentType string, body []byte) (bodies [][]byte, types []string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/related" {
		t.Fatalf("response is %q, want multipart/related", contentType)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
		types = append(types, p.Header.Get("Content-Type"))
	}
	return bodies, types
}
