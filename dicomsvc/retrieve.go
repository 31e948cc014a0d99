package dicomsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"renkei"
	"renkei/archive"
	"renkei/dicom"
	"renkei/dimse"
)

// retrieve selects the instances of a C-MOVE or C-GET (PS3.4 C.4.2, C.4.3) from the identifier's unique keys: the
// dimse package sends each as a C-STORE sub-operation, in the stored transfer syntax when the destination accepted
// it, else in Explicit or Implicit VR Little Endian, which Instance.Open produces.
func (s *Service) retrieve(ctx context.Context, a *dimse.Association, req *dimse.RetrieveRequest) ([]dimse.Instance, dimse.Status) {
	log := s.logger().With("calling_ae", a.Peer().CallingAETitle)
	start := s.now()
	q, st := retrieveQuery(req)
	if st.IsFailure() {
		log.Info("retrieve refused", "status", st)
		return nil, st
	}
	var out []dimse.Instance
	live := &liveCheck{s: s}
	issuer, byPatient := "", hasMatch(q, "PatientID") && !hasMatch(q, "IssuerOfPatientID")
	err := pages(ctx, q, s.Archive.QueryInstances, func(rec *renkei.InstanceRecord) error {
		if byPatient {
			// A PatientID is unique only within its issuer: without IssuerOfPatientID it may name two people.
			if i := rec.Series.Study.Patient.Issuer; len(out) == 0 {
				issuer = i
			} else if i != issuer {
				return &renkei.Error{Op: "dicomsvc.Retrieve", Kind: renkei.Invalid, Message: "PatientID names several patients: give IssuerOfPatientID",
					Err: fmt.Errorf("PatientID %s has issuers %q and %q", rec.Series.Study.Patient.ID, issuer, i)}
			}
		}
		// Only what Open needs is kept: a study of thousands of instances stays small in memory.
		slim := renkei.InstanceRecord{SOPInstanceUID: rec.SOPInstanceUID, SOPClassUID: rec.SOPClassUID,
			TransferSyntaxUID: rec.TransferSyntaxUID, BlobKey: rec.BlobKey, Size: rec.Size}
		n := live.add(rec.Series.Study.Institution, rec.SOPInstanceUID)
		out = append(out, dimse.Instance{SOPClassUID: slim.SOPClassUID, SOPInstanceUID: slim.SOPInstanceUID,
			TransferSyntaxUID: slim.TransferSyntaxUID, Open: func(ctx context.Context, ts string) (io.ReadCloser, error) {
				if err := live.check(ctx, n); err != nil {
					log.Info("retrieve: instance not sent", "sop_instance", slim.SOPInstanceUID, "err", err)
					return nil, err
				}
				rc, err := s.openDataSet(ctx, slim, ts)
				if err != nil {
					log.Warn("retrieve: instance cannot be sent in the transfer syntax the peer accepted",
						"sop_instance", slim.SOPInstanceUID, "stored", slim.TransferSyntaxUID, "accepted", ts, "err", err)
				}
				return rc, err
			}})
		if len(out) > 0xFFFF {
			return renkei.Errorf("dicomsvc.Retrieve", renkei.TooLarge, "more than 65535 instances match: retrieve series by series")
		}
		return nil
	})
	if err != nil {
		if renkei.ErrorKind(err) == renkei.TooLarge {
			return nil, dimse.Failure(dimse.StatusOutOfResourcesMatches, renkei.ErrorMessage(err))
		}
		st := queryStatus(err)
		if st.Code == dimse.StatusOutOfResources {
			st.Code = dimse.StatusOutOfResourcesMatches // PS3.4 C.4.2.1.5: unable to calculate the number of matches
		}
		log.Warn("retrieve failed", "status", st, "err", err)
		return nil, st
	}
	live.listed(start)
	log.Info("retrieve", "destination", req.MoveDestination, "instances", len(out), "elapsed", s.now().Sub(start))
	return out, dimse.Success()
}

// recheckInterval and recheckBatch bound how stale the trash state of a retrieve's instances may be when each is
// sent: it is read again for the next recheckBatch instances once those read before are sent or recheckInterval has
// passed, whichever comes first. The listing counts as the first read: a retrieve done within recheckInterval of
// it costs no query more, a study of 500 instances sent at ~800 a second three, not 500; a slow destination costs
// at most four a second; a DELETE is honoured within a quarter of a second.
const (
	recheckInterval = 250 * time.Millisecond
	recheckBatch    = 100
)

// liveCheck keeps a retrieve from sending what was moved to the trash (DELETE of a study, series or instance)
// after the retrieve listed its instances: before each instance is opened, check reads again, in one query for the
// next recheckBatch of them, which are still live, and refuses those that are not. The instance's sub-operation then
// fails, and its UID is in the final response's Failed SOP Instance UID List (PS3.4 C.4.2.3.1, C.4.3.3.1): it was
// not stored at the destination, which is what a failed sub-operation tells the requestor, while a warning would tell
// it the instance arrived (coerced or with a warning of the destination's). The final status is then 0xB000
// (sub-operations complete, some failed), or 0xA702 when none was sent at all.
//
// The query runs as the system: the retrieve's scope was applied when the instances were listed, and this re-read
// must neither widen it (each instance is matched with its owning institution, as a UID may be stored by two) nor
// write a second audit event of the read.
type liveCheck struct {
	s      *Service
	uids   []string
	owners []int64

	mu     sync.Mutex
	from   int       // the first instance of the window read last
	live   []bool    // the window's state: live[i-from]
	readAt time.Time // when it was read
}

// add lists an instance in the retrieve's order and returns its position.
func (c *liveCheck) add(owner int64, uid string) int {
	c.uids, c.owners = append(c.uids, uid), append(c.owners, owner)
	return len(c.uids) - 1
}

// listed records that the listing begun at start found every instance live: until recheckInterval after it, none
// is read again (a retrieve of one instance, or of a small series, costs no query more).
func (c *liveCheck) listed(start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.from, c.readAt = 0, start
	c.live = make([]bool, len(c.uids))
	for i := range c.live {
		c.live[i] = true
	}
}

// check reports whether instance i may still be sent: nil if it is live as of at most recheckInterval ago, a
// renkei.NotFound error if it is in the trash (or purged), the index's error if its state could not be read (fail
// closed: an instance is sent only when it is known to be live).
func (c *liveCheck) check(ctx context.Context, i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.s.now()
	if i < c.from || i >= c.from+len(c.live) || now.Sub(c.readAt) >= recheckInterval {
		if err := c.read(ctx, i, now); err != nil {
			return err
		}
	}
	if !c.live[i-c.from] {
		return renkei.Errorf("dicomsvc.Retrieve", renkei.NotFound, "instance %s was moved to the trash while the retrieve was under way", c.uids[i])
	}
	return nil
}

// read reads the state of instances [i, i+recheckBatch) in one query.
func (c *liveCheck) read(ctx context.Context, i int, now time.Time) error {
	uids := c.uids[i:min(i+recheckBatch, len(c.uids))]
	q := &renkei.Query{Level: renkei.InstanceLevel, NoAttrs: true,
		Matches: []renkei.Match{{Keyword: "SOPInstanceUID", Kind: renkei.MatchList, Values: uids}}}
	recs, err := c.s.Archive.QueryInstances(renkei.WithPrincipal(ctx, renkei.System), q)
	if err != nil {
		return fmt.Errorf("re-read the trash state of the instances to send: %w", err)
	}
	type key struct {
		owner int64
		uid   string
	}
	found := make(map[key]bool, len(recs))
	for _, r := range recs {
		found[key{r.Series.Study.Institution, r.SOPInstanceUID}] = true
	}
	c.live = c.live[:0]
	for j, uid := range uids {
		c.live = append(c.live, found[key{c.owners[i+j], uid}])
	}
	c.from, c.readAt = i, now
	return nil
}

func hasMatch(q *renkei.Query, keyword string) bool {
	for _, m := range q.Matches {
		if m.Keyword == keyword {
			return true
		}
	}
	return false
}

// retrieveQuery turns a C-MOVE/C-GET identifier into an instance query on its unique keys (PS3.4 C.4.2.2.1): the key
// of the level is required (a UID list for STUDY, SERIES and IMAGE; PatientID at PATIENT, with IssuerOfPatientID
// when given), those of the levels above narrow it.
func retrieveQuery(req *dimse.RetrieveRequest) (*renkei.Query, dimse.Status) {
	id := req.Identifier
	bad := func(t dicom.Tag, format string, args ...any) (*renkei.Query, dimse.Status) {
		st := dimse.Failure(dimse.StatusDataSetDoesNotMatchSOPClass, fmt.Sprintf(format, args...))
		st.OffendingElement = []dicom.Tag{t}
		return nil, st
	}
	name := strings.ToUpper(strings.TrimSpace(id.String(tagQueryRetrieveLevel)))
	lv, ok := levelNames[name]
	if !ok {
		return bad(tagQueryRetrieveLevel, "QueryRetrieveLevel %q is not PATIENT, STUDY, SERIES or IMAGE", name)
	}
	patientRoot := req.SOPClassUID == dimse.PatientRootQueryRetrieveInformationModelMove || req.SOPClassUID == dimse.PatientRootQueryRetrieveInformationModelGet
	if lv == levelPatient && !patientRoot {
		return bad(tagQueryRetrieveLevel, "the Study Root model has no PATIENT level (PS3.4 C.6.2)")
	}
	q := &renkei.Query{Level: renkei.InstanceLevel, NoAttrs: true} // Open needs only keys and the blob key
	keys := []dicom.Tag{dicom.PatientID, dicom.IssuerOfPatientID, dicom.StudyInstanceUID, dicom.SeriesInstanceUID, dicom.SOPInstanceUID}
	required := [...]dicom.Tag{levelPatient: dicom.PatientID, levelStudy: dicom.StudyInstanceUID, levelSeries: dicom.SeriesInstanceUID, levelImage: dicom.SOPInstanceUID}[lv]
	values := 0
	for _, t := range keys {
		if (t == dicom.PatientID || t == dicom.IssuerOfPatientID) && !patientRoot {
			continue
		}
		if t == dicom.SeriesInstanceUID && lv < levelSeries || t == dicom.SOPInstanceUID && lv < levelImage {
			continue // keys below the level are not part of a retrieve identifier
		}
		v := strings.TrimSpace(string(id.Raw(t)))
		m, ok, err := archive.ParseMatch(dicom.Keyword(t), v)
		switch {
		case err != nil:
			return bad(t, "%s", renkei.ErrorMessage(err))
		case !ok && t == required:
			return bad(t, "a %s retrieve needs %s", lv, dicom.Keyword(t))
		case !ok:
			continue
		case m.Kind == renkei.MatchWildcard || m.Kind == renkei.MatchRange:
			return bad(t, "%s %q: a retrieve names instances by their unique keys, without wildcards", dicom.Keyword(t), v)
		case t == dicom.PatientID && m.Kind != renkei.MatchSingle:
			return bad(t, "a PATIENT retrieve names one patient")
		}
		if values += len(m.Values); values > maxQueryValues {
			return bad(t, "the identifier lists more than %d UIDs; split it into several retrieves", maxQueryValues)
		}
		q.Matches = append(q.Matches, m)
	}
	return q, dimse.Success()
}

// openDataSet returns the data set of a stored instance (no preamble or File Meta Information) in transfer syntax
// ts: the stored bytes when ts is the stored syntax; Explicit VR Little Endian through the archive's conversion
// (compressed pixel data decoded with renkei/codec); Implicit VR Little Endian re-encoded from that. Any other
// syntax, or a conversion the codecs cannot make, is an error: the sub-operation fails, and no wrong pixels are
// ever sent.
func (s *Service) openDataSet(ctx context.Context, rec renkei.InstanceRecord, ts string) (io.ReadCloser, error) {
	if ts == rec.TransferSyntaxUID {
		return s.storedDataSet(ctx, rec)
	}
	switch ts {
	case dicom.ExplicitVRLittleEndian:
		return s.explicitDataSet(ctx, rec)
	case dicom.ImplicitVRLittleEndian:
		var src io.ReadCloser
		var err error
		if rec.TransferSyntaxUID == dicom.ExplicitVRLittleEndian {
			src, err = s.storedDataSet(ctx, rec)
		} else {
			src, err = s.explicitDataSet(ctx, rec)
		}
		if err != nil {
			return nil, err
		}
		pr, pw := io.Pipe()
		go func() {
			err := toImplicit(pw, src)
			src.Close()
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
	return nil, renkei.Errorf("dicomsvc.Retrieve", renkei.Invalid, "instance %s is stored as %s and renkei cannot convert it to %s",
		rec.SOPInstanceUID, rec.TransferSyntaxUID, ts)
}

// storedDataSet returns the stored bytes after the File Meta Information.
func (s *Service) storedDataSet(ctx context.Context, rec renkei.InstanceRecord) (io.ReadCloser, error) {
	b, err := s.Archive.Blobs.Open(ctx, rec.BlobKey)
	if err != nil {
		return nil, err
	}
	off, err := dataSetOffset(b)
	if err != nil {
		b.Close()
		return nil, &renkei.Error{Op: "dicomsvc.Retrieve", Kind: renkei.Internal, Message: "the stored object cannot be read", Err: err}
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(b, off, b.Size()-off), b}, nil
}

// explicitDataSet streams archive.WriteObject's Explicit VR Little Endian file without its preamble and File Meta
// Information.
func (s *Service) explicitDataSet(ctx context.Context, rec renkei.InstanceRecord) (io.ReadCloser, error) {
	if !archive.CanConvert(rec.TransferSyntaxUID, dicom.ExplicitVRLittleEndian) {
		return nil, renkei.Errorf("dicomsvc.Retrieve", renkei.Invalid, "instance %s is stored as %s, whose pixel data renkei cannot decode",
			rec.SOPInstanceUID, rec.TransferSyntaxUID)
	}
	pr, pw := io.Pipe()
	go func() {
		// A C-CANCEL stops a retrieve between sub-operations, never inside one (PS3.4 C.4.2.3.1): the conversion ends
		// when the reader closes the pipe.
		pw.CloseWithError(s.Archive.WriteObject(context.WithoutCancel(ctx), pw, rec, dicom.ExplicitVRLittleEndian))
	}()
	if err := skipMeta(pr); err != nil {
		pr.CloseWithError(err)
		return nil, err
	}
	return pr, nil
}

// skipMeta reads past the preamble, "DICM" and the File Meta Information that dicom.WriteFile writes: its first
// element is the group length (PS3.10 7.1).
func skipMeta(r io.Reader) error {
	var h [144]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return fmt.Errorf("read converted object: %w", err)
	}
	if string(h[128:132]) != "DICM" || h[132] != 0x02 || h[133] != 0 || h[134] != 0 || h[135] != 0 {
		return errors.New("converted object without File Meta Information group length")
	}
	n := int64(h[140]) | int64(h[141])<<8 | int64(h[142])<<16 | int64(h[143])<<24
	_, err := io.CopyN(io.Discard, r, n)
	return err
}
