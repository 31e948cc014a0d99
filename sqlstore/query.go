package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"renkei"
)

type colKind int

const (
	colText colKind = iota
	colUID
	colDate
	colTime
	colInt
	colPN
	colModalities
)

type column struct {
	expr  string
	kind  colKind
	level renkei.QueryLevel
}

// columns maps the attributes the index can match to their columns. An attribute matches at its own level and below.
var columns = map[string]column{
	"PatientName":                     {"", colPN, renkei.StudyLevel},
	"PatientID":                       {"p.patient_id", colText, renkei.StudyLevel},
	"IssuerOfPatientID":               {"p.issuer", colText, renkei.StudyLevel},
	"PatientBirthDate":                {"p.birth_date", colDate, renkei.StudyLevel},
	"PatientSex":                      {"p.sex", colText, renkei.StudyLevel},
	"StudyInstanceUID":                {"s.study_uid", colUID, renkei.StudyLevel},
	"StudyDate":                       {"s.study_date", colDate, renkei.StudyLevel},
	"StudyTime":                       {"s.study_time", colTime, renkei.StudyLevel},
	"AccessionNumber":                 {"s.accession", colText, renkei.StudyLevel},
	"StudyID":                         {"s.study_id", colText, renkei.StudyLevel},
	"StudyDescription":                {"s.description", colText, renkei.StudyLevel},
	"ReferringPhysicianName":          {"s.referring_key", colPN, renkei.StudyLevel},
	"ModalitiesInStudy":               {"", colModalities, renkei.StudyLevel},
	"SeriesInstanceUID":               {"r.series_uid", colUID, renkei.SeriesLevel},
	"Modality":                        {"r.modality", colText, renkei.SeriesLevel},
	"SeriesNumber":                    {"r.series_number", colInt, renkei.SeriesLevel},
	"SeriesDescription":               {"r.description", colText, renkei.SeriesLevel},
	"BodyPartExamined":                {"r.body_part", colText, renkei.SeriesLevel},
	"SeriesDate":                      {"r.series_date", colDate, renkei.SeriesLevel},
	"SeriesTime":                      {"r.series_time", colTime, renkei.SeriesLevel},
	"PerformedProcedureStepStartDate": {"r.pps_date", colDate, renkei.SeriesLevel},
	"PerformedProcedureStepStartTime": {"r.pps_time", colTime, renkei.SeriesLevel},
	"SOPInstanceUID":                  {"i.sop_uid", colUID, renkei.InstanceLevel},
	"SOPClassUID":                     {"i.sop_class", colUID, renkei.InstanceLevel},
	"InstanceNumber":                  {"i.instance_number", colInt, renkei.InstanceLevel},
}

// Matchable reports whether the index can match the attribute at the level.
func (db *DB) Matchable(level renkei.QueryLevel, keyword string) bool {
	c, ok := columns[keyword]
	return ok && c.level <= level
}

// globPattern turns a DICOM wildcard pattern into an SQLite GLOB pattern, escaping GLOB's own specials.
func globPattern(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch r {
		case '[':
			b.WriteString("[[]")
		case ']':
			b.WriteString("[]]")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// globCond matches expr against a GLOB pattern (glob(pattern, expr) is SQLite's expr GLOB pattern; postgres.sql
// defines it for PostgreSQL), avoiding GLOB where it can: a GLOB whose right side is a bound
// parameter makes SQLite prepare the statement again whenever the value changes (to try its LIKE optimisation), and
// modernc's parser costs more than the query itself. A literal prefix becomes an index range.
func globCond(expr, pattern string) (string, []any) {
	cut := strings.IndexAny(pattern, "*?[")
	if cut < 0 {
		return expr + " = ?", []any{pattern}
	}
	prefix := pattern[:cut]
	if prefix == "" {
		return "glob(?, " + expr + ")", []any{pattern}
	}
	// Every text starting with prefix sorts from prefix up to prefix followed by the last code point. "prefix*" (a
	// name's beginning, the common search) is that range alone; anything else adds the GLOB.
	rng := expr + " >= ? AND " + expr + " < ?"
	if cut == len(pattern)-1 && pattern[cut] == '*' {
		return rng, []any{prefix, prefix + "\U0010FFFF"}
	}
	return rng + " AND glob(?, " + expr + ")", []any{prefix, prefix + "\U0010FFFF", pattern}
}

// dateTimePairs are the attributes of VR DA and TM that together say when something happened: with
// renkei.Query.CombinedDateTime they are matched as one range (PS3.4 C.2.2.2.5.1).
var dateTimePairs = [...][2]string{
	{"StudyDate", "StudyTime"},
	{"SeriesDate", "SeriesTime"},
	{"PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"},
}

// bounds returns the range of a date or time match: a single value is a range of itself. ok is false for the
// kinds no range can stand for.
func bounds(m renkei.Match) (lo, hi string, ok bool) {
	switch m.Kind {
	case renkei.MatchSingle:
		return m.Value, m.Value, true
	case renkei.MatchRange:
		return m.Lo, m.Hi, true
	}
	return "", "", false
}

// dateTimeConds matches the pairs of date and time matches of q as ranges of moments (PS3.4 C.2.2.2.5.1): Study
// Date 20060705-20060707 with Study Time 1000-1800 is from July 5 at 10:00 to July 7 at 18:00, not 10:00 to 18:00
// on each of the three days. The dates and times are stored normalised (archive.NormalizeDate, NormalizeTime), so
// that they compare as text; an empty stored time stands for the whole day, so a study of a day in the range whose
// time is unknown matches. An empty stored date matches no range (PS3.4 C.2.2.2.5). It returns the conditions, their
// arguments, and the indexes of the matches they replace. A pair with either key universal (absent) is left to
// the matching of its one key.
func dateTimeConds(q *renkei.Query) (conds []string, args []any, done map[int]bool) {
	if !q.CombinedDateTime {
		return nil, nil, nil
	}
	done = map[int]bool{}
	for _, p := range dateTimePairs {
		di, ti := -1, -1
		for i, m := range q.Matches {
			switch {
			case m.Keyword == p[0] && di < 0:
				di = i
			case m.Keyword == p[1] && ti < 0:
				ti = i
			}
		}
		if di < 0 || ti < 0 {
			continue
		}
		dlo, dhi, okd := bounds(q.Matches[di])
		tlo, thi, okt := bounds(q.Matches[ti])
		dc, tc := columns[p[0]], columns[p[1]]
		if !okd || !okt || dc.level > q.Level || tc.level > q.Level {
			continue // matched one by one, which reports the level
		}
		d, t := dc.expr, tc.expr
		conds = append(conds, d+" <> ''")
		// The date bounds alone come first, so that an index on the date serves the range.
		if dlo != "" {
			conds, args = append(conds, d+" >= ?"), append(args, dlo)
			if tlo != "" {
				conds, args = append(conds, "("+d+" > ? OR "+t+" >= ? OR "+t+" = '')"), append(args, dlo, tlo)
			}
		}
		if dhi != "" {
			conds, args = append(conds, d+" <= ?"), append(args, dhi)
			if thi != "" {
				conds, args = append(conds, "("+d+" < ? OR "+t+" <= ? OR "+t+" = '')"), append(args, dhi, thi)
			}
		}
		done[di], done[ti] = true, true
	}
	return conds, args, done
}

func where(q *renkei.Query) (string, []any, error) {
	conds, args, done := dateTimeConds(q)
	for i, m := range q.Matches {
		c, ok := columns[m.Keyword]
		if !ok || c.level > q.Level {
			return "", nil, renkei.Errorf("index.Query", renkei.Invalid, "attribute %s cannot be matched at this level", m.Keyword)
		}
		if done[i] {
			continue
		}
		switch c.kind {
		case colPN:
			// The pattern a name key is compared with: exact, a DICOM wildcard, or (fuzzy) a prefix.
			var pattern string
			exact := false
			switch {
			case m.Kind == renkei.MatchWildcard:
				pattern = globPattern(m.Value)
			case q.FuzzyMatching:
				pattern = globPattern(m.Value) + "*"
			default:
				exact = true
			}
			if m.Keyword == "PatientName" {
				var cond string
				var cargs []any
				if exact {
					cond, cargs = "key = ?", []any{m.Value}
				} else {
					cond, cargs = globCond("key", pattern)
				}
				if !q.FuzzyMatching {
					// The \x01 keys (one component alone) are for fuzzy matching only: without it, "?Tarou" must not
					// match the given name of Yamada^Tarou.
					cond += " AND substr(key, 1, 1) <> '\x01'"
				} else {
					// PS3.18 8.3.4.1: fuzzy matching lets a name match on the start of any component too.
					fc, fargs := globCond("key", "\x01"+globPattern(m.Value)+"*")
					cond = "(" + cond + ") OR (" + fc + ")"
					cargs = append(cargs, fargs...)
				}
				conds, args = append(conds, "p.pk IN (SELECT patient_pk FROM patient_names WHERE "+cond+")"), append(args, cargs...)
			} else {
				// Other names keep all their keys in one column, each between \x1f delimiters (see archive.NameKeyList).
				pat := "*\x1f" + globPattern(m.Value) + "\x1f*"
				if m.Kind != renkei.MatchWildcard && !q.FuzzyMatching {
					pat = "*\x1f" + strings.NewReplacer("*", "[*]", "?", "[?]").Replace(globPattern(m.Value)) + "\x1f*"
				}
				cond := "glob(?, " + c.expr + ")"
				args = append(args, pat)
				if q.FuzzyMatching {
					cond = "(" + cond + " OR glob(?, " + c.expr + "))"
					args = append(args, "*\x1f\x01"+globPattern(m.Value)+"*")
				}
				conds = append(conds, cond)
			}
		case colModalities:
			vals := m.Values
			if len(vals) == 0 {
				vals = []string{m.Value}
			}
			ph := strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")
			conds = append(conds, "EXISTS (SELECT 1 FROM series mr WHERE mr.study_pk = s.pk AND mr.deleted_at IS NULL AND mr.modality IN ("+ph+"))")
			for _, v := range vals {
				args = append(args, v)
			}
		default:
			switch m.Kind {
			case renkei.MatchSingle:
				conds, args = append(conds, c.expr+" = ?"), append(args, m.Value)
			case renkei.MatchList:
				ph := strings.TrimSuffix(strings.Repeat("?,", len(m.Values)), ",")
				conds = append(conds, c.expr+" IN ("+ph+")")
				for _, v := range m.Values {
					args = append(args, v)
				}
			case renkei.MatchWildcard:
				cond, cargs := globCond(c.expr, globPattern(m.Value))
				conds, args = append(conds, cond), append(args, cargs...)
			case renkei.MatchRange:
				if m.Lo != "" {
					conds, args = append(conds, c.expr+" >= ?"), append(args, m.Lo)
				}
				if m.Hi != "" {
					conds, args = append(conds, c.expr+" <= ?"), append(args, m.Hi)
				}
				if c.kind == colDate || c.kind == colTime {
					conds = append(conds, c.expr+" <> ''") // PS3.4 C.2.2.2.5: an empty value does not match a range
				}
			}
		}
	}
	if len(conds) == 0 {
		return "", args, nil
	}
	return " AND " + strings.Join(conds, " AND "), args, nil
}

func deletedCond(alias string, q *renkei.Query) (string, []any) {
	c := alias + ".deleted_at IS NULL"
	if q.Deleted {
		c = alias + ".deleted_at IS NOT NULL"
	}
	var args []any
	if len(q.Patients) > 0 {
		c += " AND s.patient_pk IN (" + placeholders(len(q.Patients)) + ")"
		args = appendKeys(args, q.Patients)
	}
	if q.Owner != 0 {
		c += " AND s.institution_pk = ?"
		args = append(args, q.Owner)
	}
	sc, scArgs := scopeCond(q.Scope, selective(q))
	return c + sc, append(args, scArgs...)
}

// selective reports whether a query narrows the studies to a few before the scope is checked (a name, an ID, a
// UID, one patient): then the shares are looked up for each candidate; a browse of everything (a list by date)
// collects the caller's shares once instead.
func selective(q *renkei.Query) bool {
	if len(q.Patients) > 0 {
		return true
	}
	for _, m := range q.Matches {
		switch m.Keyword {
		case "PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "AccessionNumber":
			return true
		}
	}
	return false
}

// placeholders returns n comma-separated bind placeholders. Keys are bound, not written into the SQL, so that the
// text of a query depends only on its shape and its prepared statement is reused.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func appendKeys(args []any, keys []int64) []any {
	for _, k := range keys {
		args = append(args, k)
	}
	return args
}

// scopeCond limits a query to what the scope may see: studies owned by its institutions, granted with their
// patient or one by one, or granted by the shares in force for a grantee.
func scopeCond(sc *renkei.Scope, selective bool) (string, []any) {
	if sc == nil {
		return "", nil
	}
	var or []string
	var args []any
	list := func(col string, keys []int64) {
		if len(keys) > 0 {
			or = append(or, col+" IN ("+placeholders(len(keys))+")")
			args = appendKeys(args, keys)
		}
	}
	// For an institution's scope the unary + keeps SQLite from answering the OR by collecting every study in scope
	// through three indexes and sorting them (ten times slower than the query itself at 100,000 studies): it walks
	// the date index instead, which holds the owner and the patient, and stops at the page's end. A patient's scope
	// (a few local patients, no institution) is better served by the patient index.
	plus := ""
	if len(sc.Institutions) > 0 || sc.Grantee != nil {
		plus = "+"
	}
	list(plus+"s.institution_pk", sc.Institutions)
	if !sc.OwnOnly {
		list(plus+"s.patient_pk", sc.Patients)
		list(plus+"s.pk", sc.Studies)
		if g := sc.Grantee; g != nil {
			// The shares in force for the grantee, evaluated once per query (SQLite materialises IN subqueries).
			const active = `sh.revoked_at IS NULL AND sh.expires_at > ? AND (sh.to_institution = ? OR (sh.to_user <> 0 AND sh.to_user = ?))`
			if selective {
				// Few candidates: ask for each whether a share grants it (indexes shares_patient, share_studies_study).
				or = append(or, `EXISTS (SELECT 1 FROM shares sh WHERE sh.patient_pk = s.patient_pk AND sh.all_studies = 1 AND `+active+`)`,
					`EXISTS (SELECT 1 FROM share_studies ss JOIN shares sh ON sh.pk = ss.share_pk WHERE ss.study_pk = s.pk AND sh.all_studies = 0 AND `+active+`)`)
			} else {
				or = append(or, `+s.patient_pk IN (SELECT sh.patient_pk FROM shares sh WHERE sh.all_studies = 1 AND `+active+`)`,
					`+s.pk IN (SELECT ss.study_pk FROM shares sh JOIN share_studies ss ON ss.share_pk = sh.pk WHERE sh.all_studies = 0 AND `+active+`)`)
			}
			for range 2 {
				args = append(args, g.At.UnixMilli(), g.Institution, g.User)
			}
		}
	}
	if len(or) == 0 {
		return " AND 0 = 1", nil
	}
	return " AND (" + strings.Join(or, " OR ") + ")", args
}

func limitOffset(q *renkei.Query) string {
	s := ""
	if q.Limit > 0 {
		s = fmt.Sprintf(" LIMIT %d", q.Limit)
	} else {
		s = " LIMIT 9223372036854775807" // none: PostgreSQL refuses SQLite's LIMIT -1
	}
	if q.Offset > 0 {
		s += fmt.Sprintf(" OFFSET %d", q.Offset)
	}
	return s
}

const studyCols = `s.institution_pk, s.patient_pk, s.pk, p.issuer, p.patient_id, p.name, p.birth_date, p.sex, s.study_uid, s.study_date, s.study_time, s.accession,
	s.study_id, s.description, s.referring, s.tz_offset, s.modalities, s.num_series, s.num_instances, s.attrs, s.deleted_at`

func scanStudy(dst *renkei.StudyRecord) []any {
	return []any{&dst.Institution, &dst.PatientPK, &dst.StudyPK, &dst.Patient.Issuer, &dst.Patient.ID, &dst.PatientName, &dst.PatientBirthDate, &dst.PatientSex,
		&dst.StudyInstanceUID, &dst.StudyDate, &dst.StudyTime, &dst.AccessionNumber, &dst.StudyID, &dst.StudyDescription,
		&dst.ReferringPhysicianName, &dst.TimezoneOffsetFromUTC, (*modList)(&dst.ModalitiesInStudy), &dst.NumberOfSeries,
		&dst.NumberOfInstances, &dst.Attrs, msTimeScanner{&dst.DeletedAt}}
}

type modList []string

func (m *modList) Scan(v any) error {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case []byte:
		s = string(x)
	}
	*m = nil
	if s != "" {
		*m = strings.Split(s, `\`)
	}
	return nil
}

func scanMS(dst **time.Time, v any) {
	if n, ok := v.(int64); ok {
		t := time.UnixMilli(n)
		*dst = &t
	} else {
		*dst = nil
	}
}

type msTimeScanner struct{ dst **time.Time }

func (s msTimeScanner) Scan(v any) error { scanMS(s.dst, v); return nil }

type intPtr struct{ dst **int }

func (s intPtr) Scan(v any) error {
	if n, ok := v.(int64); ok {
		i := int(n)
		*s.dst = &i
	} else {
		*s.dst = nil
	}
	return nil
}

// studyOrders are the orders a study list can be sorted in; every one ends with the key so that pages never overlap.
var studyOrders = map[string]string{
	"":           ` ORDER BY s.study_date DESC, s.study_time DESC, s.pk DESC`,
	"date":       ` ORDER BY s.study_date DESC, s.study_time DESC, s.pk DESC`,
	"date-asc":   ` ORDER BY s.study_date, s.study_time, s.pk`,
	"name":       ` ORDER BY p.name, s.study_date DESC, s.pk DESC`,
	"patient-id": ` ORDER BY p.patient_id, s.study_date DESC, s.pk DESC`,
}

// QueryStudies returns the studies that match q, newest first unless q.Sort says otherwise.
func (db *DB) QueryStudies(ctx context.Context, q *renkei.Query) ([]renkei.StudyRecord, error) {
	w, args, err := where(q)
	if err != nil {
		return nil, err
	}
	order, ok := studyOrders[q.Sort]
	if !ok {
		return nil, renkei.Errorf("index.Query", renkei.Invalid, "studies cannot be sorted by %q", q.Sort)
	}
	if browsable(q) && !db.noBrowse {
		return db.browseStudies(ctx, q, w, args)
	}
	dc, dargs := deletedCond("s", q)
	args = append(dargs, args...)
	query := `SELECT ` + studyCols + ` FROM studies s JOIN patients p ON p.pk = s.patient_pk WHERE ` + dc + w + order + limitOffset(q)
	return db.studyRows(ctx, query, args)
}

// studyRows runs a query that selects studyCols and returns its rows.
func (db *DB) studyRows(ctx context.Context, query string, args []any) ([]renkei.StudyRecord, error) {
	rows, err := db.queryContext(ctx, query, args...)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.StudyRecord
	for rows.Next() {
		var st renkei.StudyRecord
		if err := rows.Scan(scanStudy(&st)...); err != nil {
			return nil, queryErr(err)
		}
		out = append(out, st)
	}
	return out, queryErr(rows.Err())
}

const seriesCols = `r.series_uid, r.modality, r.series_number, r.description, r.body_part, r.series_date, r.series_time,
	r.pps_date, r.pps_time, r.num_instances, r.attrs, r.deleted_at`

func scanSeries(se *renkei.SeriesRecord) []any {
	return append(scanStudy(&se.Study), &se.SeriesInstanceUID, &se.Modality, intPtr{&se.SeriesNumber}, &se.SeriesDescription, &se.BodyPartExamined,
		&se.SeriesDate, &se.SeriesTime, &se.PPSStartDate, &se.PPSStartTime, &se.NumberOfInstances, &se.Attrs, msTimeScanner{&se.DeletedAt})
}

// QuerySeries returns the series that match q.
func (db *DB) QuerySeries(ctx context.Context, q *renkei.Query) ([]renkei.SeriesRecord, error) {
	w, args, err := where(q)
	if err != nil {
		return nil, err
	}
	dc, dargs := deletedCond("r", q)
	args = append(dargs, args...)
	query := `SELECT ` + studyCols + `, ` + seriesCols + ` FROM series r JOIN studies s ON s.pk = r.study_pk JOIN patients p ON p.pk = s.patient_pk
		WHERE ` + dc + w + ` ORDER BY s.study_date DESC, s.pk DESC, r.series_number IS NULL, r.series_number, r.pk` + limitOffset(q)
	rows, err := db.queryContext(ctx, query, args...)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.SeriesRecord
	for rows.Next() {
		var se renkei.SeriesRecord
		if err := rows.Scan(scanSeries(&se)...); err != nil {
			return nil, queryErr(err)
		}
		out = append(out, se)
	}
	return out, queryErr(rows.Err())
}

const instanceCols = `i.sop_uid, i.sop_class, i.instance_number, i.ts_uid, i.rows, i.columns, i.frames, i.bits_allocated,
	i.blob_key, i.size, i.attrs, i.received_at, i.deleted_at, i.charset`

// noAttrs selects NULL for the three DICOM JSON headers of an instance row (renkei.Query.NoAttrs): they are most
// of its bytes, and the sort carries them.
var noAttrs = strings.NewReplacer("s.attrs", "NULL", "r.attrs", "NULL", "i.attrs", "NULL")

// QueryInstances returns the instances that match q, in series and instance number order.
func (db *DB) QueryInstances(ctx context.Context, q *renkei.Query) ([]renkei.InstanceRecord, error) {
	w, args, err := where(q)
	if err != nil {
		return nil, err
	}
	dc, dargs := deletedCond("i", q)
	args = append(dargs, args...)
	cols := studyCols + `, ` + seriesCols + `, ` + instanceCols
	if q.NoAttrs {
		cols = noAttrs.Replace(cols)
	}
	query := `SELECT ` + cols + ` FROM instances i JOIN series r ON r.pk = i.series_pk
		JOIN studies s ON s.pk = r.study_pk JOIN patients p ON p.pk = s.patient_pk
		WHERE ` + dc + w + ` ORDER BY s.study_date DESC, s.pk DESC, r.series_number IS NULL, r.series_number, r.pk,
		i.instance_number IS NULL, i.instance_number, i.pk` + limitOffset(q)
	rows, err := db.queryContext(ctx, query, args...)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.InstanceRecord
	for rows.Next() {
		var in renkei.InstanceRecord
		var received int64
		dst := append(scanSeries(&in.Series), &in.SOPInstanceUID, &in.SOPClassUID, intPtr{&in.InstanceNumber}, &in.TransferSyntaxUID,
			&in.Rows, &in.Columns, &in.NumberOfFrames, &in.BitsAllocated, &in.BlobKey, &in.Size, &in.Attrs, &received, msTimeScanner{&in.DeletedAt}, &in.Charset)
		if err := rows.Scan(dst...); err != nil {
			return nil, queryErr(err)
		}
		in.ReceivedAt = time.UnixMilli(received)
		out = append(out, in)
	}
	return out, queryErr(rows.Err())
}

func queryErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*renkei.Error); ok {
		return err
	}
	return &renkei.Error{Op: "index.Query", Kind: renkei.Unavailable, Message: "the index could not be read",
		Japanese: "データを読み込めませんでした。しばらくしてからもう一度お試しください。", Err: err}
}

// Trash moves the instances matched by the UIDs (a study, a series of it, or one instance) to the trash, or, with
// restore, back out of it. It returns the number of instances changed; none is a renkei.NotFound error.
func (db *DB) Trash(ctx context.Context, req renkei.TrashRequest) (int, error) {
	// The journal's events of reads go into the chain before this transaction's own (journal.go).
	if err := db.FlushAudit(ctx); err != nil {
		return 0, err
	}
	if req.Purge {
		return db.purgeNow(ctx, req)
	}
	study, series, instance, restore := req.Study, req.Series, req.Instance, req.Restore
	now := db.Now().UnixMilli()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, queryErr(err)
	}
	defer tx.Rollback()
	cond := `s.study_uid = ?`
	args := []any{study}
	if series != "" {
		cond += ` AND r.series_uid = ?`
		args = append(args, series)
	}
	if instance != "" {
		cond += ` AND i.sop_uid = ?`
		args = append(args, instance)
	}
	sc, scArgs := scopeCond(req.Scope, true)
	state := `i.deleted_at IS NULL`
	if restore {
		state = `i.deleted_at IS NOT NULL`
	}
	rows, err := tx.QueryContext(ctx, `SELECT i.pk, s.pk, s.institution_pk, p.issuer, p.patient_id, s.study_uid FROM instances i
		JOIN series r ON r.pk = i.series_pk JOIN studies s ON s.pk = r.study_pk JOIN patients p ON p.pk = s.patient_pk
		WHERE `+cond+` AND `+state+sc, append(args, scArgs...)...)
	if err != nil {
		return 0, queryErr(err)
	}
	var pks []int64
	studies := map[int64]bool{}
	var events []*renkei.AuditEvent
	for rows.Next() {
		var pk, spk, inst int64
		var pat renkei.PatientKey
		var uid string
		if err := rows.Scan(&pk, &spk, &inst, &pat.Issuer, &pat.ID, &uid); err != nil {
			rows.Close()
			return 0, queryErr(err)
		}
		pks = append(pks, pk)
		if !studies[spk] && req.Audit != nil {
			e := *req.Audit
			e.DataInstitution, e.Patient, e.Study = inst, pat, uid
			events = append(events, &e)
		}
		studies[spk] = true
	}
	if err := rows.Close(); err != nil {
		return 0, queryErr(err)
	}
	if len(pks) == 0 {
		if restore {
			return 0, renkei.Errorj("index.Trash", renkei.NotFound, "ごみ箱に戻せるものがありません。", "nothing to restore")
		}
		return 0, renkei.Errorj("index.Trash", renkei.NotFound, "該当する検査・シリーズ・画像はありません。", "no such study, series or instance")
	}
	var val any = now
	if restore {
		val = nil
	}
	for _, pk := range pks {
		if _, err := tx.ExecContext(ctx, `UPDATE instances SET deleted_at = ? WHERE pk = ?`, val, pk); err != nil {
			return 0, queryErr(err)
		}
	}
	for spk := range studies {
		if err := db.recountStudy(ctx, tx, spk, now); err != nil {
			return 0, queryErr(err)
		}
	}
	if err := db.appendAudit(ctx, tx, events); err != nil {
		return 0, queryErr(err)
	}
	if err := tx.Commit(); err != nil {
		return 0, queryErr(err)
	}
	return len(pks), nil
}

// Purge removes from the index the instances that have been in the trash since before cutoff, and the series,
// studies and patients left empty. It returns the blob keys no remaining instance refers to, for the caller to delete
// after the index no longer points at them. The trash is purged in one transaction; if that fails, study by study,
// so that one study that cannot be purged (a row that still refers to it) does not keep the rest in the trash and
// on disk: the error (renkei.Unavailable) then names the studies left, and the keys of the others are returned
// with it.
func (db *DB) Purge(ctx context.Context, cutoff time.Time) ([]string, error) {
	keys, err := db.purge(ctx, cutoff.UnixMilli(), 0)
	if err == nil || ctx.Err() != nil {
		return keys, purgeErr(err)
	}
	rows, qerr := db.read.QueryContext(ctx, `SELECT DISTINCT r.study_pk FROM instances i JOIN series r ON r.pk = i.series_pk
		WHERE i.deleted_at IS NOT NULL AND i.deleted_at < ? ORDER BY r.study_pk`, cutoff.UnixMilli())
	if qerr != nil {
		return nil, purgeErr(errors.Join(err, qerr))
	}
	var pks []int64
	for rows.Next() {
		var pk int64
		if err := rows.Scan(&pk); err != nil {
			rows.Close()
			return nil, purgeErr(err)
		}
		pks = append(pks, pk)
	}
	if err := rows.Close(); err != nil {
		return nil, purgeErr(err)
	}
	keys = nil
	var failed []error
	for _, pk := range pks {
		k, err := db.purge(ctx, cutoff.UnixMilli(), pk)
		if err != nil {
			if ctx.Err() != nil {
				return keys, purgeErr(err)
			}
			failed = append(failed, err)
			continue
		}
		keys = append(keys, k...)
	}
	if len(failed) == 0 {
		return keys, nil // what failed as a whole went through study by study (it changed meanwhile)
	}
	return keys, &renkei.Error{Op: "index.Purge", Kind: renkei.Unavailable,
		Message: fmt.Sprintf("%d of %d studies in the trash could not be purged; the others were", len(failed), len(pks)), Err: errors.Join(failed...)}
}

func purgeErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*renkei.Error); ok {
		return err
	}
	return &renkei.Error{Op: "index.Purge", Kind: renkei.Unavailable, Message: "the trash could not be purged", Japanese: "ごみ箱を空にできませんでした。", Err: err}
}

// purgeNow removes the studies of req.Study within req.Scope that are wholly in the trash (TrashRequest.Purge),
// each with its audit event, and returns the number of instances removed.
func (db *DB) purgeNow(ctx context.Context, req renkei.TrashRequest) (int, error) {
	if req.Series != "" || req.Instance != "" {
		return 0, renkei.Errorj("index.Trash", renkei.Invalid, "完全に削除できるのは、検査単位だけです。", "only a whole study is purged at once")
	}
	sc, scArgs := scopeCond(req.Scope, true)
	rows, err := db.read.QueryContext(ctx, `SELECT s.pk, s.institution_pk, p.issuer, p.patient_id,
		(SELECT count(*) FROM instances i JOIN series r ON r.pk = i.series_pk WHERE r.study_pk = s.pk)
		FROM studies s JOIN patients p ON p.pk = s.patient_pk WHERE s.study_uid = ? AND s.deleted_at IS NOT NULL`+sc, append([]any{req.Study}, scArgs...)...)
	if err != nil {
		return 0, queryErr(err)
	}
	type found struct {
		pk, inst int64
		pat      renkei.PatientKey
		n        int
	}
	var list []found
	for rows.Next() {
		var f found
		if err := rows.Scan(&f.pk, &f.inst, &f.pat.Issuer, &f.pat.ID, &f.n); err != nil {
			rows.Close()
			return 0, queryErr(err)
		}
		list = append(list, f)
	}
	if err := rows.Close(); err != nil {
		return 0, queryErr(err)
	}
	if len(list) == 0 {
		return 0, renkei.Errorj("index.Trash", renkei.NotFound, "検査 %s はごみ箱にありません(先に削除してください)。",
			"there is no study %s in the trash (delete it first)", req.Study)
	}
	total := 0
	for _, f := range list {
		var events []*renkei.AuditEvent
		if req.Audit != nil {
			e := *req.Audit
			e.DataInstitution, e.Patient, e.Study = f.inst, f.pat, req.Study
			events = append(events, &e)
		}
		if _, err := db.purge(ctx, math.MaxInt64, f.pk, events...); err != nil {
			return total, &renkei.Error{Op: "index.Trash", Kind: renkei.Unavailable, Message: "the study could not be purged",
				Japanese: "検査を完全に削除できませんでした。", Err: err}
		}
		total += f.n
	}
	return total, nil
}

// purge is Purge in one transaction: of the whole trash (study 0), or of one study's instances and what they leave
// empty (its series, the study, its patient), with the audit events given.
func (db *DB) purge(ctx context.Context, cutoff, study int64, events ...*renkei.AuditEvent) (keys []string, err error) {
	if err := db.FlushAudit(ctx); err != nil {
		return nil, err
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var uid string
	var patient int64
	inStudy, seriesOf, studyIs, patientIs := "", "", "", ""
	var one []any
	if study != 0 {
		if err := tx.QueryRowContext(ctx, `SELECT study_uid, patient_pk FROM studies WHERE pk = ?`, study).Scan(&uid, &patient); err != nil {
			return nil, fmt.Errorf("purge study %d: %w", study, err)
		}
		defer func() {
			if err != nil {
				err = fmt.Errorf("purge study %s (key %d): %w", uid, study, err)
			}
		}()
		inStudy, seriesOf, studyIs, patientIs = ` AND series_pk IN (SELECT pk FROM series WHERE study_pk = ?)`, ` AND study_pk = ?`, ` AND pk = ?`, ` AND pk = ?`
		one = []any{study}
	}
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT blob_key FROM instances WHERE deleted_at IS NOT NULL AND deleted_at < ?`+inStudy, append([]any{cutoff}, one...)...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return nil, err
		}
		keys = append(keys, k)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM instances WHERE deleted_at IS NOT NULL AND deleted_at < ?`+inStudy, append([]any{cutoff}, one...)...); err != nil {
		return nil, fmt.Errorf("instances: %w", err)
	}
	purged := `SELECT pk FROM studies WHERE deleted_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM series r WHERE r.study_pk = studies.pk)` + studyIs
	var patientArgs []any
	if study != 0 {
		patientArgs = []any{patient}
	}
	for _, st := range []struct {
		what, stmt string
		args       []any
	}{
		{"series", `DELETE FROM series WHERE deleted_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.series_pk = series.pk)` + seriesOf, one},
		// A purged study's key may be given to the next new study: nothing may grant it any longer. A share of chosen
		// studies keeps the others (its rows would otherwise hold the study, and the whole purge, back).
		{"grants", `DELETE FROM study_grants WHERE study_pk IN (` + purged + `)`, one},
		{"shared studies", `DELETE FROM share_studies WHERE study_pk IN (` + purged + `)`, one},
		{"studies", `DELETE FROM studies WHERE deleted_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM series r WHERE r.study_pk = studies.pk)` + studyIs, one},
		// A patient without studies goes too, unless something else is about them: shares, consents, invitations,
		// facts of the clinical record, referrals. Those keep the patient (and stay readable) after their images.
		{"patients", `DELETE FROM patients WHERE NOT EXISTS (SELECT 1 FROM studies s WHERE s.patient_pk = patients.pk)
			AND NOT EXISTS (SELECT 1 FROM shares x WHERE x.patient_pk = patients.pk)
			AND NOT EXISTS (SELECT 1 FROM consents x WHERE x.patient_pk = patients.pk)
			AND NOT EXISTS (SELECT 1 FROM invitations x WHERE x.patient_pk = patients.pk)
			AND NOT EXISTS (SELECT 1 FROM facts x WHERE x.patient_pk = patients.pk)
			AND NOT EXISTS (SELECT 1 FROM referrals x WHERE x.patient_pk = patients.pk)` + patientIs, patientArgs},
	} {
		if _, err := tx.ExecContext(ctx, st.stmt, st.args...); err != nil {
			return nil, fmt.Errorf("%s: %w", st.what, err)
		}
	}
	var orphans []string
	for _, k := range keys {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM instances WHERE blob_key = ?) + (SELECT count(*) FROM blob_refs WHERE blob_key = ?)`, k, k).Scan(&n); err != nil {
			return nil, err
		}
		if n == 0 {
			orphans = append(orphans, k)
		}
	}
	if err := db.appendAudit(ctx, tx, events); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return orphans, nil
}

// KeepBlob names a blob that is not a DICOM instance (a clinical document, a printed letter, a report PDF), so that
// the sweep of blobs nothing refers to keeps it. Call it as soon as the blob is committed, before its key is used.
func (db *DB) KeepBlob(ctx context.Context, key, what string) error {
	return db.writeTx(ctx, "index.KeepBlob", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO blob_refs (blob_key, what, created_at) VALUES (?, ?, ?) ON CONFLICT (blob_key) DO NOTHING`,
			key, what, db.Now().UnixMilli())
		return err
	})
}

// BlobInUse reports whether any instance, live or in the trash, any consent document or any kept blob (KeepBlob)
// refers to the blob.
func (db *DB) BlobInUse(ctx context.Context, key string) (bool, error) {
	var n int
	if err := db.queryRowContext(ctx, `SELECT (SELECT count(*) FROM (SELECT 1 FROM instances WHERE blob_key = ? LIMIT 1) AS i)
		+ (SELECT count(*) FROM (SELECT 1 FROM consents WHERE document_key = ? LIMIT 1) AS c)
		+ (SELECT count(*) FROM blob_refs WHERE blob_key = ?)`, key, key, key).Scan(&n); err != nil {
		return false, queryErr(err)
	}
	return n > 0, nil
}
