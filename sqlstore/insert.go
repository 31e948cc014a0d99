package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"renkei"
)

// insertReq is one instance, or a group of audit events, waiting for the committer.
type insertReq struct {
	inst   *renkei.Instance
	events []*renkei.AuditEvent
	flush  bool // FlushAudit: the journal's events go into the chain now
	res    chan insertRes
}

type insertRes struct {
	outcome renkei.StoreOutcome
	orphan  string // a blob key no instance refers to any more (a trashed copy was replaced)
	err     error

	// Where a stored instance went, for the batch's cache.
	patientPK, studyPK, seriesPK int64
	patientName                  string // the patient's name as stored before this instance
}

// maxBatch bounds how many instances share one transaction.
const maxBatch = 128

// maxReadSyncDelay bounds how long the audit events of reads may stay committed but not yet fsynced. A batch of
// nothing but read events commits with synchronous=NORMAL (in WAL mode: atomic and safe from a process crash, made
// durable by the next fsync), unless the last full sync is older than this; everything else (stored instances,
// logins, grants, admin actions) commits with synchronous=FULL, which also makes every earlier read event durable.
// Without this, every read would wait for a disk flush, which cost more than the read itself.
const maxReadSyncDelay = 200 * time.Millisecond

// readsOnly reports whether a batch holds only audit events of reads.
func readsOnly(batch []*insertReq) bool {
	for _, r := range batch {
		if r.inst != nil || r.flush {
			return false
		}
		for _, e := range r.events {
			switch e.Action {
			case renkei.ActionQuery, renkei.ActionRead, renkei.ActionExport, renkei.ActionDenied:
			default:
				return false
			}
		}
	}
	return true
}

// Insert records one stored instance. It returns when the transaction holding it has committed: concurrent calls
// share transactions (group commit), so the fsync of the index is paid once per batch, not once per instance.
// The same SOPInstanceUID with the same blob is Duplicate; with other bytes it is a renkei.Conflict. A study or series
// UID already used by another patient or study is a Conflict too. orphan names a blob the caller may delete.
func (db *DB) Insert(ctx context.Context, inst *renkei.Instance) (outcome renkei.StoreOutcome, orphan string, err error) {
	req := &insertReq{inst: inst, res: make(chan insertRes, 1)}
	if err := db.submit(ctx, req); err != nil {
		return 0, "", err
	}
	// Once queued, the insert completes even if the caller goes away: the blob is already durable.
	r := <-req.res
	return r.outcome, r.orphan, r.err
}

// errClosed answers a write that arrives after Close (a request still running while the server shuts down).
var errClosed = &renkei.Error{Op: "index", Kind: renkei.Unavailable, Message: "the index is closed (renkei is shutting down)",
	Japanese: "サーバーが停止処理中です。しばらくしてからもう一度お試しください。"}

// submit queues a request for the committer. A request that arrives once Close has begun gets errClosed instead
// of a send on the closed queue (which panicked: a consult socket's goroutine could audit after shutdown).
func (db *DB) submit(ctx context.Context, req *insertReq) error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return errClosed
	}
	select {
	case db.batches <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (db *DB) committer() {
	defer close(db.done)
	for {
		req, ok := db.next()
		if !ok {
			db.closeJournal()
			return
		}
		if req == nil {
			continue // the journal's turn (journal.go)
		}
		batch := []*insertReq{req}
	fill:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-db.batches:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if db.commitBatch(batch) {
			db.promote(context.Background())
		}
	}
}

// next waits for the committer's next request, and meanwhile takes the journal's turns: a drain's outcome, the start
// of a drain when the events being written have waited journalDrainEvery, and the sync of the file written to
// maxReadSyncDelay after its last (then it returns nil, true). It returns false once the queue is closed.
func (db *DB) next() (*insertReq, bool) {
	j := db.journal
	if j == nil {
		req, ok := <-db.batches
		return req, ok
	}
	var timer <-chan time.Time
	if wait, ok := j.timer(); ok {
		if wait <= 0 {
			db.drainDue()
			return nil, true
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	var drained <-chan error
	if j.draining > 0 {
		drained = j.drained
	}
	var synced <-chan time.Time
	if j.dirty {
		t := time.NewTimer(maxReadSyncDelay - time.Since(j.lastSync))
		defer t.Stop()
		synced = t.C
	}
	select {
	case req, ok := <-db.batches:
		return req, ok
	case err := <-drained:
		db.afterDrain(err)
		return nil, true
	case <-timer:
		db.drainDue()
		return nil, true
	case <-synced:
		db.syncJournal()
		return nil, true
	}
}

// commitBatch commits a batch and answers its requests. It reports whether a transaction ran (not when the
// journal took a batch of reads).
func (db *DB) commitBatch(batch []*insertReq) bool {
	ctx := context.Background()
	fail := func(err error) {
		for _, r := range batch {
			r.res <- insertRes{err: &renkei.Error{Op: "index.Insert", Kind: renkei.Unavailable, Message: "the index could not be written",
				Japanese: "データを保存できませんでした。しばらくしてからもう一度お試しください。", Err: err}}
		}
	}
	j := db.journal
	var mark *journalMark
	if j != nil {
		if readsOnly(batch) && db.journalReads(batch) {
			return false
		}
		if onlyFlushes(batch) && j.failing == nil {
			db.flushLater(batch)
			return false
		}
		// The journal's events go first, in the same transaction: the chain keeps the order in which things were
		// acknowledged.
		db.waitDrain()
		if j.pending() > 0 {
			events, m := j.take(len(j.files))
			batch = append([]*insertReq{{events: events, res: make(chan insertRes, 1)}}, batch...)
			mark = &m
		}
	}
	// With a journal every transaction of the chain syncs in full: the journal's files are removed after it.
	relaxed := db.dialect == sqlite && j == nil && readsOnly(batch) && time.Since(db.lastFullSync) < maxReadSyncDelay
	results, err := db.chainCommit(ctx, batch, relaxed, mark)
	if err != nil {
		if j != nil {
			// Until a transaction of the chain succeeds again, reads take this path too and are refused while it
			// fails (fail closed); the waiting events stay in their files and in memory.
			j.failing, j.since = err, time.Now()
			j.answer(err)
		}
		fail(err)
		return true
	}
	if !relaxed {
		db.lastFullSync = time.Now()
	}
	if j != nil && (mark != nil || j.failing != nil) {
		if mark != nil && journalAfterDrain != nil {
			journalAfterDrain()
		}
		// Every file's events are in the chain (and audit_journal says so): they go, and a new file starts. If it
		// cannot, reads keep taking the chain's own path.
		if mark != nil {
			j.covered = mark.file
		}
		j.drop(len(j.files))
		j.failing = j.startFile()
		j.answer(nil)
	}
	for i, r := range batch {
		r.res <- results[i]
	}
	return true
}

// chainCommit runs a batch in one transaction on the write connection; mark, if set, records the journal's files
// whose events the batch appends. Only one chainCommit runs at a time: the committer's, or a drain's while the
// committer only writes to the journal (it waits for the drain before a transaction of its own).
func (db *DB) chainCommit(ctx context.Context, batch []*insertReq, relaxed bool, mark *journalMark) ([]insertRes, error) {
	// The batch holds the one write connection from start to end, so that a relaxed sync mode set for it cannot leak
	// to another writer's transaction.
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if relaxed {
		if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = NORMAL`); err != nil {
			return nil, err
		}
		defer conn.ExecContext(ctx, `PRAGMA synchronous = FULL`)
	}
	results, err := db.runBatch(ctx, conn, batch, true, mark)
	if errors.Is(err, errFastPath) {
		// A statement of the fast path failed, which on PostgreSQL spoils the whole transaction: the batch runs
		// again, every instance behind its own savepoint, so that the failure is that instance's alone.
		results, err = db.runBatch(ctx, conn, batch, false, mark)
	}
	return results, err
}

// onlyFlushes reports whether a batch holds nothing but FlushAudit's requests.
func onlyFlushes(batch []*insertReq) bool {
	for _, r := range batch {
		if !r.flush {
			return false
		}
	}
	return true
}

// errFastPath reports that a statement outside any savepoint failed and the batch must run again without the fast path.
var errFastPath = errors.New("the batch's fast path failed")

// rowCache remembers the patients, studies and series that instances went into recently, so that the next
// instance of a series (CT series are hundreds of instances, sent together) is one statement: an INSERT that
// checks in the same statement that the remembered rows are still what they were (the same UIDs, live, under the
// same patient and name). The cache is only a hint: a row changed since (trashed, purged, renamed, by this node or
// another) fails that check and the instance takes the full path, which looks everything up again. The counters of
// the series and studies are raised once per batch. On PostgreSQL every statement is a round trip, so this is what
// makes an instance cost ~2 round trips instead of ~11. Only the committer goroutine uses it.
type rowCache struct {
	patients  map[patientRef]cachedPatient
	studies   map[uidRef]cachedParent // a study and its patient
	series    map[uidRef]cachedParent // a series and its study
	addSeries map[int64]int           // series pk → instances to add in this batch
	addStudy  map[int64]int           // study pk → instances to add in this batch
}

// maxCachedSeries bounds the cache; when full it starts again empty.
const maxCachedSeries = 4096

type patientRef struct {
	institution int64
	issuer, id  string
}

type uidRef struct {
	institution int64
	uid         string
}

type cachedPatient struct {
	pk   int64
	name string
}

type cachedParent struct{ pk, parent int64 }

func (c *rowCache) reset() {
	c.patients, c.studies, c.series = map[patientRef]cachedPatient{}, map[uidRef]cachedParent{}, map[uidRef]cachedParent{}
	if c.addSeries == nil {
		c.addSeries, c.addStudy = map[int64]int{}, map[int64]int{}
	}
}

// lookup returns the rows an instance would go into, as remembered; ok is false when the full path must run.
func (c *rowCache) lookup(in *renkei.Instance) (patient, study, series int64, ok bool) {
	p, ok := c.patients[patientRef{in.Institution, in.Patient.Issuer, in.Patient.ID}]
	if !ok || (in.PatientName != "" && in.PatientName != p.name) {
		return 0, 0, 0, false
	}
	st, ok := c.studies[uidRef{in.Institution, in.StudyInstanceUID}]
	if !ok || st.parent != p.pk {
		return 0, 0, 0, false
	}
	se, ok := c.series[uidRef{in.Institution, in.SeriesInstanceUID}]
	if !ok || se.parent != st.pk {
		return 0, 0, 0, false
	}
	return p.pk, st.pk, se.pk, true
}

// remember records the rows a fully inserted instance went into.
func (c *rowCache) remember(in *renkei.Instance, r insertRes) {
	if c.series == nil || len(c.series) >= maxCachedSeries {
		c.reset()
	}
	name := in.PatientName
	if name == "" {
		name = r.patientName
	}
	c.patients[patientRef{in.Institution, in.Patient.Issuer, in.Patient.ID}] = cachedPatient{r.patientPK, name}
	c.studies[uidRef{in.Institution, in.StudyInstanceUID}] = cachedParent{r.studyPK, r.patientPK}
	c.series[uidRef{in.Institution, in.SeriesInstanceUID}] = cachedParent{r.seriesPK, r.studyPK}
}

// fastInsertQ inserts an instance into remembered rows if they are still those rows, live; it returns no row when
// they are not, or when the instance is already there (a duplicate, a conflict or a trashed copy).
const fastInsertQ = `INSERT INTO instances (institution_pk, series_pk, sop_uid, sop_class, instance_number, ts_uid, rows, columns, frames,
		bits_allocated, blob_key, size, charset_flag, attrs, received_at, source, charset)
	SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
	WHERE EXISTS (SELECT 1 FROM series WHERE pk = ? AND study_pk = ? AND institution_pk = ? AND series_uid = ? AND deleted_at IS NULL)
	AND EXISTS (SELECT 1 FROM studies WHERE pk = ? AND patient_pk = ? AND study_uid = ? AND deleted_at IS NULL)
	AND EXISTS (SELECT 1 FROM patients WHERE pk = ? AND issuer = ? AND patient_id = ? AND (? = '' OR name = ?))
	ON CONFLICT (institution_pk, sop_uid) DO NOTHING RETURNING pk`

func fastInsertArgs(in *renkei.Instance, patientPK, studyPK, seriesPK int64) []any {
	return append(instanceArgs(in, seriesPK), seriesPK, studyPK, in.Institution, in.SeriesInstanceUID, studyPK, patientPK, in.StudyInstanceUID,
		patientPK, in.Patient.Issuer, in.Patient.ID, in.PatientName, in.PatientName)
}

// flushCounters adds the counters gathered so far in the batch.
func (db *DB) flushCounters(ctx context.Context, tx *sql.Tx, c *rowCache) error {
	now := db.Now().UnixMilli()
	for pk, n := range c.addSeries {
		if _, err := db.txExec(ctx, tx, `UPDATE series SET num_instances = num_instances + ?, deleted_at = NULL WHERE pk = ?`, n, pk); err != nil {
			return err
		}
	}
	for pk, n := range c.addStudy {
		if _, err := db.txExec(ctx, tx, `UPDATE studies SET num_instances = num_instances + ?, updated_at = ? WHERE pk = ?`, n, now, pk); err != nil {
			return err
		}
	}
	clear(c.addSeries)
	clear(c.addStudy)
	return nil
}

// runBatch runs one transaction for the batch. With fast set, instances of a series seen recently take the fast path
// (see rowCache); a failure there returns errFastPath after rolling back.
func (db *DB) runBatch(ctx context.Context, conn *sql.Conn, batch []*insertReq, fast bool, mark *journalMark) ([]insertRes, error) {
	results := make([]insertRes, len(batch))
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	db.batch = &batchStmts{tx: tx, stmts: map[string]*sql.Stmt{}} // only the committer goroutine uses it
	cache := &db.rows
	if cache.series == nil {
		cache.reset()
	}
	clear(cache.addSeries)
	clear(cache.addStudy)
	var events []*renkei.AuditEvent
	for i, r := range batch {
		if r.inst == nil {
			events = append(events, r.events...)
			continue
		}
		if fast {
			if patientPK, studyPK, seriesPK, ok := cache.lookup(r.inst); ok {
				var pk int64
				err := db.txQueryRow(ctx, tx, fastInsertQ, fastInsertArgs(r.inst, patientPK, studyPK, seriesPK)...).Scan(&pk)
				if err == nil {
					cache.addSeries[seriesPK]++
					cache.addStudy[studyPK]++
					if r.inst.Audit != nil {
						events = append(events, r.inst.Audit)
					}
					continue
				}
				if !errors.Is(err, sql.ErrNoRows) {
					tx.Rollback()
					return nil, errFastPath
				}
				// Already there (a duplicate, a conflict, a copy in the trash), or the remembered rows changed: the
				// full path decides.
			}
			// The full path reads and may recount the counters: those gathered so far go in first.
			if err := db.flushCounters(ctx, tx, cache); err != nil {
				tx.Rollback()
				return nil, errFastPath
			}
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT one`); err != nil {
			tx.Rollback()
			return nil, err
		}
		res := db.insertOne(ctx, tx, r.inst)
		for try := 0; try < 3 && db.dialect == postgres && isUniqueViolation(res.err); try++ {
			// Another node inserted the same patient, study or series a moment ago (its transaction committed
			// before this insert could fail): start the instance again, now seeing that row.
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO one`); err != nil {
				tx.Rollback()
				return nil, err
			}
			res = db.insertOne(ctx, tx, r.inst)
		}
		if res.err != nil {
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO one`); err != nil {
				tx.Rollback()
				return nil, err
			}
		}
		if _, err := tx.ExecContext(ctx, `RELEASE one`); err != nil {
			tx.Rollback()
			return nil, err
		}
		results[i] = res
		if res.err == nil && res.outcome != renkei.Duplicate {
			cache.remember(r.inst, res)
		}
		if res.err == nil && r.inst.Audit != nil {
			events = append(events, r.inst.Audit)
		}
	}
	if fast {
		if err := db.flushCounters(ctx, tx, cache); err != nil {
			tx.Rollback()
			return nil, errFastPath
		}
	}
	// The audit events of the batch's writes and reads join its transaction: a write and its event commit together,
	// and if the chain cannot be extended nothing commits (fail closed).
	if err := db.appendAudit(ctx, tx, events); err != nil {
		tx.Rollback()
		return nil, err
	}
	if mark != nil {
		if err := mark.record(ctx, tx); err != nil {
			tx.Rollback()
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return results, nil
}

func nullInt(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func (db *DB) insertOne(ctx context.Context, tx *sql.Tx, in *renkei.Instance) insertRes {
	now := db.Now().UnixMilli()
	conflict := func(format string, args ...any) insertRes {
		return insertRes{err: renkei.Errorf("index.Insert", renkei.Conflict, format, args...)}
	}
	internal := func(err error) insertRes {
		return insertRes{err: &renkei.Error{Op: "index.Insert", Kind: renkei.Internal, Err: err}}
	}

	// Instance first: a duplicate changes nothing.
	var (
		instPK, instSeriesPK int64
		oldKey               string
		instDeleted          sql.NullInt64
		orphan               string
	)
	err := db.txQueryRow(ctx, tx, `SELECT pk, series_pk, blob_key, deleted_at FROM instances WHERE institution_pk = ? AND sop_uid = ?`, in.Institution, in.SOPInstanceUID).
		Scan(&instPK, &instSeriesPK, &oldKey, &instDeleted)
	switch {
	case err == nil && !instDeleted.Valid:
		if oldKey == in.BlobKey {
			return insertRes{outcome: renkei.Duplicate}
		}
		return conflict("instance %s is already stored with different content; the first copy is kept", in.SOPInstanceUID)
	case err == nil:
		// A copy in the trash is replaced by the new one.
		if _, err := db.txExec(ctx, tx, `DELETE FROM instances WHERE pk = ?`, instPK); err != nil {
			return internal(err)
		}
		if oldKey != in.BlobKey {
			var n int
			if err := db.txQueryRow(ctx, tx, `SELECT count(*) FROM instances WHERE blob_key = ?`, oldKey).Scan(&n); err != nil {
				return internal(err)
			}
			if n == 0 {
				orphan = oldKey
			}
		}
		if err := db.recount(ctx, tx, instSeriesPK, now); err != nil {
			return internal(err)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return internal(err)
	}

	// Patient.
	var patientPK int64
	var oldName string
	newPatient := false
	err = db.txQueryRow(ctx, tx, `SELECT pk, name FROM patients WHERE institution_pk = ? AND issuer = ? AND patient_id = ?`, in.Institution, in.Patient.Issuer, in.Patient.ID).Scan(&patientPK, &oldName)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if err := db.txQueryRow(ctx, tx, `INSERT INTO patients (institution_pk, issuer, patient_id, name, birth_date, sex) VALUES (?, ?, ?, ?, ?, ?) RETURNING pk`,
			in.Institution, in.Patient.Issuer, in.Patient.ID, in.PatientName, in.PatientBirthDate, in.PatientSex).Scan(&patientPK); err != nil {
			return internal(err)
		}
		newPatient = true
		if err := db.insertNames(ctx, tx, patientPK, in.PatientNameKeys); err != nil {
			return internal(err)
		}
	case err != nil:
		return internal(err)
	case oldName != in.PatientName && in.PatientName != "":
		// The latest name is shown (a correction at the source), but every spelling seen stays searchable: one
		// modality may send the name in romaji, another only in kana.
		if _, err := db.txExec(ctx, tx, `UPDATE patients SET name = ?, birth_date = CASE WHEN ? <> '' THEN ? ELSE birth_date END, sex = CASE WHEN ? <> '' THEN ? ELSE sex END WHERE pk = ?`,
			in.PatientName, in.PatientBirthDate, in.PatientBirthDate, in.PatientSex, in.PatientSex, patientPK); err != nil {
			return internal(err)
		}
		if err := db.insertNames(ctx, tx, patientPK, in.PatientNameKeys); err != nil {
			return internal(err)
		}
	}

	// Study.
	var studyPK, studyPatient int64
	var studyDeleted sql.NullInt64
	err = db.txQueryRow(ctx, tx, `SELECT pk, patient_pk, deleted_at FROM studies WHERE institution_pk = ? AND study_uid = ?`, in.Institution, in.StudyInstanceUID).Scan(&studyPK, &studyPatient, &studyDeleted)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if err := db.txQueryRow(ctx, tx, `INSERT INTO studies (institution_pk, patient_pk, study_uid, study_date, study_time, accession, study_id, description,
			referring, referring_key, tz_offset, attrs, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk`,
			in.Institution, patientPK, in.StudyInstanceUID, in.StudyDate, in.StudyTime, in.AccessionNumber, in.StudyID, in.StudyDescription,
			in.ReferringPhysicianName, in.ReferringPhysicianKey, in.TimezoneOffsetFromUTC, in.Attrs, now, now).Scan(&studyPK); err != nil {
			return internal(err)
		}
		if !newPatient { // a patient created just now has no shares yet
			if err := db.grantNewStudy(ctx, tx, in, studyPK, patientPK, now); err != nil {
				return internal(err)
			}
		}
	case err != nil:
		return internal(err)
	case studyPatient != patientPK:
		return conflict("study %s already belongs to another patient (a different PatientID or issuer); the instance was not stored", in.StudyInstanceUID)
	}

	// Series.
	var seriesPK, seriesStudy int64
	var seriesDeleted sql.NullInt64
	newSeries := false
	err = db.txQueryRow(ctx, tx, `SELECT pk, study_pk, deleted_at FROM series WHERE institution_pk = ? AND series_uid = ?`, in.Institution, in.SeriesInstanceUID).
		Scan(&seriesPK, &seriesStudy, &seriesDeleted)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if err := db.txQueryRow(ctx, tx, `INSERT INTO series (institution_pk, study_pk, series_uid, modality, series_number, description, body_part,
			series_date, series_time, pps_date, pps_time, attrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk`,
			in.Institution, studyPK, in.SeriesInstanceUID, in.Modality, nullInt(in.SeriesNumber), in.SeriesDescription, in.BodyPartExamined,
			in.SeriesDate, in.SeriesTime, in.PPSStartDate, in.PPSStartTime, in.Attrs).Scan(&seriesPK); err != nil {
			return internal(err)
		}
		newSeries = true
	case err != nil:
		return internal(err)
	case seriesStudy != studyPK:
		return conflict("series %s already belongs to another study; the instance was not stored", in.SeriesInstanceUID)
	}

	if _, err := db.txExec(ctx, tx, insertInstanceQ, instanceArgs(in, seriesPK)...); err != nil {
		return internal(err)
	}
	stored := insertRes{orphan: orphan, patientPK: patientPK, studyPK: studyPK, seriesPK: seriesPK, patientName: oldName}

	// Counters. A study or series coming back from the trash, or a replaced trashed copy, is recounted in full (a
	// series back from the trash of a live study adds a series and its modality to the study, not one instance).
	if studyDeleted.Valid || seriesDeleted.Valid || instDeleted.Valid {
		if err := db.recount(ctx, tx, seriesPK, now); err != nil {
			return internal(err)
		}
		return stored
	}
	if _, err := db.txExec(ctx, tx, `UPDATE series SET num_instances = num_instances + 1, deleted_at = NULL WHERE pk = ?`, seriesPK); err != nil {
		return internal(err)
	}
	if newSeries {
		var mods string
		if err := db.txQueryRow(ctx, tx, `SELECT modalities FROM studies WHERE pk = ?`, studyPK).Scan(&mods); err != nil {
			return internal(err)
		}
		mods = addModality(mods, in.Modality)
		if _, err := db.txExec(ctx, tx, `UPDATE studies SET num_series = num_series + 1, num_instances = num_instances + 1, modalities = ?, updated_at = ? WHERE pk = ?`, mods, now, studyPK); err != nil {
			return internal(err)
		}
	} else if _, err := db.txExec(ctx, tx, `UPDATE studies SET num_instances = num_instances + 1, updated_at = ? WHERE pk = ?`, now, studyPK); err != nil {
		return internal(err)
	}
	return stored
}

const insertInstanceQ = `INSERT INTO instances (institution_pk, series_pk, sop_uid, sop_class, instance_number, ts_uid, rows, columns, frames,
		bits_allocated, blob_key, size, charset_flag, attrs, received_at, source, charset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func instanceArgs(in *renkei.Instance, seriesPK int64) []any {
	return []any{in.Institution, seriesPK, in.SOPInstanceUID, in.SOPClassUID, nullInt(in.InstanceNumber), in.TransferSyntaxUID, in.Rows, in.Columns,
		in.NumberOfFrames, in.BitsAllocated, in.BlobKey, in.Size, in.CharsetFlag, in.Attrs, in.ReceivedAt.UnixMilli(), in.Source, in.Charset}
}

func (db *DB) insertNames(ctx context.Context, tx *sql.Tx, patientPK int64, keys []string) error {
	for _, k := range keys {
		if _, err := db.txExec(ctx, tx, `INSERT INTO patient_names (key, patient_pk) VALUES (?, ?) ON CONFLICT DO NOTHING`, k, patientPK); err != nil {
			return err
		}
	}
	return nil
}

func addModality(list, m string) string {
	if m == "" {
		return list
	}
	for _, x := range strings.Split(list, `\`) {
		if x == m {
			return list
		}
	}
	if list == "" {
		return m
	}
	return list + `\` + m
}

// recount recomputes the live counters of a series and its study from the rows, and moves each into or out of the
// trash according to whether it still has live instances.
func (db *DB) recount(ctx context.Context, tx *sql.Tx, seriesPK, now int64) error {
	var studyPK int64
	if err := tx.QueryRowContext(ctx, `SELECT study_pk FROM series WHERE pk = ?`, seriesPK).Scan(&studyPK); err != nil {
		return fmt.Errorf("recount: %w", err)
	}
	return db.recountStudy(ctx, tx, studyPK, now)
}

func (db *DB) recountStudy(ctx context.Context, tx *sql.Tx, studyPK, now int64) error {
	if db.dialect == postgres {
		// The study's grants follow its trash state below: a share of its patient being made meanwhile waits, or is
		// waited for (see lockGrants).
		var patientPK int64
		if err := tx.QueryRowContext(ctx, `SELECT patient_pk FROM studies WHERE pk = ?`, studyPK).Scan(&patientPK); err != nil {
			return fmt.Errorf("recount: %w", err)
		}
		if err := db.lockGrants(ctx, tx, patientPK, false); err != nil {
			return fmt.Errorf("recount: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE series SET
		num_instances = (SELECT count(*) FROM instances i WHERE i.series_pk = series.pk AND i.deleted_at IS NULL),
		deleted_at = CASE WHEN EXISTS (SELECT 1 FROM instances i WHERE i.series_pk = series.pk AND i.deleted_at IS NULL) THEN NULL ELSE coalesce(deleted_at, ?) END
		WHERE study_pk = ?`, now, studyPK); err != nil {
		return fmt.Errorf("recount: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT modality FROM series WHERE study_pk = ? AND deleted_at IS NULL ORDER BY pk`, studyPK)
	if err != nil {
		return fmt.Errorf("recount: %w", err)
	}
	var mods string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			rows.Close()
			return fmt.Errorf("recount: %w", err)
		}
		mods = addModality(mods, m)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("recount: %w", err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("recount: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE studies SET
		num_series = (SELECT count(*) FROM series r WHERE r.study_pk = studies.pk AND r.deleted_at IS NULL),
		num_instances = (SELECT coalesce(sum(num_instances), 0) FROM series r WHERE r.study_pk = studies.pk AND r.deleted_at IS NULL),
		modalities = ?,
		deleted_at = CASE WHEN EXISTS (SELECT 1 FROM series r WHERE r.study_pk = studies.pk AND r.deleted_at IS NULL) THEN NULL ELSE coalesce(deleted_at, ?) END,
		updated_at = ?
		WHERE pk = ?`, mods, now, now, studyPK)
	if err != nil {
		return fmt.Errorf("recount: %w", err)
	}
	// The grants of the study follow it into or out of the trash (see grants.go; the lock above orders this after a
	// rebuild of its patient's grants running at the same time).
	if _, err := tx.ExecContext(ctx, `UPDATE study_grants SET deleted_at = (SELECT deleted_at FROM studies WHERE pk = ?) WHERE study_pk = ?`, studyPK, studyPK); err != nil {
		return fmt.Errorf("recount: %w", err)
	}
	return nil
}

// batchStmts prepares each statement once per batch transaction: the committer runs the same dozen statements for
// every instance, and parsing SQL each time cost more than running it. (Statements prepared on the DB would need a
// second connection while the batch holds the only write connection.)
type batchStmts struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func (db *DB) batchStmt(ctx context.Context, q string) *sql.Stmt {
	b := db.batch
	if st, ok := b.stmts[q]; ok {
		return st
	}
	st, err := db.txStmt(ctx, b.tx, q)
	if err != nil || st == nil {
		return nil
	}
	b.stmts[q] = st
	return st
}

func (db *DB) txExec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st := db.batchStmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}

func (db *DB) txQueryRow(ctx context.Context, tx *sql.Tx, q string, args ...any) *sql.Row {
	if st := db.batchStmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, q, args...)
}
