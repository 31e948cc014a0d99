package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"renkei"
	"renkei/blob"
	"renkei/dicom"
	"renkei/dicom/charset"
)

// StoreRequest describes where an object comes from.
type StoreRequest struct {
	Source string // for logs and the index: "STOW-RS", "C-STORE from CT1"
	// Issuer is the sender's configured issuer of patient IDs, used when the object has no IssuerOfPatientID.
	Issuer string
	// Charset is the sender's fallback character set; empty uses the service's.
	Charset string
	// Study, when set, is the only StudyInstanceUID accepted (STOW-RS to /studies/{study}).
	Study string
}

// StoreResult reports what happened to one object. Failure is nil on success.
type StoreResult struct {
	SOPClassUID, SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID string
	Outcome                                                          renkei.StoreOutcome
	Warnings                                                         []string
	// Failure is a DICOM status for FailedSOPSequence/C-STORE-RSP (PS3.4 Annex B.2.3, PS3.18 Table 10.5.3-2), and Err why.
	Failure uint16
	Err     error
}

// DICOM failure statuses used by Store.
const (
	StatusOutOfResources     = 0xA700
	StatusDataSetMismatch    = 0xA900
	StatusCannotUnderstand   = 0xC000
	StatusProcessingFailure  = 0x0110
	StatusDuplicateDifferent = 0x0111
)

// executable preambles that CVE-2019-11687 abuses: a file that is both a valid DICOM file and a program.
var executableMagic = [][]byte{[]byte("MZ"), []byte("\x7fELF"), []byte("#!")}

// Store reads one Part 10 object from r and stores it. It always returns a result; Failure says whether it was refused.
// Nothing of a refused object remains visible.
func (s *Service) Store(ctx context.Context, r io.Reader, req StoreRequest) *StoreResult {
	p, res := s.Receive(ctx, r, req)
	if p == nil {
		return res
	}
	return p.Commit(ctx)
}

// Pending is an object that has been received and checked but not yet made durable and visible.
type Pending struct {
	s      *Service
	w      blob.Writer
	inst   *renkei.Instance
	res    *StoreResult
	source string
}

// Receive reads and checks one Part 10 object, streaming its bytes into a new blob, without waiting for the disk.
// It returns a Pending to Commit, or nil and the failure; the result it returns is the one Commit completes. Receiving the next object while earlier ones commit lets
// their fsyncs overlap, which is how one STOW-RS request of many instances keeps the disk busy.
func (s *Service) Receive(ctx context.Context, r io.Reader, req StoreRequest) (*Pending, *StoreResult) {
	res := &StoreResult{}
	if p := renkei.PrincipalFrom(ctx); req.Issuer == "" && p != nil {
		req.Issuer = p.Issuer // the sending institution's issuer of patient IDs
	}
	fail := func(status uint16, err error) (*Pending, *StoreResult) {
		res.Failure, res.Err = status, err
		s.observe(req.Source, res, 0)
		return nil, res
	}
	var head [132]byte
	if n, err := io.ReadFull(r, head[:]); err != nil || string(head[128:132]) != "DICM" {
		_ = n
		return fail(StatusCannotUnderstand, &renkei.Error{Op: "archive.Store", Kind: renkei.Invalid, Message: "this is not a DICOM file: it does not start with a 128-byte preamble and \"DICM\" (PS3.10 7.1)", Err: dicom.ErrNotDICOM})
	}
	for _, m := range executableMagic {
		if bytes.HasPrefix(head[:], m) {
			clear(head[:128])
			res.Warnings = append(res.Warnings, "the preamble held an executable header and was zeroed (CVE-2019-11687)")
			s.Logger.Warn("zeroed executable preamble", "source", req.Source, "magic", fmt.Sprintf("%q", m))
			break
		}
	}
	w, err := s.Blobs.Create(ctx)
	if err != nil {
		return fail(StatusOutOfResources, err)
	}
	committed := false
	defer func() {
		if !committed {
			w.Abort()
		}
	}()
	if _, err := w.Write(head[:]); err != nil {
		return fail(StatusOutOfResources, &renkei.Error{Op: "archive.Store", Kind: renkei.Unavailable, Message: "the image store cannot be written", Err: err})
	}
	tee := &teeReader{r: r, w: w}
	f, err := dicom.Parse(io.MultiReader(bytes.NewReader(head[:]), tee), dicom.DefaultReadOptions)
	if err == nil {
		// A deflated data set may be followed by bytes the inflater did not need; keep them, as received.
		_, err = io.Copy(io.Discard, tee)
	}
	if tee.werr != nil {
		return fail(StatusOutOfResources, &renkei.Error{Op: "archive.Store", Kind: renkei.Unavailable, Message: "the image store cannot be written", Err: tee.werr})
	}
	if err != nil {
		var pe *dicom.ParseError
		if errors.As(err, &pe) || errors.Is(err, dicom.ErrNotDICOM) {
			return fail(StatusCannotUnderstand, &renkei.Error{Op: "archive.Store", Kind: renkei.Invalid, Message: "the DICOM file is damaged: " + err.Error(), Err: err})
		}
		if errors.Is(err, dicom.ErrInflateLimit) {
			return fail(StatusCannotUnderstand, &renkei.Error{Op: "archive.Store", Kind: renkei.Invalid, Message: err.Error(), Err: err})
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		msg := "the DICOM file could not be read completely"
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			msg = "the upload ended before the file did (the connection closed, or the body is shorter than announced)"
		}
		return fail(StatusProcessingFailure, &renkei.Error{Op: "archive.Store", Kind: renkei.Invalid, Message: msg, Err: err})
	}
	ds := f.DataSet
	res.SOPClassUID = ds.String(dicom.SOPClassUID)
	res.SOPInstanceUID = ds.String(dicom.SOPInstanceUID)
	res.StudyInstanceUID = ds.String(dicom.StudyInstanceUID)
	res.SeriesInstanceUID = ds.String(dicom.SeriesInstanceUID)
	for _, c := range []struct {
		kw, v string
	}{{"SOPClassUID", res.SOPClassUID}, {"SOPInstanceUID", res.SOPInstanceUID}, {"StudyInstanceUID", res.StudyInstanceUID}, {"SeriesInstanceUID", res.SeriesInstanceUID}} {
		if c.v == "" {
			return fail(StatusDataSetMismatch, renkei.Errorf("archive.Store", renkei.Invalid, "the object has no %s, which every DICOM object must have", c.kw))
		}
		if !dicom.ValidUID(c.v) {
			return fail(StatusDataSetMismatch, renkei.Errorf("archive.Store", renkei.Invalid, "%s %q is not a valid UID (at most 64 digits and dots, PS3.5 9.1)", c.kw, truncate(c.v, 80)))
		}
	}
	// PS3.3 C.7.6.3: an image (Rows, Columns, BitsAllocated) has pixel data. Without it the file may have been cut
	// short just before its pixels, which parses as a complete, shorter file; some test and charset objects are made
	// that way on purpose, so it is stored, with a warning the sender sees.
	if ds.Get(dicom.Rows) != nil && ds.Get(dicom.Columns) != nil && ds.Get(dicom.BitsAllocated) != nil &&
		ds.Get(dicom.PixelData) == nil && ds.Get(dicom.FloatPixelData) == nil && ds.Get(dicom.DoubleFloatPixelData) == nil {
		res.Warnings = append(res.Warnings, "the image has no pixel data: if it was not sent that way on purpose, the file was cut short")
	}
	if req.Study != "" && res.StudyInstanceUID != req.Study {
		return fail(StatusDataSetMismatch, renkei.Errorf("archive.Store", renkei.Invalid, "the object belongs to study %s, not to study %s named in the request", res.StudyInstanceUID, req.Study))
	}
	inst, warn := s.describe(f, req)
	res.Warnings = append(res.Warnings, warn...)
	committed = true // the Pending owns the writer now
	return &Pending{s: s, w: w, inst: inst, res: res, source: req.Source}, res
}

// observe tells Observe what became of a received object.
func (s *Service) observe(source string, res *StoreResult, size int64) {
	if s.Observe == nil {
		return
	}
	outcome := "refused"
	switch {
	case res.Failure != 0 || res.Err != nil:
	case res.Outcome == renkei.Duplicate:
		outcome = "duplicate"
	default:
		outcome = "stored"
	}
	s.Observe(source, outcome, size)
}

// Abort discards a received object that will not be committed.
func (p *Pending) Abort() {
	p.w.Abort()
	if p.s.Observe != nil {
		p.s.Observe(p.source, "refused", 0)
	}
}

// Commit makes the object durable (blob fsync and rename), records it in the index in one transaction, and only then
// reports success. It is safe to call from another goroutine than Receive's.
func (p *Pending) Commit(ctx context.Context) *StoreResult {
	s, inst, res := p.s, p.inst, p.res
	defer func() { s.observe(p.source, res, inst.Size) }()
	fail := func(status uint16, err error) *StoreResult {
		res.Failure, res.Err = status, err
		return res
	}
	key, size, err := p.w.Commit(ctx)
	if err != nil {
		return fail(StatusOutOfResources, err)
	}
	inst.BlobKey, inst.Size = key, size
	inst.ReceivedAt = s.Now()
	outcome, orphan, err := s.Index.Insert(context.WithoutCancel(ctx), inst)
	if err != nil {
		status := uint16(StatusProcessingFailure)
		switch renkei.ErrorKind(err) {
		case renkei.Conflict:
			status = StatusDuplicateDifferent
			if strings.Contains(err.Error(), "belongs to another") {
				status = StatusDataSetMismatch
			} else if s.sameDataSet(ctx, inst.Institution, inst.SOPInstanceUID, key) {
				// The stored copy came with another File Meta Information (another sender, a gateway, C-STORE
				// after STOW-RS) but the same data set: the same instance, a duplicate that changes nothing.
				status, err = 0, nil
			}
			// The refused (or duplicate) bytes are under their own key, which this instance does not use: remove them,
			// unless another institution's instance (a copy of the same file) or a document is stored under it.
			s.dropBlob(ctx, key, "remove refused blob")
			if err == nil {
				res.Outcome = renkei.Duplicate
				return res
			}
		case renkei.Unavailable:
			status = StatusOutOfResources
		}
		return fail(status, err)
	}
	if orphan != "" {
		s.dropBlob(ctx, orphan, "remove replaced blob")
	}
	res.Outcome = outcome
	if outcome == renkei.Stored && s.Stored != nil {
		s.Stored(inst) // after the commit: the instance is visible to whoever may see it
	}
	return res
}

type teeReader struct {
	r    io.Reader
	w    io.Writer
	werr error
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 && t.werr == nil {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.werr = werr
			return n, werr
		}
	}
	return n, err
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// describe extracts what the index records, decoding text with the object's character set.
func (s *Service) describe(f *dicom.File, req StoreRequest) (*renkei.Instance, []string) {
	ds := f.DataSet
	fallback := req.Charset
	if fallback == "" {
		fallback = s.FallbackCharset
	}
	dec := charset.New(ds.Strings(dicom.SpecificCharacterSet), fallback)
	var warnings []string
	bad := false
	text := func(t dicom.Tag, vr string) string {
		raw := ds.Raw(t)
		if raw == nil {
			return ""
		}
		v, ok := dec.Decode(raw, vr)
		if !ok {
			bad = true
		}
		return strings.TrimSpace(v)
	}
	intPtr := func(t dicom.Tag) *int {
		if v, ok := ds.Int(t); ok {
			return &v
		}
		return nil
	}
	intOr0 := func(t dicom.Tag) int { v, _ := ds.Int(t); return v }

	in := &renkei.Instance{
		Patient:                renkei.PatientKey{Issuer: text(dicom.IssuerOfPatientID, "LO"), ID: text(dicom.PatientID, "LO")},
		PatientName:            text(dicom.PatientName, "PN"),
		PatientBirthDate:       NormalizeDate(ds.String(dicom.PatientBirthDate)),
		PatientSex:             ds.String(dicom.PatientSex),
		StudyInstanceUID:       ds.String(dicom.StudyInstanceUID),
		StudyDate:              NormalizeDate(ds.String(dicom.StudyDate)),
		StudyTime:              NormalizeTime(ds.String(dicom.StudyTime), false),
		AccessionNumber:        text(dicom.AccessionNumber, "SH"),
		StudyID:                text(dicom.StudyID, "SH"),
		StudyDescription:       text(dicom.StudyDescription, "LO"),
		ReferringPhysicianName: text(dicom.ReferringPhysicianName, "PN"),
		TimezoneOffsetFromUTC:  ds.String(dicom.TimezoneOffsetFromUTC),
		SeriesInstanceUID:      ds.String(dicom.SeriesInstanceUID),
		Modality:               ds.String(dicom.Modality),
		SeriesNumber:           intPtr(dicom.SeriesNumber),
		SeriesDescription:      text(dicom.SeriesDescription, "LO"),
		BodyPartExamined:       ds.String(dicom.BodyPartExamined),
		SeriesDate:             NormalizeDate(ds.String(dicom.SeriesDate)),
		SeriesTime:             NormalizeTime(ds.String(dicom.SeriesTime), false),
		PPSStartDate:           NormalizeDate(ds.String(dicom.PerformedProcedureStepStartDate)),
		PPSStartTime:           NormalizeTime(ds.String(dicom.PerformedProcedureStepStartTime), false),
		SOPInstanceUID:         ds.String(dicom.SOPInstanceUID),
		SOPClassUID:            ds.String(dicom.SOPClassUID),
		InstanceNumber:         intPtr(dicom.InstanceNumber),
		TransferSyntaxUID:      f.TransferSyntaxUID,
		Rows:                   intOr0(dicom.Rows),
		Columns:                intOr0(dicom.Columns),
		NumberOfFrames:         intOr0(dicom.NumberOfFrames),
		BitsAllocated:          intOr0(dicom.BitsAllocated),
		Source:                 sourceOf(req.Source, f.Meta),
	}
	if in.NumberOfFrames == 0 && f.PixelData != nil {
		in.NumberOfFrames = 1
	}
	if in.Patient.Issuer == "" {
		in.Patient.Issuer = req.Issuer
		if in.Patient.Issuer == "" {
			in.Patient.Issuer = s.DefaultIssuer
		}
	}
	in.Charset = req.Charset
	in.PatientNameKeys = NameKeys(in.PatientName)
	in.ReferringPhysicianKey = NameKeyList(in.ReferringPhysicianName)
	if bad {
		in.CharsetFlag = true
		warnings = append(warnings, "some text could not be decoded with the declared character set; it is kept as received")
	}
	in.Attrs = dicom.AppendJSON(nil, ds, &dicom.JSONOptions{
		Decoder: func(terms []string) dicom.TextDecoder { return charset.New(terms, fallback) },
		Include: func(t dicom.Tag) bool {
			e := ds.Get(t)
			return e != nil && !e.Bulk && e.Fragments == nil && t != dicom.PixelData && (dicom.IsText(e.VR) || len(e.Value) <= 256 || e.VR == "SQ")
		},
	})
	if len(in.Attrs) > 256<<10 {
		// Huge headers (structured reports, RT structures) are read from the blob when asked for, not kept in the index.
		in.Attrs = dicom.AppendJSON(nil, ds, &dicom.JSONOptions{
			Decoder: func(terms []string) dicom.TextDecoder { return charset.New(terms, fallback) },
			Include: func(t dicom.Tag) bool {
				e := ds.Get(t)
				return e != nil && !e.Bulk && e.VR != "SQ" && t != dicom.PixelData && (dicom.IsText(e.VR) || len(e.Value) <= 256)
			},
		})
	}
	return in, warnings
}

// NameKeys returns the folded search keys of a person name in DICOM form: for each component group (alphabetic,
// ideographic, phonetic) the folded group with its '^' and without, and each component alone prefixed by \x01 for
// fuzzy matching.
func NameKeys(pn string) []string {
	if pn == "" {
		return nil
	}
	var keys []string
	seen := map[string]bool{}
	add := func(k string) {
		if k != "" && k != "\x01" && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, g := range strings.Split(pn, "=") {
		f := strings.TrimRight(charset.Fold(g), "^")
		if f == "" {
			continue
		}
		add(f)
		add(strings.ReplaceAll(f, "^", ""))
		for _, c := range strings.Split(f, "^") {
			add("\x01" + c)
		}
	}
	return keys
}

// NameKeyList returns a name's search keys in one string, each between \x1f delimiters ("\x1fA\x1fB\x1f"), for
// names that are matched in a single column (ReferringPhysicianName) rather than through a key table.
func NameKeyList(pn string) string {
	keys := NameKeys(pn)
	if len(keys) == 0 {
		return ""
	}
	return "\x1f" + strings.Join(keys, "\x1f") + "\x1f"
}

// NormalizeDate returns a DA value as YYYYMMDD, accepting the retired YYYY.MM.DD form (PS3.5 6.2 note).
func NormalizeDate(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), ".", "")
}

// NormalizeTime returns a TM value as HHMMSS[.FFFFFF] so that strings compare in time order; missing minutes and
// seconds are filled with 0s, or with 9s when upper is set (the end of a range "…-1015" includes 10:15:59).
// The retired HH:MM:SS form is accepted.
func NormalizeTime(s string, upper bool) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	if s == "" {
		return ""
	}
	frac := ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s, frac = s[:i], s[i:]
	}
	fill := "0000"
	if upper {
		fill = "5959"
	}
	if len(s) < 6 && len(s) >= 2 && len(s)%2 == 0 {
		s += fill[len(s)-2:]
	}
	if upper && frac == "" {
		frac = ".999999"
	}
	return s + frac
}

// sameDataSet reports whether the live stored copy of an instance and the blob under key hold the same data set:
// the same bytes after their File Meta Information. It reads both only when a conflict is found, which is rare.
// dropBlob deletes a blob the index has just stopped needing for one instance, if nothing else refers to it now: blob
// keys are the hash of the content, so the same file stored by another institution, or stored again a moment ago,
// is the same blob. what names the step in the log.
func (s *Service) dropBlob(ctx context.Context, key, what string) {
	used, err := s.Index.BlobInUse(ctx, key)
	if err == nil && !used {
		err = s.Blobs.Delete(ctx, key)
	}
	if err != nil {
		s.Logger.Error(what, "key", key, "err", err)
	}
}

func (s *Service) sameDataSet(ctx context.Context, institution int64, sopInstanceUID, key string) bool {
	// The caller's own copy only (Scope.OwnOnly): another institution's copy is another instance.
	recs, err := s.Index.QueryInstances(ctx, &renkei.Query{Level: renkei.InstanceLevel, Limit: 1, Scope: &renkei.Scope{Institutions: []int64{institution}, OwnOnly: true},
		Matches: []renkei.Match{{Keyword: "SOPInstanceUID", Kind: renkei.MatchSingle, Value: sopInstanceUID}}})
	if err != nil || len(recs) == 0 {
		return false
	}
	a, aoff, err := s.openDataSet(ctx, recs[0].BlobKey)
	if err != nil {
		return false
	}
	defer a.Close()
	b, boff, err := s.openDataSet(ctx, key)
	if err != nil {
		return false
	}
	defer b.Close()
	if a.Size()-aoff != b.Size()-boff {
		return false
	}
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for off := int64(0); off < a.Size()-aoff; {
		n := min(int64(len(ba)), a.Size()-aoff-off)
		if _, err := a.ReadAt(ba[:n], aoff+off); err != nil {
			return false
		}
		if _, err := b.ReadAt(bb[:n], boff+off); err != nil {
			return false
		}
		if !bytes.Equal(ba[:n], bb[:n]) {
			return false
		}
		off += n
	}
	return true
}

// openDataSet opens a blob and finds where its data set starts (after the meta information).
func (s *Service) openDataSet(ctx context.Context, key string) (blob.Reader, int64, error) {
	b, err := s.Blobs.Open(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	opt := dicom.DefaultReadOptions
	opt.StopAtPixelData, opt.BulkThreshold = true, 1024
	f, err := dicom.Parse(b, opt)
	if err != nil || f.Deflated {
		b.Close()
		return nil, 0, fmt.Errorf("no data set offset")
	}
	return b, f.DataSetOffset, nil
}

// sourceOf is how an instance arrived, with the modality that made the file when a gateway forwarded it: the
// SourceApplicationEntityTitle of its File Meta Information (PS3.10 7.1), e.g. "STOW-RS from AE CT_ROOM1".
func sourceOf(transport string, meta *dicom.DataSet) string {
	if meta == nil || strings.HasPrefix(transport, "C-STORE") {
		return transport // the association's calling AE says it already
	}
	if ae := strings.TrimSpace(meta.String(dicom.SourceApplicationEntityTitle)); ae != "" && len(ae) <= 16 {
		return transport + " from AE " + ae
	}
	return transport
}
