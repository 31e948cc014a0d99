package web

import (
	"embed"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"renkei"
	"renkei/archive"
)

// The web app: plain HTML, CSS and JavaScript modules, embedded in the binary, no build step. It talks only to the
// JSON API and DICOMweb, with the session cookie and CSRF token like any other client.
//
//go:embed ui
var uiFiles embed.FS

func uiFS() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	return http.StripPrefix("/ui/", http.FileServer(http.FS(sub)))
}

// contentSecurityPolicy lets the app load only its own scripts and styles: injected markup cannot run script.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// csp is the policy, with the map tiles' origin allowed as images when the deployment configured tiles.
func (s *Server) csp() string {
	if s.MapTiles == "" {
		return contentSecurityPolicy
	}
	u, err := url.Parse(s.MapTiles)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return contentSecurityPolicy
	}
	return strings.Replace(contentSecurityPolicy, "img-src 'self' data: blob:", "img-src 'self' data: blob: "+u.Scheme+"://"+u.Host, 1)
}

func (s *Server) app(w http.ResponseWriter, r *http.Request) {
	b, err := uiFiles.ReadFile("ui/index.html")
	if err != nil {
		s.problem(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.csp())
	h.Set("Cache-Control", "no-cache")
	w.Write(b)
}

func (s *Server) assets(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", s.csp())
	w.Header().Set("Cache-Control", "no-cache")
	s.ui.ServeHTTP(w, r)
}

// listStudies is the study list (検査一覧) of the web app: the studies the caller may see, newest first, with their
// owner and, for shared ones, who shared them, why and until when; break-glass ones are marked.
func (s *Server) listStudies(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	query := &renkei.Query{Level: renkei.StudyLevel, FuzzyMatching: true, Limit: 50}
	add := func(keyword, value string) error {
		m, ok, err := archive.ParseMatch(keyword, value)
		if err == nil && ok {
			query.Matches = append(query.Matches, m)
		}
		return err
	}
	name := strings.TrimSpace(q.Get("name"))
	if name != "" && !strings.ContainsAny(name, "*?") {
		name += "*"
	}
	from, to := strings.ReplaceAll(q.Get("from"), "-", ""), strings.ReplaceAll(q.Get("to"), "-", "")
	dates := ""
	if from != "" || to != "" {
		dates = from + "-" + to
	}
	for _, kv := range [][2]string{{"PatientName", name}, {"PatientID", q.Get("patientId")}, {"StudyInstanceUID", q.Get("studyUID")},
		{"PatientBirthDate", strings.ReplaceAll(q.Get("birthDate"), "-", "")}, {"StudyDate", dates}, {"ModalitiesInStudy", q.Get("modality")}} {
		if err := add(kv[0], kv[1]); err != nil {
			s.problem(w, r, err)
			return
		}
	}
	query.Sort = q.Get("sort")
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 && n <= 200 {
		query.Limit = n
	}
	if n, err := strconv.Atoi(q.Get("offset")); err == nil && n >= 0 {
		query.Offset = n
	}
	if id := q.Get("institution"); id != "" {
		in, err := s.Store.Institution(r.Context(), id)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		query.Owner = in.PK // within what the caller may see: the access decorator still applies its scope
	}
	s.studiesPage(w, r, query)
}

type studyListEntry struct {
	studyJSON
	PatientBirthDate string     `json:"patientBirthDate,omitempty"`
	PatientSex       string     `json:"patientSex,omitempty"`
	InstitutionName  string     `json:"institutionName"`
	AccessionNumber  string     `json:"accessionNumber,omitempty"`
	NumberOfSeries   int        `json:"numberOfSeries"`
	SharedBy         string     `json:"sharedBy,omitempty"`
	Purpose          string     `json:"purpose,omitempty"`
	Reason           string     `json:"reason,omitempty"`
	SharedUntil      *time.Time `json:"sharedUntil,omitempty"`
}

func (s *Server) studiesPage(w http.ResponseWriter, r *http.Request, query *renkei.Query) {
	recs, err := s.DICOMweb.Archive.QueryStudies(r.Context(), query)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	// What was shared with the caller, to say by whom and why.
	var incoming []renkei.Share
	for _, st := range recs {
		if st.Institution != p.Institution && p.Role != renkei.PatientRole {
			f := renkei.ShareFilter{ToInstitution: p.Institution, ActiveAt: s.Now()}
			if p.Kind == renkei.UserPrincipal {
				f.ToUser = p.ID
			}
			if incoming, err = s.Store.Shares(r.Context(), f); err != nil {
				s.problem(w, r, err)
				return
			}
			break
		}
	}
	names := map[int64]renkei.Institution{}
	out := []studyListEntry{}
	for _, st := range recs {
		in, ok := names[st.Institution]
		if !ok {
			in, _ = s.Store.InstitutionByPK(r.Context(), st.Institution)
			names[st.Institution] = in
		}
		e := studyListEntry{studyJSON: studyJSON{in.ID, st.Patient.Issuer, st.Patient.ID, st.PatientName, st.StudyInstanceUID, st.StudyDate,
			st.StudyDescription, st.ModalitiesInStudy, st.NumberOfInstances, st.Institution == p.Institution},
			PatientBirthDate: st.PatientBirthDate, PatientSex: st.PatientSex, InstitutionName: in.Name, AccessionNumber: st.AccessionNumber,
			NumberOfSeries: st.NumberOfSeries}
		if e.Modalities == nil {
			e.Modalities = []string{}
		}
		if !e.Own {
			for _, sh := range incoming {
				if sh.FromInstitution == st.Institution && sh.Patient == st.Patient && (len(sh.Studies) == 0 || slices.Contains(sh.Studies, st.StudyInstanceUID)) {
					until := sh.ExpiresAt
					e.SharedBy, e.Purpose, e.Reason, e.SharedUntil = sh.CreatedByName, string(sh.Purpose), sh.Reason, &until
					if sh.Purpose == renkei.PurposeBreakGlass {
						break // the most telling reason: keep it
					}
				}
			}
		}
		out = append(out, e)
	}
	writeJSON(w, http.StatusOK, out)
}

// setLanguage remembers the user's language for the web app.
func (s *Server) setLanguage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Lang string `json:"lang"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	if req.Lang != "ja" && req.Lang != "en" {
		s.problem(w, r, renkei.Errorf("web.setLanguage", renkei.Invalid, `lang must be "ja" or "en"`))
		return
	}
	a := s.needSession(w, r)
	if a == nil {
		return
	}
	if err := s.Store.SetLanguage(r.Context(), a.User.PK, req.Lang); err != nil {
		s.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
