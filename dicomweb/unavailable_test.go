package dicomweb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"renkei"
	"renkei/archive"
	"renkei/blob/disk"
	"renkei/dicomweb"
	"renkei/internal/dicomtest"
	"renkei/sqlstore"
)

// downIndex is a real index whose writes fail as they do while its database server restarts.
type downIndex struct{ *sqlstore.DB }

func (downIndex) Insert(context.Context, *renkei.Instance) (renkei.StoreOutcome, string, error) {
	return 0, "", &renkei.Error{Op: "index.Insert", Kind: renkei.Unavailable, Message: "the index could not be written",
		Err: io.ErrUnexpectedEOF}
}

// TestStowIndexUnavailable: a STOW-RS that stores nothing only because the index cannot be written is a 503
// problem+json, which senders retry, not a 409, which tells them the request itself conflicts (PS3.18 10.5.3).
func TestStowIndexUnavailable(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlstore.Open(context.Background(), filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	blobs, err := disk.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(dicomweb.New(archive.New(downIndex{db}, blobs, logger), logger, "/dicomweb"))
	defer srv.Close()

	var parts [][]byte
	for i, name := range []string{"unavail/1", "unavail/2"} {
		path := filepath.Join(dir, "ct.dcm")
		if err := dicomtest.CT(path, dicomtest.CTOptions{StudyInstanceUID: dicomtest.UID("unavail/study"),
			SeriesInstanceUID: dicomtest.UID("unavail/series"), SOPInstanceUID: dicomtest.UID(name), PatientID: "U1",
			Rows: 8, Cols: 8, InstanceNumber: i + 1}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, b)
	}
	body, ct := multipartBody(t, parts...)
	resp, err := http.Post(srv.URL+"/dicomweb/studies", ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	var problem struct {
		Status int `json:"status"`
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" ||
		json.Unmarshal(got, &problem) != nil || problem.Status != http.StatusServiceUnavailable {
		t.Errorf("STOW-RS with the index unavailable: %s %s: %s; want 503 application/problem+json", resp.Status, resp.Header.Get("Content-Type"), got)
	}
}
