package dicomweb

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"renkei"
	"renkei/archive"
	"renkei/dicom"
)

// Default return attributes per level (PS3.18 Tables 10.6.3-3, -4, -5), plus IssuerOfPatientID and
// StudyDescription, which renkei users need to tell patients and studies apart.
var (
	studyAttrs = []dicom.Tag{dicom.SpecificCharacterSet, dicom.StudyDate, dicom.StudyTime, dicom.AccessionNumber,
		dicom.InstanceAvailability, dicom.ModalitiesInStudy, dicom.ReferringPhysicianName, dicom.TimezoneOffsetFromUTC,
		dicom.RetrieveURL, dicom.PatientName, dicom.PatientID, dicom.IssuerOfPatientID, dicom.PatientBirthDate, dicom.PatientSex,
		dicom.StudyInstanceUID, dicom.StudyID, dicom.NumberOfStudyRelatedSeries, dicom.NumberOfStudyRelatedInstances,
		dicom.StudyDescription}
	seriesAttrs = []dicom.Tag{dicom.SpecificCharacterSet, dicom.Modality, dicom.TimezoneOffsetFromUTC, dicom.SeriesDescription,
		dicom.RetrieveURL, dicom.SeriesInstanceUID, dicom.SeriesNumber, dicom.NumberOfSeriesRelatedInstances,
		dicom.PerformedProcedureStepStartDate, dicom.PerformedProcedureStepStartTime, dicom.StudyInstanceUID}
	instanceAttrs = []dicom.Tag{dicom.SpecificCharacterSet, dicom.SOPClassUID, dicom.SOPInstanceUID, dicom.InstanceAvailability,
		dicom.TimezoneOffsetFromUTC, dicom.RetrieveURL, dicom.InstanceNumber, dicom.Rows, dicom.Columns, dicom.BitsAllocated,
		dicom.NumberOfFrames, dicom.StudyInstanceUID, dicom.SeriesInstanceUID}
)

// DefaultLimit is how many results a search without a limit parameter returns; a Warning header says when there are
// more (PS3.18 8.3.4.4), and a client pages with limit and offset.
const DefaultLimit = 1000

// qidoParams is a parsed QIDO-RS query string (PS3.18 8.3.4).
type qidoParams struct {
	q          renkei.Query
	includeAll bool
	include    []dicom.Tag
	ignored    []string
}

// maxQueryValues bounds the values of list matches in one query: each becomes an SQL parameter, and SQLite refuses
// more than 32766 with an error that would otherwise reach the client as 503.
const maxQueryValues = 10000

// parseQIDO parses the query parameters of a search at level; path UIDs are added as matches.
func (h *Handler) parseQIDO(level renkei.QueryLevel, vals url.Values, study, series string) (*qidoParams, error) {
	p := &qidoParams{q: renkei.Query{Level: level}}
	values := 0
	for key, vs := range vals {
		switch key {
		case "limit", "offset":
			n, err := strconv.Atoi(vs[0])
			if err != nil || n < 0 {
				return nil, renkei.Errorf("dicomweb.QIDO", renkei.Invalid, "%s must be a non-negative number, not %q", key, vs[0])
			}
			if key == "limit" {
				p.q.Limit = n
			} else {
				p.q.Offset = n
			}
		case "fuzzymatching":
			p.q.FuzzyMatching = vs[0] == "true"
		case "includefield":
			for _, v := range vs {
				for _, f := range strings.Split(v, ",") {
					f = strings.TrimSpace(f)
					if f == "all" {
						p.includeAll = true
						continue
					}
					if f == "" {
						continue
					}
					t, err := dicom.ParseTag(f)
					if err != nil {
						if strings.Contains(f, ".") {
							p.ignored = append(p.ignored, f) // sequence paths are not kept in the index
							continue
						}
						return nil, renkei.Errorf("dicomweb.QIDO", renkei.Invalid, "includefield: %v", err)
					}
					p.include = append(p.include, t)
				}
			}
		case "orderby", "_", "accept", "charset":
			// Ignored by design: results come newest first; "_" is a cache-buster some viewers add.
		default:
			if strings.Contains(key, ".") {
				p.ignored = append(p.ignored, key)
				continue
			}
			// A person name may come with its component groups, each a match of its own (archive.ParseMatches).
			ms, err := archive.ParseMatches(key, strings.Join(vs, ","))
			if err != nil {
				return nil, err
			}
			if len(ms) > 0 && !h.Archive.Matchable(level, ms[0].Keyword) {
				p.ignored = append(p.ignored, ms[0].Keyword)
				continue
			}
			for _, m := range ms {
				if values += len(m.Values); values > maxQueryValues {
					return nil, renkei.Errorf("dicomweb.QIDO", renkei.Invalid, "the query lists more than %d values to match; split it into several queries", maxQueryValues)
				}
				p.q.Matches = append(p.q.Matches, m)
			}
		}
	}
	if study != "" {
		if !dicom.ValidUID(study) {
			return nil, renkei.Errorf("dicomweb.QIDO", renkei.Invalid, "study UID %q is not a valid UID", study)
		}
		p.q.Matches = append(p.q.Matches, renkei.Match{Keyword: "StudyInstanceUID", Kind: renkei.MatchSingle, Value: study})
	}
	if series != "" {
		if !dicom.ValidUID(series) {
			return nil, renkei.Errorf("dicomweb.QIDO", renkei.Invalid, "series UID %q is not a valid UID", series)
		}
		p.q.Matches = append(p.q.Matches, renkei.Match{Keyword: "SeriesInstanceUID", Kind: renkei.MatchSingle, Value: series})
	}
	return p, nil
}

func (h *Handler) qido(level renkei.QueryLevel) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		study, series := r.PathValue("study"), r.PathValue("series")
		p, err := h.parseQIDO(level, r.URL.Query(), study, series)
		if err != nil {
			h.problem(w, r, err)
			return
		}
		limit := p.q.Limit
		if limit <= 0 {
			limit = DefaultLimit
		}
		limit = min(limit, archive.MaxResults)
		p.q.Limit = limit + 1 // one more tells whether there are further results
		base := h.baseURL(r)
		var objs [][]byte
		var more bool
		ctx := r.Context()
		switch level {
		case renkei.StudyLevel:
			objs, more, err = search(ctx, h.Archive.QueryStudies, &p.q, limit, func(s *renkei.StudyRecord) []byte { return studyJSON(s, base, p) })
		case renkei.SeriesLevel:
			objs, more, err = search(ctx, h.Archive.QuerySeries, &p.q, limit, func(s *renkei.SeriesRecord) []byte { return seriesJSON(s, base, p, study == "") })
		case renkei.InstanceLevel:
			objs, more, err = search(ctx, h.Archive.QueryInstances, &p.q, limit, func(in *renkei.InstanceRecord) []byte {
				return instanceJSON(in, base, p, study == "", series == "")
			})
		}
		if err != nil {
			h.problem(w, r, err)
			return
		}
		if len(p.ignored) > 0 {
			w.Header().Add("Warning", fmt.Sprintf("299 renkei %q", "The following attributes are not supported for matching and were ignored: "+strings.Join(p.ignored, ", ")))
		}
		if more {
			w.Header().Add("Warning", `299 renkei "There are additional results that can be requested"`)
		}
		w.Header().Set("Content-Type", "application/dicom+json")
		out := []byte{'['}
		for i, o := range objs {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, o...)
		}
		out = append(out, ']')
		w.Write(out)
	}
}

// search runs a query that asked for limit+1 records and renders at most limit of them; more says whether there
// were further results.
func search[T any](ctx context.Context, query func(context.Context, *renkei.Query) ([]T, error), q *renkei.Query, limit int, render func(*T) []byte) (objs [][]byte, more bool, err error) {
	recs, err := query(ctx, q)
	if err != nil {
		return nil, false, err
	}
	if more = len(recs) > limit; more {
		recs = recs[:limit]
	}
	for i := range recs {
		objs = append(objs, render(&recs[i]))
	}
	return objs, more, nil
}

// object collects the members of one DICOM JSON object, keyed by tag, and writes them in tag order.
type object map[dicom.Tag][]byte

func (o object) text(t dicom.Tag, vr, v string) {
	o[t] = dicom.AppendElementJSON(nil, &dicom.Element{Tag: t, VR: vr, Value: []byte(v)}, utf8Text{}, &dicom.JSONOptions{}, "")
}

func (o object) integer(t dicom.Tag, vr string, v *int) {
	switch {
	case v == nil:
		o.text(t, vr, "")
	case vr == "US":
		o[t] = dicom.AppendElementJSON(nil, &dicom.Element{Tag: t, VR: vr, Value: binary.LittleEndian.AppendUint16(nil, uint16(*v))}, utf8Text{}, &dicom.JSONOptions{}, "")
	default:
		o.text(t, vr, strconv.Itoa(*v))
	}
}

func (o object) n(t dicom.Tag, vr string, v int) { o.integer(t, vr, &v) }

// merge adds the members of a stored DICOM JSON object (the index's Attrs) that the object lacks and the query
// asks for.
func (o object) merge(attrs []byte, p *qidoParams, levelTags func(dicom.Tag) bool) {
	if len(attrs) == 0 || (!p.includeAll && len(p.include) == 0) {
		return
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(attrs, &m) != nil {
		return
	}
	for k, raw := range m {
		v, err := strconv.ParseUint(k, 16, 32)
		if err != nil {
			continue
		}
		t := dicom.Tag(v)
		if _, have := o[t]; have {
			continue
		}
		if slices.Contains(p.include, t) || (p.includeAll && levelTags(t)) {
			o[t] = append([]byte(`"`+k+`":`), raw...)
		}
	}
}

func (o object) bytes() []byte {
	keys := make([]dicom.Tag, 0, len(o))
	for t := range o {
		keys = append(keys, t)
	}
	slices.Sort(keys)
	out := []byte{'{'}
	for i, t := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, o[t]...)
	}
	return append(out, '}')
}

// Which stored attributes belong to which level when includefield=all: patient and study modules at study level,
// series modules at series level (PS3.3 C.7.1–C.7.3), everything at instance level.
func studyLevelTag(t dicom.Tag) bool {
	g := t.Group()
	return g == 0x0010 || t == dicom.StudyDescription || t == dicom.InstitutionName || t == dicom.NewTag(0x0008, 0x1032) ||
		t == dicom.NewTag(0x0008, 0x1060) || t == dicom.NewTag(0x0032, 0x1060) || t == dicom.NewTag(0x0008, 0x0090)
}

func seriesLevelTag(t dicom.Tag) bool {
	return studyLevelTag(t) || t == dicom.NewTag(0x0008, 0x0070) || t == dicom.NewTag(0x0008, 0x1090) || t == dicom.NewTag(0x0018, 0x1030) ||
		t == dicom.NewTag(0x0018, 0x5100) || t == dicom.NewTag(0x0020, 0x0060) || t == dicom.NewTag(0x0008, 0x1010) || t == dicom.NewTag(0x0020, 0x0052)
}

func addStudy(o object, s *renkei.StudyRecord) {
	o.text(dicom.SpecificCharacterSet, "CS", "ISO_IR 192")
	o.text(dicom.StudyDate, "DA", s.StudyDate)
	o.text(dicom.StudyTime, "TM", s.StudyTime)
	o.text(dicom.AccessionNumber, "SH", s.AccessionNumber)
	o.text(dicom.ReferringPhysicianName, "PN", s.ReferringPhysicianName)
	o.text(dicom.PatientName, "PN", s.PatientName)
	o.text(dicom.PatientID, "LO", s.Patient.ID)
	o.text(dicom.IssuerOfPatientID, "LO", s.Patient.Issuer)
	o.text(dicom.PatientBirthDate, "DA", s.PatientBirthDate)
	o.text(dicom.PatientSex, "CS", s.PatientSex)
	o.text(dicom.StudyInstanceUID, "UI", s.StudyInstanceUID)
	o.text(dicom.StudyID, "SH", s.StudyID)
	o.text(dicom.StudyDescription, "LO", s.StudyDescription)
	if s.TimezoneOffsetFromUTC != "" {
		o.text(dicom.TimezoneOffsetFromUTC, "SH", s.TimezoneOffsetFromUTC)
	}
}

func studyJSON(s *renkei.StudyRecord, base string, p *qidoParams) []byte {
	o := object{}
	addStudy(o, s)
	o.text(dicom.InstanceAvailability, "CS", "ONLINE")
	o.text(dicom.ModalitiesInStudy, "CS", strings.Join(s.ModalitiesInStudy, `\`))
	o.text(dicom.RetrieveURL, "UR", base+"/studies/"+s.StudyInstanceUID)
	o.n(dicom.NumberOfStudyRelatedSeries, "IS", s.NumberOfSeries)
	o.n(dicom.NumberOfStudyRelatedInstances, "IS", s.NumberOfInstances)
	o.merge(s.Attrs, p, studyLevelTag)
	return o.bytes()
}

func addSeries(o object, se *renkei.SeriesRecord) {
	o.text(dicom.Modality, "CS", se.Modality)
	o.text(dicom.SeriesDescription, "LO", se.SeriesDescription)
	o.text(dicom.SeriesInstanceUID, "UI", se.SeriesInstanceUID)
	o.integer(dicom.SeriesNumber, "IS", se.SeriesNumber)
	o.text(dicom.PerformedProcedureStepStartDate, "DA", se.PPSStartDate)
	o.text(dicom.PerformedProcedureStepStartTime, "TM", se.PPSStartTime)
	o.text(dicom.StudyInstanceUID, "UI", se.Study.StudyInstanceUID)
	if se.BodyPartExamined != "" {
		o.text(dicom.BodyPartExamined, "CS", se.BodyPartExamined)
	}
}

func seriesJSON(se *renkei.SeriesRecord, base string, p *qidoParams, withStudy bool) []byte {
	o := object{}
	if withStudy {
		addStudy(o, &se.Study)
	}
	o.text(dicom.SpecificCharacterSet, "CS", "ISO_IR 192")
	addSeries(o, se)
	o.text(dicom.RetrieveURL, "UR", base+"/studies/"+se.Study.StudyInstanceUID+"/series/"+se.SeriesInstanceUID)
	o.n(dicom.NumberOfSeriesRelatedInstances, "IS", se.NumberOfInstances)
	o.merge(se.Attrs, p, seriesLevelTag)
	return o.bytes()
}

func instanceJSON(in *renkei.InstanceRecord, base string, p *qidoParams, withStudy, withSeries bool) []byte {
	o := object{}
	if withStudy {
		addStudy(o, &in.Series.Study)
	}
	if withSeries {
		addSeries(o, &in.Series)
	}
	o.text(dicom.SpecificCharacterSet, "CS", "ISO_IR 192")
	o.text(dicom.StudyInstanceUID, "UI", in.Series.Study.StudyInstanceUID)
	o.text(dicom.SeriesInstanceUID, "UI", in.Series.SeriesInstanceUID)
	o.text(dicom.SOPClassUID, "UI", in.SOPClassUID)
	o.text(dicom.SOPInstanceUID, "UI", in.SOPInstanceUID)
	o.text(dicom.InstanceAvailability, "CS", "ONLINE")
	o.integer(dicom.InstanceNumber, "IS", in.InstanceNumber)
	if in.Rows > 0 {
		o.n(dicom.Rows, "US", in.Rows)
		o.n(dicom.Columns, "US", in.Columns)
		o.n(dicom.BitsAllocated, "US", in.BitsAllocated)
		o.n(dicom.NumberOfFrames, "IS", in.NumberOfFrames)
	}
	o.text(dicom.RetrieveURL, "UR", base+"/studies/"+in.Series.Study.StudyInstanceUID+"/series/"+in.Series.SeriesInstanceUID+"/instances/"+in.SOPInstanceUID)
	o.merge(in.Attrs, p, func(dicom.Tag) bool { return true })
	return o.bytes()
}
