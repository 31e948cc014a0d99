// Package access decides who may see what, in one place: Index wraps the archive's index with the same interface,
// so that QIDO-RS, WADO-RS, WADO-URI, C-FIND, C-MOVE, C-GET, the UI and the JSON API, which all read through the
// archive, apply the same rule. A caller sees the data its institution owns and the data shared with its institution
// or with it (shares, break-glass); anything else answers exactly like something that does not exist. Every read and
// write of patient data is recorded in the audit chain before the answer goes out, and if it cannot be recorded the
// access is refused (fail closed).
package access

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"renkei"
	"renkei/archive"
)

// Grants says what shares add to what a user of an institution sees, and which local patients are one person
// (implemented by sqlstore.DB).
type Grants interface {
	Grants(ctx context.Context, institution, user int64, now time.Time) (renkei.Grants, error)
	Linked(ctx context.Context, patient int64) ([]renkei.LocalPatient, error)
	RegionalPatient(ctx context.Context, regional int64) ([]renkei.LocalPatient, error)
}

// Auditor appends events to the audit chain and returns once they are committed (implemented by sqlstore.DB).
type Auditor interface {
	Audit(ctx context.Context, events ...*renkei.AuditEvent) error
}

// Index is the archive index as one caller may see it: the principal in each call's context decides.
type Index struct {
	Next    archive.Index
	Grants  Grants
	Auditor Auditor
	Now     func() time.Time
	// DedupWindow is how long a (caller, session, study, action) read is recorded only once: a viewer that opens a
	// CT reads 600 frames, and the trail should say "opened the CT", not list 600 reads.
	DedupWindow time.Duration

	mu   sync.Mutex
	seen map[readKey]time.Time
}

// readKey names one (caller, session, address, study, action) for the dedup window. The address is part of it: the
// same token or session used from a second address is worth recording (the monitoring rules look for it).
type readKey struct {
	kind                  renkei.PrincipalKind
	id                    int64
	name, session, source string
	study                 string
	patient               int64 // a patient found by a patient search (study "")
	action                renkei.AuditAction
}

// New wraps next.
func New(next archive.Index, grants Grants, auditor Auditor) *Index {
	return &Index{Next: next, Grants: grants, Auditor: auditor, Now: time.Now, DedupWindow: 10 * time.Minute, seen: map[readKey]time.Time{}}
}

var _ archive.Index = (*Index)(nil)

func unauthenticated(op string) error {
	return renkei.Errorj(op, renkei.Unauthorized, "ログインしてください。", "please log in")
}

// Scope returns what the principal in ctx may see; nil for the system. No principal is a renkei.Unauthorized error.
func (x *Index) Scope(ctx context.Context) (*renkei.Scope, error) {
	p := renkei.PrincipalFrom(ctx)
	if p == nil {
		return nil, unauthenticated("access.Scope")
	}
	if p.Kind == renkei.SystemPrincipal {
		return nil, nil
	}
	sc := &renkei.Scope{Institutions: []int64{p.Institution}}
	if p.Role == renkei.PatientRole {
		// A patient sees their own studies at every institution their identity is linked to, and nothing else.
		sc.Institutions = nil
		if p.Patient == 0 {
			return sc, nil
		}
		linked, err := x.Grants.Linked(ctx, p.Patient)
		if err != nil {
			return nil, err
		}
		for _, lp := range linked {
			sc.Patients = append(sc.Patients, lp.PK)
		}
		return sc, nil
	}
	sc.Grantee = &renkei.Grantee{Institution: p.Institution, User: userOf(p), At: x.Now()}
	return sc, nil
}

func userOf(p *renkei.Principal) int64 {
	if p.Kind == renkei.UserPrincipal {
		return p.ID
	}
	return 0
}

// Insert stores an instance as the caller's institution's own, with the audit event of the write in the same
// transaction. Callers that may only read get renkei.Forbidden.
func (x *Index) Insert(ctx context.Context, inst *renkei.Instance) (renkei.StoreOutcome, string, error) {
	p := renkei.PrincipalFrom(ctx)
	switch {
	case p == nil:
		return 0, "", unauthenticated("access.Insert")
	case p.Kind == renkei.SystemPrincipal:
		return x.Next.Insert(ctx, inst)
	case !p.Write || p.Role == renkei.PatientRole:
		return 0, "", renkei.Errorj("access.Insert", renkei.Forbidden, "このアカウントは画像を見ることはできますが、保存はできません。",
			"this account may read but not store images")
	}
	inst.Institution = p.Institution
	e := renkei.EventFor(p, renkei.ActionStore, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Study, e.Detail = p.Institution, inst.Patient, inst.StudyInstanceUID, inst.SOPInstanceUID
	if strings.Contains(inst.Source, " from AE ") {
		e.Detail += " (" + inst.Source + ")" // the modality behind a gateway or another sender
	}
	inst.Audit = &e
	return x.Next.Insert(ctx, inst)
}

// Matchable is the index's.
func (x *Index) Matchable(level renkei.QueryLevel, keyword string) bool {
	return x.Next.Matchable(level, keyword)
}

// scoped copies q with the caller's scope.
func (x *Index) scoped(ctx context.Context, q *renkei.Query) (*renkei.Query, *renkei.Principal, error) {
	sc, err := x.Scope(ctx)
	if err != nil {
		return nil, nil, err
	}
	q2 := *q
	if sc != nil && q.Scope != nil && q.Scope.OwnOnly {
		sc.OwnOnly = true
	}
	q2.Scope = sc
	if err := x.regional(ctx, &q2); err != nil {
		return nil, nil, err
	}
	return &q2, renkei.PrincipalFrom(ctx), nil
}

// regional turns a query by regional patient (PatientID = the regional patient's number, IssuerOfPatientID =
// renkei.RegionalIssuer, as IHE PIX names a patient in the affinity domain) into a query of every local patient
// linked to it; the scope still decides which of their studies the caller sees.
func (x *Index) regional(ctx context.Context, q *renkei.Query) error {
	var id string
	regional := false
	var rest []renkei.Match
	for _, m := range q.Matches {
		switch {
		case m.Keyword == "IssuerOfPatientID" && m.Kind == renkei.MatchSingle && m.Value == renkei.RegionalIssuer:
			regional = true
		case m.Keyword == "PatientID" && m.Kind == renkei.MatchSingle:
			id = m.Value
			rest = append(rest, m)
		default:
			rest = append(rest, m)
		}
	}
	if !regional {
		return nil
	}
	q.Matches = slices.DeleteFunc(rest, func(m renkei.Match) bool { return m.Keyword == "PatientID" })
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return renkei.Errorf("access.Query", renkei.Invalid, "a regional patient (IssuerOfPatientID=%s) is named by its number in PatientID, not %q", renkei.RegionalIssuer, id)
	}
	list, err := x.Grants.RegionalPatient(ctx, n)
	if renkei.ErrorKind(err) == renkei.NotFound {
		q.Patients = []int64{0} // no such person: nothing matches (an empty list would not limit)
		return nil
	}
	if err != nil {
		return err
	}
	var pks []int64
	for _, lp := range list {
		if len(q.Patients) == 0 || slices.Contains(q.Patients, lp.PK) {
			pks = append(pks, lp.PK)
		}
	}
	if len(pks) == 0 {
		pks = []int64{0}
	}
	q.Patients = pks
	return nil
}

// QueryStudies answers within the caller's scope and records the studies it returned.
func (x *Index) QueryStudies(ctx context.Context, q *renkei.Query) ([]renkei.StudyRecord, error) {
	q2, p, err := x.scoped(ctx, q)
	if err != nil {
		return nil, err
	}
	recs, err := x.Next.QueryStudies(ctx, q2)
	if err != nil {
		return nil, err
	}
	return recs, x.record(ctx, p, q2, len(recs), func(i int) *renkei.StudyRecord { return &recs[i] })
}

// QuerySeries answers within the caller's scope and records the studies it returned.
func (x *Index) QuerySeries(ctx context.Context, q *renkei.Query) ([]renkei.SeriesRecord, error) {
	q2, p, err := x.scoped(ctx, q)
	if err != nil {
		return nil, err
	}
	recs, err := x.Next.QuerySeries(ctx, q2)
	if err != nil {
		return nil, err
	}
	return recs, x.record(ctx, p, q2, len(recs), func(i int) *renkei.StudyRecord { return &recs[i].Study })
}

// QueryInstances answers within the caller's scope and records the studies it returned.
func (x *Index) QueryInstances(ctx context.Context, q *renkei.Query) ([]renkei.InstanceRecord, error) {
	q2, p, err := x.scoped(ctx, q)
	if err != nil {
		return nil, err
	}
	recs, err := x.Next.QueryInstances(ctx, q2)
	if err != nil {
		return nil, err
	}
	return recs, x.record(ctx, p, q2, len(recs), func(i int) *renkei.StudyRecord { return &recs[i].Series.Study })
}

// QueryPatients answers within the caller's scope, the same scope as for studies, and records each patient it
// returned, as QueryStudies records each study: a patient found by name, with no study, is patient data read all the
// same.
func (x *Index) QueryPatients(ctx context.Context, q *renkei.PatientQuery) ([]renkei.PatientRecord, error) {
	sc, err := x.Scope(ctx)
	if err != nil {
		return nil, err
	}
	q2 := *q
	if sc != nil && q.Scope != nil && q.Scope.OwnOnly {
		sc.OwnOnly = true
	}
	q2.Scope = sc
	recs, err := x.Next.QueryPatients(ctx, &q2)
	if err != nil {
		return nil, err
	}
	p := renkei.PrincipalFrom(ctx)
	if p.Kind == renkei.SystemPrincipal || len(recs) == 0 {
		// As for studies, a search that found nothing read nothing (only reads by UID are recorded as denied).
		return recs, nil
	}
	action := renkei.ActionFrom(ctx)
	now := x.Now()
	var breakGlass []int64
	if p.Kind == renkei.UserPrincipal && slices.ContainsFunc(recs, func(r renkei.PatientRecord) bool { return r.Institution != p.Institution }) {
		g, err := x.Grants.Grants(ctx, p.Institution, p.ID, now)
		if err != nil {
			return nil, err
		}
		breakGlass = g.BreakGlass
	}
	var events []*renkei.AuditEvent
	var keys []readKey
	for _, r := range recs {
		key := readKey{p.Kind, p.ID, p.Name, p.Session, p.Source, "", r.PK, action}
		if x.recent(key, now) {
			continue
		}
		keys = append(keys, key)
		e := renkei.EventFor(p, action, renkei.OutcomeSuccess)
		e.Time, e.DataInstitution, e.Patient, e.Detail = now, r.Institution, r.Key, "patient search"
		if purpose, how := readVia(p, r.Institution, slices.Contains(breakGlass, r.PK)); how != "" {
			e.Purpose, e.Detail = purpose, e.Detail+": "+how
		}
		events = append(events, &e)
	}
	return recs, x.commitReads(ctx, events, keys, now)
}

// readVia says how the caller came to read data owned by institution: "own data" (a patient's account), "break-glass"
// (with that purpose), "shared", or "" for the caller's institution's own.
func readVia(p *renkei.Principal, institution int64, breakGlass bool) (purpose, how string) {
	switch {
	case p.Role == renkei.PatientRole:
		return p.Purpose, "own data"
	case institution != p.Institution && breakGlass:
		return string(renkei.PurposeBreakGlass), "break-glass"
	case institution != p.Institution:
		return p.Purpose, "shared"
	}
	return p.Purpose, ""
}

// commitReads writes the events of reads and waits for them to commit, then skips their keys for the dedup window.
// Only reads that are in the chain are skipped next time: a refused read is recorded when it is tried again.
func (x *Index) commitReads(ctx context.Context, events []*renkei.AuditEvent, keys []readKey, now time.Time) error {
	if len(events) == 0 {
		return nil
	}
	if err := x.Auditor.Audit(ctx, events...); err != nil {
		return auditFailed(err)
	}
	x.remember(keys, now)
	return nil
}

// record writes one event per study in the answer (once per DedupWindow for the same caller, session, study and
// action) and waits for it to commit. A read by UID that found nothing is recorded as denied: it is either a typo or
// someone guessing UIDs, and the monitoring rules count them.
func (x *Index) record(ctx context.Context, p *renkei.Principal, q *renkei.Query, n int, study func(int) *renkei.StudyRecord) error {
	if p.Kind == renkei.SystemPrincipal || (q.Scope != nil && q.Scope.OwnOnly) {
		// The system's own maintenance, and an ingest comparing with the caller's own copy, read nothing for anyone.
		return nil
	}
	action := renkei.ActionFrom(ctx)
	var events []*renkei.AuditEvent
	var keys []readKey
	now := x.Now()
	// Which patients came by break-glass is looked up only when something not the caller's own is in the answer.
	var breakGlass []int64
	bgLoaded := false
	isBreakGlass := func(st *renkei.StudyRecord) (bool, error) {
		if p.Kind != renkei.UserPrincipal || st.Institution == p.Institution {
			return false, nil
		}
		if !bgLoaded {
			g, err := x.Grants.Grants(ctx, p.Institution, p.ID, now)
			if err != nil {
				return false, err
			}
			breakGlass, bgLoaded = g.BreakGlass, true
		}
		return slices.Contains(breakGlass, st.PatientPK), nil
	}
	done := map[int64]bool{}
	for i := range n {
		st := study(i)
		if done[st.StudyPK] {
			continue
		}
		done[st.StudyPK] = true
		key := dedupKey(p, st.StudyInstanceUID, action)
		if x.recent(key, now) {
			continue
		}
		keys = append(keys, key)
		e := renkei.EventFor(p, action, renkei.OutcomeSuccess)
		e.Time, e.DataInstitution, e.Patient, e.Study = now, st.Institution, st.Patient, st.StudyInstanceUID
		bg, err := isBreakGlass(st)
		if err != nil {
			return err
		}
		e.Purpose, e.Detail = readVia(p, st.Institution, bg)
		events = append(events, &e)
	}
	if n == 0 && (action == renkei.ActionRead || action == renkei.ActionExport) {
		e := renkei.EventFor(p, renkei.ActionDenied, renkei.OutcomeFailure)
		e.Time, e.Detail = now, "not found or not visible: "+describe(q)
		events = append(events, &e)
	}
	return x.commitReads(ctx, events, keys, now)
}

// auditFailed refuses an access whose audit events could not be committed (fail closed).
func auditFailed(err error) error {
	return &renkei.Error{Op: "access.record", Kind: renkei.Unavailable,
		Message:  "the access could not be recorded in the audit trail, so it was refused; please try again later",
		Japanese: "監査記録に書き込めなかったため、アクセスをお断りしました。しばらくしてからもう一度お試しください。", Err: err}
}

func describe(q *renkei.Query) string {
	var parts []string
	for _, m := range q.Matches {
		v := m.Value
		if len(m.Values) > 0 {
			v = strings.Join(m.Values, `\`)
		}
		parts = append(parts, m.Keyword+"="+v)
	}
	return strings.Join(parts, " ")
}

func dedupKey(p *renkei.Principal, study string, action renkei.AuditAction) readKey {
	return readKey{p.Kind, p.ID, p.Name, p.Session, p.Source, study, 0, action}
}

// recent reports whether the read named by key was recorded within the dedup window.
func (x *Index) recent(key readKey, now time.Time) bool {
	if x.DedupWindow <= 0 {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	t, ok := x.seen[key]
	return ok && now.Sub(t) < x.DedupWindow
}

// remember records that the reads named by keys were committed to the audit chain at now.
func (x *Index) remember(keys []readKey, now time.Time) {
	if x.DedupWindow <= 0 || len(keys) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.seen == nil {
		x.seen = map[readKey]time.Time{}
	}
	if len(x.seen) > 200_000 {
		for k, t := range x.seen {
			if now.Sub(t) >= x.DedupWindow {
				delete(x.seen, k)
			}
		}
	}
	for _, k := range keys {
		x.seen[k] = now
	}
}

// Trash moves the caller's institution's own data into or out of the trash; only users who manage images
// (institution admins, radiologists) and write tokens may. Others' data answers as not found.
func (x *Index) Trash(ctx context.Context, req renkei.TrashRequest) (int, error) {
	p := renkei.PrincipalFrom(ctx)
	if p == nil {
		return 0, unauthenticated("access.Trash")
	}
	if p.Kind != renkei.SystemPrincipal {
		if !p.Write || (p.Kind == renkei.UserPrincipal && p.Role != renkei.InstitutionAdmin && p.Role != renkei.Radiologist) ||
			p.Kind == renkei.AEPrincipal {
			return 0, renkei.Errorj("access.Trash", renkei.Forbidden, "画像の削除や復元ができるのは、施設の管理者か放射線科医だけです。",
				"only an institution administrator or a radiologist may delete or restore images")
		}
		req.Scope = &renkei.Scope{Institutions: []int64{p.Institution}, OwnOnly: true}
	}
	action := renkei.ActionDelete
	if req.Restore {
		action = renkei.ActionRestore
	}
	e := renkei.EventFor(p, action, renkei.OutcomeSuccess)
	e.Detail = strings.TrimSpace(req.Series + " " + req.Instance)
	if req.Purge {
		e.Detail = "purged from the trash at once (no longer restorable)"
	}
	req.Audit = &e
	return x.Next.Trash(ctx, req)
}

// Purge is the index's (the system's maintenance: it removes only what stayed in the trash past its period).
func (x *Index) Purge(ctx context.Context, cutoff time.Time) ([]string, error) {
	return x.Next.Purge(ctx, cutoff)
}

// BlobInUse is the index's.
func (x *Index) BlobInUse(ctx context.Context, key string) (bool, error) {
	return x.Next.BlobInUse(ctx, key)
}
