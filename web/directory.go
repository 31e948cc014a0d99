package web

import (
	"net/http"
	"strconv"
	"strings"

	"renkei"
	"renkei/fhir"
)

// The regional directory over JSON: search, one entry with its capacity history, and an institution's own edits.

type capacityJSON struct {
	renkei.CapacityItem
	Stale bool `json:"stale"`
}

type directoryEntryJSON struct {
	Institution institutionJSON `json:"institution"`
	Profile     renkei.Profile  `json:"profile"`
	Capacity    []capacityJSON  `json:"capacity"`
	DistanceKm  *float64        `json:"distanceKm,omitempty"`
	Editable    bool            `json:"editable"`
}

func (s *Server) directoryJSON(r *http.Request, e renkei.DirectoryEntry, dist float64) directoryEntryJSON {
	p := renkei.PrincipalFrom(r.Context())
	in := e.Institution
	out := directoryEntryJSON{Institution: institutionJSON{in.ID, in.Name, in.NameEn, string(in.Kind), in.Code, in.CareFunctions},
		Profile: e.Profile, Capacity: []capacityJSON{},
		Editable: p.Kind == renkei.UserPrincipal && (p.Role == renkei.RegionAdmin || p.Institution == in.PK && (p.Role == renkei.InstitutionAdmin || p.Role == renkei.Clerk))}
	for _, l := range []*[]string{&out.Profile.Departments, &out.Profile.Specialties, &out.Profile.Equipment, &out.Profile.Accepts} {
		if *l == nil {
			*l = []string{}
		}
	}
	now := s.Now()
	for _, it := range e.Capacity {
		out.Capacity = append(out.Capacity, capacityJSON{it, s.Directory.Stale(it, now)})
	}
	if dist >= 0 {
		out.DistanceKm = &dist
	}
	return out
}

func (s *Server) directoryReady(w http.ResponseWriter, r *http.Request) bool {
	if s.Directory == nil {
		s.problem(w, r, renkei.Errorj("web", renkei.Unavailable, "このサーバーでは施設一覧(ディレクトリ)を使えません。", "the directory is not available on this server"))
		return false
	}
	return true
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// searchDirectory: ?function=急性期,高度急性期 &specialty=脳卒中 &equipment=CT &accepts=紹介 &emergency=1 &beds=ICU
// &oncall=1 &km=20 &q=name &sort=distance|fresh &limit=.
func (s *Server) searchDirectory(w http.ResponseWriter, r *http.Request) {
	if !s.directoryReady(w, r) {
		return
	}
	q := r.URL.Query()
	dq := renkei.DirectoryQuery{Functions: splitList(q.Get("function")), Specialties: splitList(q.Get("specialty")),
		Equipment: splitList(q.Get("equipment")), Accepts: q.Get("accepts"), Emergency: q.Get("emergency") == "1", BedsKind: q.Get("beds"),
		OnCallNow: q.Get("oncall") == "1", Text: q.Get("q"), Sort: q.Get("sort"), From: renkei.PrincipalFrom(r.Context()).Institution}
	if v := q.Get("km"); v != "" {
		km, err := strconv.ParseFloat(v, 64)
		if err != nil || km < 0 || km > 2000 {
			s.problem(w, r, renkei.Errorj("web.directory", renkei.Invalid, "距離はキロメートル単位の数で入力してください。", "km must be a distance in kilometres"))
			return
		}
		dq.WithinKm = km
	}
	dq.Limit, _ = strconv.Atoi(q.Get("limit"))
	if dq.Limit <= 0 || dq.Limit > 500 {
		dq.Limit = 100
	}
	res, err := s.Directory.Search(r.Context(), dq)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := []directoryEntryJSON{}
	for _, e := range res {
		out = append(out, s.directoryJSON(r, e.DirectoryEntry, e.DistanceKm))
	}
	writeJSON(w, http.StatusOK, out)
}

// directoryInstitution resolves {id} (an institution's short ID) to its key.
func (s *Server) directoryInstitution(w http.ResponseWriter, r *http.Request) (renkei.Institution, bool) {
	if !s.directoryReady(w, r) {
		return renkei.Institution{}, false
	}
	in, err := s.Store.Institution(r.Context(), r.PathValue("id"))
	if err != nil {
		s.problem(w, r, err)
		return in, false
	}
	return in, true
}

func (s *Server) directoryEntry(w http.ResponseWriter, r *http.Request) {
	in, ok := s.directoryInstitution(w, r)
	if !ok {
		return
	}
	e, err := s.Directory.Entry(r.Context(), in.PK)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.directoryJSON(r, e, -1))
}

// capacityHistory answers ?days= of an institution's capacity reports, oldest first, for its chart.
func (s *Server) capacityHistory(w http.ResponseWriter, r *http.Request) {
	in, ok := s.directoryInstitution(w, r)
	if !ok {
		return
	}
	days, _ := strconv.Atoi(r.URL.Query().Get("days"))
	list, err := s.Directory.History(r.Context(), in.PK, days)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if list == nil {
		list = []renkei.CapacityItem{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) saveProfile(w http.ResponseWriter, r *http.Request) {
	in, ok := s.directoryInstitution(w, r)
	if !ok {
		return
	}
	var p renkei.Profile
	if err := readJSON(r, &p); err != nil {
		s.problem(w, r, err)
		return
	}
	if err := s.Directory.SaveProfile(r.Context(), in.PK, p); err != nil {
		s.problem(w, r, err)
		return
	}
	s.directoryEntry(w, r)
}

func (s *Server) reportCapacity(w http.ResponseWriter, r *http.Request) {
	in, ok := s.directoryInstitution(w, r)
	if !ok {
		return
	}
	var items []renkei.CapacityItem
	if err := readJSON(r, &items); err != nil {
		s.problem(w, r, err)
		return
	}
	if err := s.Directory.ReportCapacity(r.Context(), in.PK, items); err != nil {
		s.problem(w, r, err)
		return
	}
	s.directoryEntry(w, r)
}

// directoryOptions lists the words the directory's forms offer.
func (s *Server) directoryOptions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"careFunctions": renkei.CareFunctions, "equipment": renkei.EquipmentKinds,
		"accepts": renkei.ReferralAcceptances, "wardKinds": renkei.WardKinds, "staleHours": s.Directory.StaleAfter.Hours(),
		"mapTiles": s.MapTiles})
}

// directoryFHIR answers the whole directory as FHIR R4 Organization, Location and HealthcareService resources in the
// shape of IHE mCSD, stale capacity marked stale, for other regional systems.
func (s *Server) directoryFHIR(w http.ResponseWriter, r *http.Request) {
	if !s.directoryReady(w, r) {
		return
	}
	entries, err := s.Directory.Entries(r.Context())
	if err != nil {
		s.problem(w, r, err)
		return
	}
	b, err := fhir.DirectoryBundle(entries, s.Now(), s.Directory.StaleAfter)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", fhirJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}
