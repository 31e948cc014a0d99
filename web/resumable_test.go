package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"renkei/internal/dicomtest"
)

// TestResumableUpload sends a file in chunks with the line dropping in between (a chunk sent from a stale offset),
// resumes from the offset the server reports, and gets the stored result; another account cannot see the upload.
func TestResumableUpload(t *testing.T) {
	r := newRegion(t)
	r.front.UploadDir = t.TempDir()
	path := filepath.Join(r.dir, "big.dcm")
	if err := dicomtest.MultiFrame(path, dicomtest.CTOptions{PatientID: "R1", Rows: 256, Cols: 256, Frames: 8, Seed: 4242}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	c := r.as("kato@kita-clinic")
	if st := c.post("/api/uploads", map[string]any{"name": "US/run.dcm", "size": len(data)}); st != 201 {
		t.Fatalf("start: %d %s", st, c.body)
	}
	var up struct {
		ID     string
		Offset int64
	}
	json.Unmarshal(c.body, &up)
	chunk := func(from, to int) int {
		return c.do("PATCH", "/api/uploads/"+up.ID, bytes.NewReader(data[from:to]), "Upload-Offset", strconv.Itoa(from),
			"Content-Type", "application/offset+octet-stream")
	}
	third := len(data) / 3
	if st := chunk(0, third); st != 200 {
		t.Fatalf("chunk 1: %d %s", st, c.body)
	}
	// The line dropped and the client lost count: it sends from 0 again and is told where to resume.
	if st := chunk(0, third); st != 409 {
		t.Errorf("a chunk at a stale offset: %d", st)
	}
	var status struct{ Offset int }
	c.getJSON("/api/uploads/"+up.ID, &status)
	if status.Offset != third {
		t.Fatalf("the server has %d bytes, want %d", status.Offset, third)
	}
	if r.as("tanaka@chuo-hospital").get("/api/uploads/"+up.ID) != 404 {
		t.Error("another institution's user sees the upload")
	}
	if st := chunk(third, 2*third); st != 200 {
		t.Fatalf("chunk 2: %d %s", st, c.body)
	}
	if st := chunk(2*third, len(data)); st != 200 {
		t.Fatalf("last chunk: %d %s", st, c.body)
	}
	var res struct{ File, Outcome string }
	json.Unmarshal(c.body, &res)
	if res.Outcome != "stored" || res.File != "US/run.dcm" {
		t.Errorf("the finished upload: %s", c.body)
	}
	if c.get("/api/uploads/"+up.ID) != 404 {
		t.Error("a finished upload is still there")
	}
	var list []map[string]any
	c.getJSON("/api/studies?patientId=R1", &list)
	if len(list) != 1 {
		t.Errorf("the uploaded study: %v", list)
	}
	entries, _ := os.ReadDir(r.front.UploadDir)
	if len(entries) != 0 {
		t.Errorf("partial files left behind: %v", fmt.Sprint(entries))
	}
}

// TestUploadBatch sends several files in one multipart/form-data request, as the import page does, and gets each
// file's result in order: the image stored once (and once a duplicate), the one cut short refused.
func TestUploadBatch(t *testing.T) {
	r := newRegion(t)
	path := filepath.Join(r.dir, "a.dcm")
	if err := dicomtest.CT(path, dicomtest.CTOptions{PatientID: "B1", Rows: 32, Cols: 32, Seed: 4343}); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range []struct {
		name string
		data []byte
	}{{"CD/IM1", good}, {"CD/IM2", good[:len(good)-300]}, {"CD/IM1-again", good}} {
		w, _ := mw.CreateFormFile("file", f.name)
		w.Write(f.data)
	}
	mw.Close()
	c := r.as("kato@kita-clinic")
	if st := c.do("POST", "/api/upload", &body, "Content-Type", mw.FormDataContentType()); st != 200 {
		t.Fatalf("batch: %d %s", st, c.body)
	}
	var res []struct{ File, Outcome, Reason string }
	json.Unmarshal(c.body, &res)
	got := fmt.Sprint(res)
	// The same image twice in one batch: the two are committed concurrently, so either copy may be the one stored.
	twice := map[string]bool{res[0].Outcome: true, res[2].Outcome: true}
	if len(res) != 3 || !twice["stored"] || !twice["duplicate"] || res[1].Reason != "truncated" || res[1].File != "CD/IM2" {
		t.Errorf("results %s", got)
	}
}
