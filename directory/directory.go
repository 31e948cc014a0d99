// Package directory answers "which institution can take this patient now": every institution's profile (functions,
// departments, equipment, place, contact, what it accepts) and its live capacity (emergencies, free beds, on call),
// searched by what is needed and by distance. Everyone in the region reads it; an institution's administrator or
// 地域連携室 keeps its own entry. A capacity item older than StaleAfter is stale: shown as such, never counted as
// current.
package directory

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"renkei"
)

// Store keeps the directory (implemented by sqlstore.DB).
type Store interface {
	DirectoryVersion(ctx context.Context) (int64, error)
	Directory(ctx context.Context) ([]renkei.DirectoryEntry, error)
	PutProfile(ctx context.Context, p *renkei.Profile, audit *renkei.AuditEvent) error
	PutCapacity(ctx context.Context, institution int64, items []renkei.CapacityItem, audit *renkei.AuditEvent) error
	CapacityHistory(ctx context.Context, institution int64, since time.Time) ([]renkei.CapacityItem, error)
	InstitutionByPK(ctx context.Context, pk int64) (renkei.Institution, error)
	PutInstitution(ctx context.Context, inst *renkei.Institution, audit *renkei.AuditEvent) error
}

// Service applies the rules and answers searches from an in-memory copy of the directory, read again whenever the
// store's version changes (so several nodes stay current without telling each other).
type Service struct {
	Store Store
	Now   func() time.Time
	// StaleAfter is how old a capacity item may be and still count as current.
	StaleAfter time.Duration

	mu      sync.Mutex
	version int64
	entries []renkei.DirectoryEntry
	loaded  bool
}

// New returns a service over store; capacity goes stale after 12 hours unless changed.
func New(store Store) *Service {
	return &Service{Store: store, Now: time.Now, StaleAfter: 12 * time.Hour}
}

func principal(ctx context.Context, op string) (*renkei.Principal, error) {
	p := renkei.PrincipalFrom(ctx)
	if p == nil {
		return nil, renkei.Errorj(op, renkei.Unauthorized, "ログインしてください。", "please log in")
	}
	if p.Role == renkei.PatientRole {
		return nil, renkei.Errorj(op, renkei.Forbidden, "施設一覧(ディレクトリ)は、地域の医療機関の職員のための機能です。", "the directory is for the region's staff")
	}
	return p, nil
}

// mayEdit: an institution's administrator or 地域連携室 keeps its entry; a region administrator any.
func mayEdit(p *renkei.Principal, institution int64) bool {
	if p.Kind != renkei.UserPrincipal {
		return false
	}
	if p.Role == renkei.RegionAdmin {
		return true
	}
	return p.Institution == institution && (p.Role == renkei.InstitutionAdmin || p.Role == renkei.Clerk)
}

// load returns the current directory, reading it again if a write changed it.
func (s *Service) load(ctx context.Context) ([]renkei.DirectoryEntry, error) {
	v, err := s.Store.DirectoryVersion(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded && v == s.version {
		return s.entries, nil
	}
	entries, err := s.Store.Directory(ctx)
	if err != nil {
		return nil, err
	}
	s.entries, s.version, s.loaded = entries, v, true
	return entries, nil
}

// Result is one institution found, with what the searcher needs to decide.
type Result struct {
	renkei.DirectoryEntry
	DistanceKm float64 // -1 when either side has no coordinates
	Fresh      time.Time
}

// Stale reports whether a capacity item is too old to count as current at now.
func (s *Service) Stale(it renkei.CapacityItem, now time.Time) bool {
	return now.Sub(it.UpdatedAt) > s.StaleAfter
}

// DistanceKm is the great-circle distance between two points (haversine, mean Earth radius).
func DistanceKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(a)))
}

func located(p renkei.Profile) bool { return p.Latitude != 0 || p.Longitude != 0 }

// has reports whether list holds want, ignoring case and width-insensitive spaces.
func has(list []string, want string) bool {
	want = strings.ToLower(strings.TrimSpace(want))
	return slices.ContainsFunc(list, func(s string) bool { return strings.ToLower(strings.TrimSpace(s)) == want })
}

// Search answers a directory query, nearest (or freshest) first.
func (s *Service) Search(ctx context.Context, q renkei.DirectoryQuery) ([]Result, error) {
	if _, err := principal(ctx, "directory.Search"); err != nil {
		return nil, err
	}
	entries, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	var from *renkei.Profile
	for i := range entries {
		if entries[i].Institution.PK == q.From && located(entries[i].Profile) {
			from = &entries[i].Profile
		}
	}
	var out []Result
	text := strings.TrimSpace(q.Text)
	for _, e := range entries {
		if e.Institution.Kind == renkei.RegionOperator || e.Institution.PK == q.From {
			continue
		}
		if text != "" && !strings.Contains(e.Institution.Name, text) && !strings.Contains(strings.ToLower(e.Institution.NameEn), strings.ToLower(text)) {
			continue
		}
		if len(q.Functions) > 0 && !slices.ContainsFunc(q.Functions, func(f string) bool { return has(e.Institution.CareFunctions, f) }) {
			continue
		}
		if q.Accepts != "" && !has(e.Profile.Accepts, q.Accepts) {
			continue
		}
		if !allOf(q.Equipment, e.Profile.Equipment) {
			continue
		}
		fresh := map[string]renkei.CapacityItem{}
		var newest time.Time
		for _, it := range e.Capacity {
			if !s.Stale(it, now) {
				fresh[it.Key] = it
				if it.UpdatedAt.After(newest) {
					newest = it.UpdatedAt
				}
			}
		}
		offered := append(slices.Clone(e.Profile.Specialties), e.Profile.Departments...)
		if q.OnCallNow {
			offered = fresh[renkei.CapacityOnCall].OnCall
		}
		if !allOf(q.Specialties, offered) {
			continue
		}
		if q.Emergency {
			em, ok := fresh[renkei.CapacityEmergency]
			switch {
			case !ok, em.Emergency == renkei.EmergencyNo:
				continue
			case em.Emergency == renkei.EmergencyPartial && (len(q.Specialties) == 0 || !allOf(q.Specialties, em.Only)):
				continue
			}
		}
		if q.BedsKind != "" {
			b, ok := fresh[renkei.CapacityBedsPrefix+q.BedsKind]
			if !ok || b.Beds == nil || *b.Beds < 1 {
				continue
			}
		}
		d := -1.0
		if from != nil && located(e.Profile) {
			d = DistanceKm(from.Latitude, from.Longitude, e.Profile.Latitude, e.Profile.Longitude)
		}
		if q.WithinKm > 0 && (d < 0 || d > q.WithinKm) {
			continue
		}
		out = append(out, Result{DirectoryEntry: e, DistanceKm: d, Fresh: newest})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if q.Sort == "fresh" && !a.Fresh.Equal(b.Fresh) {
			return a.Fresh.After(b.Fresh)
		}
		if (a.DistanceKm < 0) != (b.DistanceKm < 0) {
			return a.DistanceKm >= 0 // unknown distances last
		}
		if a.DistanceKm != b.DistanceKm {
			return a.DistanceKm < b.DistanceKm
		}
		return a.Institution.ID < b.Institution.ID
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

func allOf(want, have []string) bool {
	for _, w := range want {
		if strings.TrimSpace(w) != "" && !has(have, w) {
			return false
		}
	}
	return true
}

// Entry returns one institution's entry.
func (s *Service) Entry(ctx context.Context, institution int64) (renkei.DirectoryEntry, error) {
	if _, err := principal(ctx, "directory.Entry"); err != nil {
		return renkei.DirectoryEntry{}, err
	}
	entries, err := s.load(ctx)
	if err != nil {
		return renkei.DirectoryEntry{}, err
	}
	for _, e := range entries {
		if e.Institution.PK == institution {
			return e, nil
		}
	}
	return renkei.DirectoryEntry{}, renkei.Errorj("directory.Entry", renkei.NotFound, "該当する施設はありません。", "there is no such institution")
}

// Entries returns the whole directory (for export).
func (s *Service) Entries(ctx context.Context) ([]renkei.DirectoryEntry, error) {
	if _, err := principal(ctx, "directory.Entries"); err != nil {
		return nil, err
	}
	return s.load(ctx)
}

// History returns an institution's capacity reports of the last days.
func (s *Service) History(ctx context.Context, institution int64, days int) ([]renkei.CapacityItem, error) {
	if _, err := principal(ctx, "directory.History"); err != nil {
		return nil, err
	}
	if days <= 0 || days > 400 {
		days = 30
	}
	return s.Store.CapacityHistory(ctx, institution, s.Now().AddDate(0, 0, -days))
}

// SaveProfile replaces an institution's profile, if the caller keeps it.
func (s *Service) SaveProfile(ctx context.Context, institution int64, p renkei.Profile) error {
	const op = "directory.SaveProfile"
	c, err := principal(ctx, op)
	if err != nil {
		return err
	}
	if !mayEdit(c, institution) {
		return renkei.Errorj(op, renkei.Forbidden, "施設の情報を更新できるのは、その施設の管理者か地域連携室だけです。",
			"an institution's entry is kept by its own administrator or 地域連携室")
	}
	if p.Latitude < -90 || p.Latitude > 90 || p.Longitude < -180 || p.Longitude > 180 {
		return renkei.Errorj(op, renkei.Invalid, "位置の座標が範囲外です(緯度 −90～90、経度 −180～180)。",
			"the coordinates are out of range (latitude −90…90, longitude −180…180)")
	}
	for _, l := range [][]string{p.Departments, p.Specialties, p.Equipment, p.Accepts} {
		if len(l) > 200 {
			return renkei.Errorj(op, renkei.Invalid, "施設情報の一覧の項目が多すぎます。", "a list of the profile is too long")
		}
	}
	for _, a := range p.Accepts {
		if !slices.Contains(renkei.ReferralAcceptances, a) {
			return renkei.Errorj(op, renkei.Invalid, "紹介の種類 %q はありません(%s のいずれかにしてください)。",
				"unknown kind of referral %q (one of %s)", a, strings.Join(renkei.ReferralAcceptances, "、"))
		}
	}
	if p.CareFunctions != nil {
		for _, f := range p.CareFunctions {
			if !slices.Contains(renkei.CareFunctions, f) {
				return renkei.Errorj(op, renkei.Invalid, "医療機能 %q はありません(%s のいずれかにしてください)。",
					"unknown care function %q (one of %s)", f, strings.Join(renkei.CareFunctions, "、"))
			}
		}
		in, err := s.Store.InstitutionByPK(ctx, institution)
		if err != nil {
			return err
		}
		in.CareFunctions = p.CareFunctions
		e := renkei.EventFor(c, renkei.ActionAdmin, renkei.OutcomeSuccess)
		e.DataInstitution, e.Detail = institution, "care functions set to "+strings.Join(p.CareFunctions, "、")
		if err := s.Store.PutInstitution(ctx, &in, &e); err != nil {
			return err
		}
		p.CareFunctions = nil // kept on the institution, not twice
	}
	p.Institution, p.UpdatedBy = institution, c.Name
	e := renkei.EventFor(c, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.DataInstitution, e.Detail = institution, "directory profile updated"
	return s.Store.PutProfile(ctx, &p, &e)
}

// ReportCapacity records capacity items of an institution, each stamped now, if the caller keeps it.
func (s *Service) ReportCapacity(ctx context.Context, institution int64, items []renkei.CapacityItem) error {
	const op = "directory.ReportCapacity"
	c, err := principal(ctx, op)
	if err != nil {
		return err
	}
	if !mayEdit(c, institution) {
		return renkei.Errorj(op, renkei.Forbidden, "施設の受入れ状況を報告できるのは、その施設の管理者か地域連携室だけです。",
			"an institution's capacity is reported by its own administrator or 地域連携室")
	}
	if len(items) == 0 {
		return renkei.Errorj(op, renkei.Invalid, "報告する内容がありません。", "nothing to report")
	}
	now := s.Now()
	var keys []string
	for i := range items {
		it := &items[i]
		switch {
		case it.Key == renkei.CapacityEmergency:
			if !slices.Contains([]string{renkei.EmergencyYes, renkei.EmergencyNo, renkei.EmergencyPartial}, it.Emergency) {
				return renkei.Errorj(op, renkei.Invalid, "救急の受入れは、可・不可・一部可のいずれかにしてください。", "emergency acceptance must be yes, no or partial")
			}
			if it.Emergency == renkei.EmergencyPartial && len(it.Only) == 0 {
				return renkei.Errorj(op, renkei.Invalid, "一部のみ受入れ可能な場合は、受け入れる診療科を入力してください。", "say which specialties are accepted when only some are")
			}
		case strings.HasPrefix(it.Key, renkei.CapacityBedsPrefix):
			if !slices.Contains(renkei.WardKinds, strings.TrimPrefix(it.Key, renkei.CapacityBedsPrefix)) {
				return renkei.Errorj(op, renkei.Invalid, "%q の病棟の種類がわかりません。", "unknown ward kind in %q", it.Key)
			}
			if it.Beds == nil || *it.Beds < 0 || *it.Beds > 10000 {
				return renkei.Errorj(op, renkei.Invalid, "空床数は0以上の数にしてください。", "free beds must be a number from 0")
			}
		case it.Key == renkei.CapacityOnCall, it.Key == renkei.CapacityNote:
		default:
			return renkei.Errorj(op, renkei.Invalid, "受入れ状況の項目 %q はありません。", "unknown capacity item %q", it.Key)
		}
		it.UpdatedAt, it.UpdatedBy = now, c.Name
		keys = append(keys, it.Key)
	}
	e := renkei.EventFor(c, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.DataInstitution, e.Detail = institution, fmt.Sprintf("capacity reported: %s", strings.Join(keys, ", "))
	return s.Store.PutCapacity(ctx, institution, items, &e)
}
