package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"renkei"
	"renkei/archive"
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
	res := s.DICOMweb.Archive.Store(r.Context(), r.Body, archive.StoreRequest{Source: "upload"})
	s.answerUpload(w, r, name, res)
}

// answerUpload says what became of one uploaded file.
func (s *Server) answerUpload(w http.ResponseWriter, r *http.Request, name string, res *archive.StoreResult) {
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
			s.problem(w, r, res.Err) // not the file's fault: the caller may not store, or the server cannot
			return
		}
	case res.Outcome == renkei.Duplicate:
		out.Outcome = "duplicate"
	}
	writeJSON(w, http.StatusOK, out)
}
