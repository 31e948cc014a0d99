package dicomsvc

import (
	"context"
	"fmt"
	"strings"

	"renkei"
	"renkei/archive"
	"renkei/dicom"
	"renkei/dicom/charset"
	"renkei/dimse"
)

// Attributes of the Query/Retrieve identifiers that the dicom package does not name.
const (
	tagQueryRetrieveLevel              dicom.Tag = 0x00080052
	tagRetrieveAETitle                 dicom.Tag = 0x00080054
	tagNumberOfPatientRelatedStudies   dicom.Tag = 0x00201200
	tagNumberOfPatientRelatedSeries    dicom.Tag = 0x00201202
	tagNumberOfPatientRelatedInstances dicom.Tag = 0x00201204
)

// level is a Query/Retrieve level (PS3.4 C.3).
type level int

const (
	levelPatient level = iota
	levelStudy
	levelSeries
	levelImage
)

var levelNames = map[string]level{"PATIENT": levelPatient, "STUDY": levelStudy, "SERIES": levelSeries, "IMAGE": levelImage}

func (l level) String() string {
	return [...]string{"PATIENT", "STUDY", "SERIES", "IMAGE"}[l]
}

// index returns the archive query level that holds the records of l: patients are found through their studies.
func (l level) index() renkei.QueryLevel {
	switch l {
	case levelSeries:
		return renkei.SeriesLevel
	case levelImage:
		return renkei.InstanceLevel
	}
	return renkei.StudyLevel
}

// findPage is how many records one index query reads; a C-FIND pages through its matches so that memory stays
// bounded whatever it matches.
const findPage = 500

// maxQueryValues bounds the values of list matches in one identifier, as QIDO-RS does: each is an SQL parameter.
const maxQueryValues = 10000

// findKey is one attribute the identifier asks for.
type findKey struct {
	tag dicom.Tag
	vr  string
}

// findQuery is a parsed C-FIND identifier (PS3.4 C.4.1.1.3): the level, the keys to return, the matches.
type findQuery struct {
	level   level
	keys    []findKey
	query   renkei.Query
	terms   []string // SpecificCharacterSet of the request
	scs     []byte   // its raw value, echoed when the answer uses it
	hasSCS  bool
	ignored []string // keys with values the index cannot match: returned, not matched
}

// find performs C-FIND in the Patient Root and Study Root models (PS3.4 C.4.1, C.6.1, C.6.2) with the matching of
// QIDO-RS: the identifier's keys become archive.ParseMatch matches (wildcards, ranges, UID lists, person names
// folded across scripts), decoded from the identifier's Specific Character Set. Each match carries the keys the
// request asked for, plus QueryRetrieveLevel and the unique keys of its level.
func (s *Service) find(ctx context.Context, a *dimse.Association, req *dimse.FindRequest, emit func(*dicom.DataSet) error) dimse.Status {
	log := s.logger().With("calling_ae", a.Peer().CallingAETitle)
	start := s.now()
	fq, st := s.parseFind(req)
	if st.IsFailure() {
		log.Info("C-FIND refused", "status", st)
		return st
	}
	// PS3.4 C.2.2.2.5.1: a date and its time are one range only when the SCU negotiated it.
	fq.query.CombinedDateTime = a.FindOptions(req.SOPClassUID).DateTimeMatching
	if len(fq.ignored) > 0 {
		log.Debug("C-FIND keys not supported for matching are returned only", "keys", strings.Join(fq.ignored, ","))
	}
	enc := charset.NewEncoder(fq.terms)
	called := a.Peer().CalledAETitle
	send := func(r *row) error { return emit(fq.response(r, enc, called)) }
	matches := 0
	var err error
	switch fq.level {
	case levelPatient:
		err = s.findPatients(ctx, fq, func(r *row) error { matches++; return send(r) })
	case levelStudy:
		err = pages(ctx, &fq.query, s.Archive.QueryStudies, func(st *renkei.StudyRecord) error {
			matches++
			return send(&row{level: levelStudy, study: st})
		})
	case levelSeries:
		err = pages(ctx, &fq.query, s.Archive.QuerySeries, func(se *renkei.SeriesRecord) error {
			matches++
			return send(&row{level: levelSeries, study: &se.Study, series: se})
		})
	case levelImage:
		err = pages(ctx, &fq.query, s.Archive.QueryInstances, func(in *renkei.InstanceRecord) error {
			matches++
			return send(&row{level: levelImage, study: &in.Series.Study, series: &in.Series, inst: in})
		})
	}
	if err != nil {
		if ctx.Err() != nil {
			return dimse.Status{Code: dimse.StatusCancel} // PS3.4 C.4.1.1.4 (the dimse package says so anyway)
		}
		st := queryStatus(err)
		log.Warn("C-FIND failed", "level", fq.level, "status", st, "err", err)
		return st
	}
	log.Info("C-FIND", "level", fq.level, "matches", matches, "elapsed", s.now().Sub(start))
	return dimse.Success()
}

// queryStatus maps an archive query error to a C-FIND/C-MOVE/C-GET failure (PS3.4 C.4.1.1.4).
func queryStatus(err error) dimse.Status {
	switch renkei.ErrorKind(err) {
	case renkei.Invalid:
		return dimse.Failure(dimse.StatusDataSetDoesNotMatchSOPClass, renkei.ErrorMessage(err))
	case renkei.Unavailable:
		return dimse.Failure(dimse.StatusOutOfResources, "the index cannot be read now; try again later")
	}
	return dimse.Failure(dimse.StatusCannotUnderstand, "the query could not be processed")
}

// pages runs a query page by page and calls fn for each record, until fn fails or the matches run out.
func pages[T any](ctx context.Context, q *renkei.Query, query func(context.Context, *renkei.Query) ([]T, error), fn func(*T) error) error {
	q.Limit, q.Offset = findPage, 0
	for {
		recs, err := query(ctx, q)
		if err != nil {
			return err
		}
		for i := range recs {
			if err := fn(&recs[i]); err != nil {
				return err
			}
		}
		if len(recs) < findPage {
			return nil
		}
		q.Offset += len(recs)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// patientRow is one patient at the PATIENT level: the patient attributes of its newest matching study and counts.
type patientRow struct {
	first                      renkei.StudyRecord
	studies, series, instances int
}

// findPatients groups the matching studies by patient (issuer and PatientID: the same ID from two issuers is two
// patients) in the order of their newest study, and emits one row per patient.
func (s *Service) findPatients(ctx context.Context, fq *findQuery, fn func(*row) error) error {
	var order []renkei.PatientKey
	byKey := map[renkei.PatientKey]*patientRow{}
	err := pages(ctx, &fq.query, s.Archive.QueryStudies, func(st *renkei.StudyRecord) error {
		p := byKey[st.Patient]
		if p == nil {
			p = &patientRow{first: *st}
			byKey[st.Patient] = p
			order = append(order, st.Patient)
		}
		p.studies++
		p.series += st.NumberOfSeries
		p.instances += st.NumberOfInstances
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range order {
		p := byKey[k]
		if err := fn(&row{level: levelPatient, patient: p, study: &p.first}); err != nil {
			return err
		}
	}
	return nil
}

// uniqueKeys are the keys every response at a level carries: its unique key and those of the levels above
// (PS3.4 C.4.1.1.3.2, C.6.1.1.1).
var uniqueKeys = [...][]findKey{
	levelPatient: {{dicom.PatientID, "LO"}},
	levelStudy:   {{dicom.StudyInstanceUID, "UI"}},
	levelSeries:  {{dicom.StudyInstanceUID, "UI"}, {dicom.SeriesInstanceUID, "UI"}},
	levelImage:   {{dicom.StudyInstanceUID, "UI"}, {dicom.SeriesInstanceUID, "UI"}, {dicom.SOPInstanceUID, "UI"}},
}

// parseFind reads a C-FIND identifier. A failure status says why it cannot be answered.
func (s *Service) parseFind(req *dimse.FindRequest) (*findQuery, dimse.Status) {
	id := req.Identifier
	bad := func(t dicom.Tag, format string, args ...any) (*findQuery, dimse.Status) {
		st := dimse.Failure(dimse.StatusDataSetDoesNotMatchSOPClass, fmt.Sprintf(format, args...))
		st.OffendingElement = []dicom.Tag{t}
		return nil, st
	}
	name := strings.ToUpper(strings.TrimSpace(id.String(tagQueryRetrieveLevel)))
	lv, ok := levelNames[name]
	if !ok {
		return bad(tagQueryRetrieveLevel, "QueryRetrieveLevel %q is not PATIENT, STUDY, SERIES or IMAGE", name)
	}
	patientRoot := req.SOPClassUID == dimse.PatientRootQueryRetrieveInformationModelFind ||
		req.SOPClassUID == dimse.PatientRootQueryRetrieveInformationModelMove || req.SOPClassUID == dimse.PatientRootQueryRetrieveInformationModelGet
	if lv == levelPatient && !patientRoot {
		return bad(tagQueryRetrieveLevel, "the Study Root model has no PATIENT level (PS3.4 C.6.2)")
	}
	fq := &findQuery{level: lv, query: renkei.Query{Level: lv.index()}}
	if e := id.Get(dicom.SpecificCharacterSet); e != nil {
		fq.hasSCS, fq.scs, fq.terms = true, dicom.TrimPadding(e.Value, "CS"), id.Strings(dicom.SpecificCharacterSet)
	}
	dec := charset.New(fq.terms, "")
	have := map[dicom.Tag]bool{}
	values := 0
	for _, e := range id.Elements {
		t := e.Tag
		if t.Element() == 0 || t.Group() <= 0x0002 || t == dicom.SpecificCharacterSet || t == tagQueryRetrieveLevel || have[t] {
			continue
		}
		vr := e.VR
		if vr == "" || vr == "UN" {
			vr = dicom.VR(t)
		}
		have[t] = true
		fq.keys = append(fq.keys, findKey{t, vr})
		if vr == "SQ" || e.Items != nil {
			continue // sequence matching is not supported: the key is returned, empty
		}
		raw := id.Raw(t)
		if len(raw) == 0 {
			continue
		}
		value, _ := dec.Decode(raw, vr)
		// A person name may come with its component groups, each a match of its own (archive.ParseMatches).
		ms, err := archive.ParseMatches(dicom.Keyword(t), value)
		if err != nil {
			return bad(t, "%s", renkei.ErrorMessage(err))
		}
		for _, m := range ms {
			if !s.Archive.Matchable(fq.query.Level, m.Keyword) {
				fq.ignored = append(fq.ignored, m.Keyword)
				break
			}
			if values += len(m.Values); values > maxQueryValues {
				return bad(t, "the identifier lists more than %d values to match; split it into several queries", maxQueryValues)
			}
			fq.query.Matches = append(fq.query.Matches, m)
		}
	}
	for _, k := range uniqueKeys[lv] {
		if !have[k.tag] {
			fq.keys = append(fq.keys, k)
		}
	}
	return fq, dimse.Success()
}

// response builds the identifier of one match: the requested keys filled from the row, in the request's character
// set when every value can be written in it, else in ISO_IR 192, which SpecificCharacterSet then says.
func (fq *findQuery) response(r *row, enc *charset.Encoder, calledAE string) *dicom.DataSet {
	vals := make([]value, len(fq.keys))
	for i, k := range fq.keys {
		vals[i] = r.value(k, calledAE)
	}
	encoded, nonASCII, ok := encodeValues(fq.keys, vals, enc)
	useUTF8 := !ok
	if useUTF8 {
		encoded, _, _ = encodeValues(fq.keys, vals, charset.NewEncoder([]string{"ISO_IR 192"}))
	}
	ds := &dicom.DataSet{}
	ds.SetString(tagQueryRetrieveLevel, "CS", fq.level.String())
	switch {
	case useUTF8 || (!fq.hasSCS && nonASCII):
		ds.SetString(dicom.SpecificCharacterSet, "CS", "ISO_IR 192")
	case fq.hasSCS:
		ds.Set(&dicom.Element{Tag: dicom.SpecificCharacterSet, VR: "CS", Value: fq.scs})
	}
	for i, k := range fq.keys {
		v := vals[i]
		vr := k.vr
		if v.vr != "" {
			vr = v.vr
		}
		switch {
		case v.seq || vr == "SQ":
			ds.Set(&dicom.Element{Tag: k.tag, VR: "SQ", Length: dicom.UndefinedLength, Items: []*dicom.DataSet{}})
		case v.bin != nil:
			ds.Set(&dicom.Element{Tag: k.tag, VR: vr, Value: v.bin})
		default:
			ds.Set(&dicom.Element{Tag: k.tag, VR: vr, Value: encoded[i]})
		}
	}
	return ds
}

// encodeValues writes the text values in the encoder's character set. nonASCII says whether any value needed more
// than the default repertoire; ok is false when some value cannot be written in the set.
func encodeValues(keys []findKey, vals []value, enc *charset.Encoder) (out [][]byte, nonASCII, ok bool) {
	out = make([][]byte, len(vals))
	for i, v := range vals {
		if v.seq || v.bin != nil {
			continue
		}
		vr := keys[i].vr
		if v.vr != "" {
			vr = v.vr
		}
		if !isASCII(v.text) {
			nonASCII = true
		}
		switch vr {
		case "PN", "SH", "LO", "ST", "LT", "UT", "UC":
			b, good := enc.Encode(v.text, vr)
			if !good {
				return nil, nonASCII, false
			}
			out[i] = b
		default:
			out[i] = []byte(v.text)
		}
	}
	return out, nonASCII, true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
