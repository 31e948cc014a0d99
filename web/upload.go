package web

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"

	"renkei"
	"renkei/archive"
	"renkei/dicom"
)

// maxUploadFile bounds one uploaded file (a multi-frame ultrasound or angiography run can be large).
const maxUploadFile = 4 << 30

// uploadResult says what became of one uploaded file, in a form the web app and `renkei import` turn into words a
// clerk understands: an outcome, a reason code for refusals, and the detail for whoever investigates.
type uploadResult struct {
	File      string   `json:"file"`
	Outcome   string   `json:"outcome"` // "stored", "duplicate" or "refused"
	Reason    string   `json:"reason,omitempty"`
	Status    string   `json:"status,omitempty"` // the DICOM status of a refusal, e.g. "0xC000"
	Detail    string   `json:"detail,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	PatientID string   `json:"patientId,omitempty"`
	Study     string   `json:"study,omitempty"`
	Instance  string   `json:"instance,omitempty"`
}

// refusalReason names why an object was refused, for the app to say in the user's language.
func refusalReason(res *archive.StoreResult) string {
	switch {
	case res.Failure == archive.StatusCannotUnderstand && errors.Is(res.Err, io.ErrUnexpectedEOF),
		res.Failure == archive.StatusCannotUnderstand && strings.Contains(renkei.ErrorMessage(res.Err), "ends early"):
		return "truncated" // a CD that could not be read to the end, or a copy cut short
	case res.Failure == archive.StatusCannotUnderstand:
		return "not-dicom"
	case res.Failure == archive.StatusDataSetMismatch:
		return "incomplete"
	case res.Failure == archive.StatusDuplicateDifferent || renkei.ErrorKind(res.Err) == renkei.Conflict:
		return "conflict"
	case res.Failure == archive.StatusOutOfResources || renkei.ErrorKind(res.Err) == renkei.TooLarge:
		return "no-space"
	case renkei.ErrorKind(res.Err) == renkei.Forbidden:
		return "forbidden"
	}
	return "failed"
}

// upload stores one file sent as the request body (the web app's drag and drop, `renkei import`): the same ingest as
// STOW-RS, answered per file. ?name= is the file's name or path as the user sees it, echoed back.
func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if len(name) > 1024 {
		name = name[:1024]
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxUploadFile)
	if mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		s.uploadBatch(w, r, params["boundary"])
		return
	}
	res := s.DICOMweb.Archive.Store(r.Context(), r.Body, archive.StoreRequest{Source: "upload"})
	s.answerUpload(w, r, name, res)
}

// uploadBatch stores the files of a multipart/form-data body (the import page sends small files ten at a time): each
// is received as it streams in and committed in the background, as STOW-RS does, and the answer lists each file's
// result in order.
func (s *Server) uploadBatch(w http.ResponseWriter, r *http.Request, boundary string) {
	mr := multipart.NewReader(bufio.NewReaderSize(r.Body, 1<<20), boundary)
	type item struct {
		name string
		res  *archive.StoreResult
	}
	var items []item
	var commits sync.WaitGroup
	sem := make(chan struct{}, 16)
	for len(items) < 1000 {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			commits.Wait()
			s.problem(w, r, renkei.Errorj("web.upload", renkei.Invalid, "アップロードが%d件目の後で途切れました。残りをもう一度送ってください。",
				"the upload was cut off after %d file(s); send the rest again", len(items)))
			return
		}
		pending, res := s.DICOMweb.Archive.Receive(r.Context(), part, archive.StoreRequest{Source: "upload"})
		// The name as sent, folders included (only echoed back: Part.FileName keeps the base name alone).
		_, disp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		items = append(items, item{disp["filename"], res})
		part.Close()
		if pending == nil {
			continue
		}
		commits.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; commits.Done() }()
			pending.Commit(r.Context())
		}()
	}
	commits.Wait()
	out := make([]uploadResult, 0, len(items))
	for _, it := range items {
		res, err := s.uploadOutcome(it.name, it.res)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		out = append(out, res)
	}
	writeJSON(w, http.StatusOK, out)
}

// answerUpload says what became of one uploaded file.
func (s *Server) answerUpload(w http.ResponseWriter, r *http.Request, name string, res *archive.StoreResult) {
	out, err := s.uploadOutcome(name, res)
	if err != nil {
		s.problem(w, r, err) // not the file's fault: the caller may not store, or the server cannot
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// uploadOutcome turns a store result into the file's answer; an error that is not the file's fault is returned.
func (s *Server) uploadOutcome(name string, res *archive.StoreResult) (uploadResult, error) {
	out := uploadResult{File: name, Outcome: "stored", Warnings: res.Warnings, Study: res.StudyInstanceUID, Instance: res.SOPInstanceUID}
	switch {
	case res.Failure != 0 || res.Err != nil:
		out.Outcome, out.Reason, out.Detail = "refused", refusalReason(res), renkei.ErrorMessage(res.Err)
		if res.Failure != 0 {
			out.Status = fmt.Sprintf("0x%04X", res.Failure)
		}
		if strings.Contains(strings.ToLower(out.Detail), "request body too large") {
			out.Reason, out.Detail = "too-large", fmt.Sprintf("the file is larger than %d GB", maxUploadFile>>30)
		}
		if kind := renkei.ErrorKind(res.Err); kind == renkei.Unauthorized || kind == renkei.Forbidden || kind == renkei.Unavailable {
			return out, res.Err
		}
	case res.Outcome == renkei.Duplicate:
		out.Outcome = "duplicate"
	}
	return out, nil
}

// dicomdir reads a CD's DICOMDIR (the request body) and lists the files it refers to, so that the import page can
// report the ones the disc no longer holds (an unreadable disc) as well as the ones it does not list (which are
// imported anyway).
func (s *Server) dicomdir(w http.ResponseWriter, r *http.Request) {
	f, err := dicom.Parse(http.MaxBytesReader(w, r.Body, 64<<20), dicom.DefaultReadOptions)
	if err != nil {
		s.problem(w, r, renkei.Errorj("web.dicomdir", renkei.Invalid, "DICOMDIR を読み取れません: %v", "the DICOMDIR cannot be read: %v", err))
		return
	}
	files := dicom.DirectoryFiles(f.DataSet)
	if files == nil {
		files = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"files": files})
}
