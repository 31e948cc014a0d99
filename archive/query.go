package archive

import (
	"context"
	"strings"
	"time"
	"unicode"

	"renkei"
	"renkei/dicom"
	"renkei/dicom/charset"

	"golang.org/x/text/unicode/norm"
)

// MaxResults bounds one query's answer; a client pages with offset beyond it.
const MaxResults = 10000

// Matchable reports whether the index can match the attribute at the level (others are ignored with a warning).
func (s *Service) Matchable(level renkei.QueryLevel, keyword string) bool {
	return s.Index.Matchable(level, keyword)
}

// ParseMatch turns one query key as DICOM writes it (PS3.4 C.2.2.2: single value, UID list, wildcard, range) into a
// Match. An empty value is universal matching: ok is false and nothing needs to be matched.
func ParseMatch(keyword, value string) (m renkei.Match, ok bool, err error) {
	t, err := dicom.ParseTag(keyword)
	if err != nil {
		return m, false, renkei.Errorf("archive.Query", renkei.Invalid, "%v", err)
	}
	keyword = dicom.Keyword(t)
	m.Keyword = keyword
	vr := dicom.VR(t)
	value = strings.TrimSpace(value)
	if value == "" || value == "*" {
		return m, false, nil
	}
	switch {
	case vr == "UI" || keyword == "ModalitiesInStudy":
		vals := strings.FieldsFunc(value, func(r rune) bool { return r == '\\' || r == ',' })
		for _, v := range vals {
			if vr == "UI" && !dicom.ValidUID(v) {
				return m, false, renkei.Errorf("archive.Query", renkei.Invalid, "%s %q is not a valid UID", keyword, truncate(v, 80))
			}
		}
		if len(vals) == 1 {
			m.Kind, m.Value = renkei.MatchSingle, vals[0]
		} else {
			m.Kind, m.Values = renkei.MatchList, vals
		}
		if keyword == "ModalitiesInStudy" {
			m.Kind, m.Values = renkei.MatchList, vals
		}
	case vr == "DA" || vr == "TM" || vr == "DT":
		norm := func(v string, upper bool) string {
			switch vr {
			case "DA":
				v = NormalizeDate(v)
			case "TM":
				v = NormalizeTime(v, upper)
			}
			return v
		}
		if lo, hi, isRange := strings.Cut(value, "-"); isRange && vr != "DT" || isRange && strings.Count(value, "-") == 1 {
			m.Kind, m.Lo, m.Hi = renkei.MatchRange, norm(lo, false), norm(hi, true)
			if vr == "DA" && (!validDate(m.Lo) || !validDate(m.Hi)) {
				return m, false, renkei.Errorf("archive.Query", renkei.Invalid, "%s %q is not a date range (YYYYMMDD-YYYYMMDD)", keyword, value)
			}
			if vr == "TM" && (!validTime(m.Lo) || !validTime(m.Hi)) {
				return m, false, renkei.Errorf("archive.Query", renkei.Invalid, "%s %q is not a time range (HHMMSS-HHMMSS)", keyword, value)
			}
			if m.Lo == "" && m.Hi == "" {
				return m, false, nil
			}
		} else {
			if vr == "DA" && !validDate(norm(value, false)) {
				return m, false, renkei.Errorf("archive.Query", renkei.Invalid, "%s %q is not a date (YYYYMMDD)", keyword, value)
			}
			m.Kind, m.Value = renkei.MatchSingle, norm(value, false)
			if vr == "TM" && !validTime(NormalizeTime(value, false)) {
				return m, false, renkei.Errorf("archive.Query", renkei.Invalid, "%s %q is not a time (HHMMSS)", keyword, value)
			}
			if vr == "TM" {
				// A single time matches the whole of the unit it names: 1015 is 10:15:00 to 10:15:59.
				m.Kind, m.Lo, m.Hi = renkei.MatchRange, NormalizeTime(value, false), NormalizeTime(value, true)
			}
		}
	case vr == "PN":
		m.Value = charset.Fold(value)
		m.Value = strings.TrimRight(m.Value, "^")
		m.Kind = renkei.MatchSingle
		if strings.ContainsAny(m.Value, "*?") {
			m.Kind = renkei.MatchWildcard
		}
	default:
		m.Kind, m.Value = renkei.MatchSingle, value
		if strings.ContainsAny(value, "*?") {
			m.Kind = renkei.MatchWildcard
		} else if strings.Contains(value, "\\") {
			m.Kind, m.Values = renkei.MatchList, strings.Split(value, "\\")
		}
	}
	return m, true, nil
}

// ParseMatches is ParseMatch for a value that may name a person with its component groups (alphabetic=ideographic=
// phonetic, PS3.5 6.2.1.2), as a workstation sends back the whole name of an earlier answer: the index keeps one key
// per group, so each non-empty group is a match of its own, all of which must hold; an empty group is universal.
// Other values give ParseMatch's one match, or none for universal matching.
func ParseMatches(keyword, value string) ([]renkei.Match, error) {
	t, err := dicom.ParseTag(keyword)
	if err != nil {
		return nil, renkei.Errorf("archive.Query", renkei.Invalid, "%v", err)
	}
	groups := []string{value}
	if dicom.VR(t) == "PN" {
		groups = strings.Split(value, "=")
	}
	var out []renkei.Match
	for _, g := range groups {
		m, ok, err := ParseMatch(keyword, g)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// validDate reports whether s (normalised) is empty or a calendar date YYYYMMDD (PS3.5 Table 6.2-1, DA).
func validDate(s string) bool {
	if s == "" {
		return true
	}
	if len(s) != 8 || !digits(s) {
		return false
	}
	_, err := time.Parse("20060102", s)
	return err == nil
}

// validTime reports whether s (normalised by NormalizeTime) is empty or HHMMSS[.F{1,6}] with HH 00–23, MM 00–59 and
// SS 00–60 (PS3.5 Table 6.2-1, TM: 60 is a leap second).
func validTime(s string) bool {
	if s == "" {
		return true
	}
	hms, frac, hasFrac := strings.Cut(s, ".")
	if len(hms) != 6 || !digits(hms) || hasFrac && (len(frac) == 0 || len(frac) > 6 || !digits(frac)) {
		return false
	}
	return hms[:2] <= "23" && hms[2:4] <= "59" && hms[4:] <= "60"
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (s *Service) checkQuery(q *renkei.Query) {
	if q.Limit <= 0 || q.Limit > MaxResults {
		q.Limit = MaxResults
	}
}

// QueryStudies finds studies.
func (s *Service) QueryStudies(ctx context.Context, q *renkei.Query) ([]renkei.StudyRecord, error) {
	s.checkQuery(q)
	return s.Index.QueryStudies(ctx, q)
}

// QuerySeries finds series.
func (s *Service) QuerySeries(ctx context.Context, q *renkei.Query) ([]renkei.SeriesRecord, error) {
	s.checkQuery(q)
	return s.Index.QuerySeries(ctx, q)
}

// QueryInstances finds instances.
func (s *Service) QueryInstances(ctx context.Context, q *renkei.Query) ([]renkei.InstanceRecord, error) {
	s.checkQuery(q)
	return s.Index.QueryInstances(ctx, q)
}

// maxPatients bounds the answer of a patient search: it serves a person choosing one patient from a short list.
const maxPatients = 50

// QueryPatients finds local patients by the start of their ID or name, studies or not (see renkei.PatientQuery).
// Text without a letter or digit is renkei.Invalid.
func (s *Service) QueryPatients(ctx context.Context, q *renkei.PatientQuery) ([]renkei.PatientRecord, error) {
	if !strings.ContainsFunc(q.Text, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) {
		return nil, renkei.Errorj("archive.QueryPatients", renkei.Invalid, "患者IDか氏名の最初の文字を入力してください。",
			"type the start of the patient ID or name")
	}
	// The ID as typed at a Japanese keyboard: full-width ＰＡＴ１２ is PAT12, spaces are none, case does not count. The
	// name as the index folds names (kana, width, case, variant kanji), without the wildcards and delimiters of a PN.
	q.IDPrefix = strings.ToUpper(strings.Join(strings.Fields(norm.NFKC.String(q.Text)), ""))
	q.NameKey = strings.Trim(strings.Map(func(r rune) rune {
		if r == '*' || r == '?' || r == '=' || r == '\\' {
			return -1
		}
		return r
	}, charset.Fold(q.Text)), "^")
	if q.Limit <= 0 || q.Limit > maxPatients {
		q.Limit = maxPatients
	}
	return s.Index.QueryPatients(ctx, q)
}

// Instances returns the live instances of a study, a series of it, or one instance; none is a renkei.NotFound error.
func (s *Service) Instances(ctx context.Context, study, series, instance string) ([]renkei.InstanceRecord, error) {
	q := &renkei.Query{Level: renkei.InstanceLevel, Limit: -1}
	for _, kv := range [][2]string{{"StudyInstanceUID", study}, {"SeriesInstanceUID", series}, {"SOPInstanceUID", instance}} {
		if kv[1] == "" {
			continue
		}
		if !dicom.ValidUID(kv[1]) {
			return nil, renkei.Errorf("archive.Instances", renkei.Invalid, "%s %q is not a valid UID", kv[0], truncate(kv[1], 80))
		}
		q.Matches = append(q.Matches, renkei.Match{Keyword: kv[0], Kind: renkei.MatchSingle, Value: kv[1]})
	}
	recs, err := s.Index.QueryInstances(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		what := "study"
		switch {
		case instance != "":
			what = "instance"
		case series != "":
			what = "series"
		}
		return nil, renkei.Errorf("archive.Instances", renkei.NotFound, "no such %s", what)
	}
	return recs, nil
}
