package web

import (
	"net/http"
	"net/url"
	"strings"

	"renkei"
	"renkei/dicom"
)

// invokeImageDisplay is IHE IID's Invoke Image Display (RAD-106): another system (an EMR, a PACS worklist) opens
// renkei's viewer on a study, or the study list on a patient, by URL:
//
//	/IHEInvokeImageDisplay?requestType=STUDY&studyUID=1.2.3[,1.2.4]
//	/IHEInvokeImageDisplay?requestType=PATIENT&patientID=12345^^^&ISSUER
//
// It only redirects into the web app, which asks for a login first if needed and checks access as always: the
// route answers without a login and reveals nothing.
func (s *Server) invokeImageDisplay(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bad := func(msg string) { s.problem(w, r, renkei.Errorf("web.iid", renkei.Invalid, "%s", msg)) }
	switch strings.ToUpper(q.Get("requestType")) {
	case "STUDY":
		var uids []string
		for _, u := range strings.Split(q.Get("studyUID"), ",") {
			if u = strings.TrimSpace(u); u != "" {
				if !dicom.ValidUID(u) {
					bad("studyUID must be DICOM UIDs separated by commas")
					return
				}
				uids = append(uids, u)
			}
		}
		switch len(uids) {
		case 0:
			bad("requestType=STUDY needs studyUID")
		case 1:
			http.Redirect(w, r, "/#/viewer/"+uids[0], http.StatusFound)
		default: // the first beside the second, scrolling together
			http.Redirect(w, r, "/#/compare/"+uids[0]+"/"+uids[1], http.StatusFound)
		}
	case "PATIENT":
		// patientID is an HL7 CX: ID^^^&issuer OID or ID^^^issuer; the web app searches by the ID.
		id, _, _ := strings.Cut(q.Get("patientID"), "^")
		if id = strings.TrimSpace(id); id == "" || len(id) > 64 {
			bad("requestType=PATIENT needs patientID")
			return
		}
		http.Redirect(w, r, "/#/studies?patientId="+url.QueryEscape(id), http.StatusFound)
	default:
		bad("requestType must be STUDY or PATIENT (IHE IID)")
	}
}
