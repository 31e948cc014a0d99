package web

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"renkei"
	"renkei/archive"
)

// Resumable uploads, for the large files (a long ultrasound or angiography run, hundreds of MB) that a ward's line
// may drop half-way: POST /api/uploads announces a file and its size, PATCH /api/uploads/{id} appends a chunk at
// Upload-Offset, GET /api/uploads/{id} says how much arrived; when the last byte is in, the file is stored through
// the same ingest as every other upload and the answer is its result. A chunk sent at the wrong offset is refused
// with 409 and the offset to resume from. Partial files live in UploadDir for a day. (With several nodes behind a
// load balancer the partial file must be on storage they share: issue 9.)

// uploadTTL is how long an unfinished upload is kept.
const uploadTTL = 24 * time.Hour

type partial struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	Offset      int64  `json:"offset"`
	institution int64
	principal   string
	started     time.Time
}

type uploads struct {
	mu    sync.Mutex
	byID  map[string]*partial
	locks map[string]*sync.Mutex
}

func (s *Server) partialPath(id string) string { return filepath.Join(s.UploadDir, id+".part") }

func (s *Server) startUpload(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	if s.UploadDir == "" {
		s.problem(w, r, renkei.Errorj("web.upload", renkei.Unavailable, "このサーバーでは中断・再開できるアップロードが設定されていません。",
			"resumable uploads are not configured on this server"))
		return
	}
	if req.Size <= 0 || req.Size > maxUploadFile {
		s.problem(w, r, renkei.Errorj("web.upload", renkei.Invalid, "ファイルの大きさは1バイトから%dGBまでです。",
			"size must be between 1 byte and %d GB", maxUploadFile>>30))
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	if !p.Write {
		s.problem(w, r, renkei.Errorj("web.upload", renkei.Forbidden, "このアカウントは画像を見ることはできますが、保存はできません。",
			"this account may read but not store images"))
		return
	}
	b := make([]byte, 16)
	rand.Read(b)
	up := &partial{ID: hex.EncodeToString(b), Name: req.Name, Size: req.Size, institution: p.Institution, principal: p.Label(), started: s.Now()}
	if err := os.MkdirAll(s.UploadDir, 0o750); err != nil {
		s.problem(w, r, err)
		return
	}
	f, err := os.OpenFile(s.partialPath(up.ID), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	f.Close()
	s.up.mu.Lock()
	s.cleanUploads()
	s.up.byID[up.ID] = up
	s.up.locks[up.ID] = &sync.Mutex{}
	s.up.mu.Unlock()
	writeJSON(w, http.StatusCreated, up)
}

// cleanUploads forgets (and deletes) uploads left unfinished for a day. The caller holds s.up.mu.
func (s *Server) cleanUploads() {
	for id, up := range s.up.byID {
		if s.Now().Sub(up.started) > uploadTTL {
			os.Remove(s.partialPath(id))
			delete(s.up.byID, id)
			delete(s.up.locks, id)
		}
	}
}

// findUpload returns an upload of the caller's (another principal's upload answers as not found).
func (s *Server) findUpload(r *http.Request) (*partial, *sync.Mutex, error) {
	p := renkei.PrincipalFrom(r.Context())
	s.up.mu.Lock()
	defer s.up.mu.Unlock()
	up, ok := s.up.byID[r.PathValue("id")]
	if !ok || up.principal != p.Label() || up.institution != p.Institution {
		return nil, nil, renkei.Errorj("web.upload", renkei.NotFound, "該当するアップロードはありません(1日たって期限が切れた可能性があります)。",
			"there is no such upload (it may have expired after a day)")
	}
	return up, s.up.locks[up.ID], nil
}

func (s *Server) uploadStatus(w http.ResponseWriter, r *http.Request) {
	up, lock, err := s.findUpload(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	lock.Lock()
	defer lock.Unlock()
	writeJSON(w, http.StatusOK, up)
}

func (s *Server) uploadChunk(w http.ResponseWriter, r *http.Request) {
	up, lock, err := s.findUpload(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	lock.Lock()
	defer lock.Unlock()
	off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off != up.Offset {
		w.Header().Set("Upload-Offset", strconv.FormatInt(up.Offset, 10))
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": "Conflict", "status": http.StatusConflict,
			"detail": "send the file from the offset the server has", "offset": up.Offset})
		return
	}
	f, err := os.OpenFile(s.partialPath(up.ID), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	n, copyErr := io.Copy(f, io.LimitReader(r.Body, up.Size-up.Offset))
	if err := f.Close(); err != nil && copyErr == nil {
		copyErr = err
	}
	up.Offset += n // what reached the file counts, even if the line dropped: the client resumes from here
	if copyErr != nil && up.Offset < up.Size {
		s.problem(w, r, renkei.Errorj("web.upload", renkei.Unavailable, "送信が途中(%dバイト目)で途切れました。そこから再開してください。",
			"the chunk was cut off at byte %d; resume from there", up.Offset))
		return
	}
	if up.Offset < up.Size {
		w.Header().Set("Upload-Offset", strconv.FormatInt(up.Offset, 10))
		writeJSON(w, http.StatusOK, up)
		return
	}
	// Complete: store it as any upload, then forget the partial file.
	pf, err := os.Open(s.partialPath(up.ID))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	res := s.DICOMweb.Archive.Store(r.Context(), pf, archive.StoreRequest{Source: "upload"})
	pf.Close()
	s.up.mu.Lock()
	delete(s.up.byID, up.ID)
	delete(s.up.locks, up.ID)
	s.up.mu.Unlock()
	os.Remove(s.partialPath(up.ID))
	s.answerUpload(w, r, up.Name, res)
}
