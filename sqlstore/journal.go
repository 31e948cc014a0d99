package sqlstore

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"renkei"
	"renkei/internal/fsync"
)

// The audit journal (SQLite only). Every read of patient data writes an audit event that must be recorded before
// the first byte of the answer. Committing each group of concurrent reads' events as its own SQLite transaction
// cost more than the reads themselves (1.5–2.8× a read's time in BenchmarkAccess): a transaction's fixed work, not
// the events, was the cost, and the groups were small (one per concurrent request). Every read waited for it.
//
// So the committer writes the events of reads to an append-only file beside the index first: one write(2) per
// group, made durable by fdatasync at most maxReadSyncDelay later, the guarantee a read's event had before in
// SQLite's WAL with synchronous=NORMAL (safe from a crash of the process at once, from a power loss within 200 ms).
// The read is answered after that write. The file's events are then appended to the chain (audit_events) by a
// drain: a transaction of its own, run beside the committer (which goes on writing reads' events to a new file),
// every journalDrainEvery or journalDrainAt events. Their place in the chain, seq and hashes, is given then, as for
// every event; a read's caller never sees them. Before any other transaction of the chain (a stored instance, a
// login, a share, the trash), the journal's events go in first, in the same transaction, so the chain keeps the
// order in which things were acknowledged; and whatever reads the chain (the patient's access log, the admin audit,
// the monitor, verify) first has the journal drained (FlushAudit), so it sees every access up to then.
//
// Files and replay. The files are numbered (index.db-audit-journal.ID.N, ID naming this index); each drain closes the file being written and
// starts the next. The transaction that appends files' events also records (audit_journal) the newest of them and
// its number of events; the files are removed after it commits. At open, the events of files the chain does not
// hold yet are appended before anything else runs: after a crash, an answered read's event is in the chain before
// the server answers again. A torn last line (a crash in the middle of a write) was never acknowledged and is
// dropped.
//
// Fail closed. A read whose event cannot be written to the file is refused. A drain that fails leaves its events in
// their files and in memory; until a transaction of the chain succeeds again, the events of reads take the chain's
// own path (with those waiting before them), so reads are refused while the chain cannot be written.
//
// One process owns the journal, by an exclusive lock on index.db-audit-journal.lock. Another process opening the
// same index while it runs (renkei admin on the server's machine) finds it taken and appends its events directly,
// as on PostgreSQL; appendAudit reads the chain's head inside each transaction, so the two extend one chain.

// journalDrainEvery is how long events of reads wait in the journal at most before a drain appends them to the
// chain (a variable for the crash tests, which keep events in the file).
var journalDrainEvery = time.Second

// journalAfterDrain, if set (crash tests), runs after a drain's transaction commits and before its files are removed.
var journalAfterDrain func()

// journalDrainAt is how many events in the file being written start a drain at once.
const journalDrainAt = 4096

// journalMaxPending bounds the events waiting when the chain cannot be written: reads take the chain's own path
// beyond it (and are refused while it fails) instead of growing memory and the files without limit.
const journalMaxPending = 65536

// journalSuffix names the journal's files beside the index (as SQLite names its -wal and -shm).
const journalSuffix = "-audit-journal"

// JournalLockSuffix names, after the index's path, the lock file the audit journal leaves beside a SQLite index
// (a copy of the index made for a backup may remove it after Close, as SQLite's -shm).
const JournalLockSuffix = journalSuffix + ".lock"

type auditJournal struct {
	base     string         // the index's path + journalSuffix
	lock     *os.File       // held (flock) while this process owns the journal
	files    []*journalFile // not yet in the chain, oldest first; the last is the one written to
	lastSync time.Time      // when the file written to was last made durable
	dirty    bool           // the file written to was written since lastSync
	since    time.Time      // when the first event of the file written to was written
	next     int64          // the number of the next file

	draining int        // how many files (from the front) a running drain holds; 0 when none runs
	drained  chan error // a drain's outcome
	failing  error      // why the chain's last transaction failed; reads take the chain's own path until one succeeds

	covered int64           // the newest file whose events are all in the chain
	waiters []journalWaiter // FlushAudit's callers, answered when a drain has covered what they wait for
}

// journalWaiter is a FlushAudit waiting for the events of files up to need to be in the chain.
type journalWaiter struct {
	res  chan insertRes
	need int64
}

// journalFile is one numbered file and the events written to it.
type journalFile struct {
	n      int64
	f      *os.File
	size   int64 // the bytes of its whole lines
	events []*renkei.AuditEvent
}

// journalMark is what audit_journal records: the newest file whose events a transaction appends, and how many.
type journalMark struct {
	file  int64
	count int
}

// journalEvent is an event in a file: everything the chain stores of it but its place (seq, hashes).
type journalEvent struct {
	At       int64  `json:"at"` // Unix milliseconds, as the chain stores it
	Actor    string `json:"actor,omitempty"`
	Kind     string `json:"kind,omitempty"`
	ActorID  int64  `json:"actor_id,omitempty"`
	Inst     int64  `json:"inst,omitempty"`
	Role     string `json:"role,omitempty"`
	Action   string `json:"action"`
	Outcome  string `json:"outcome,omitempty"`
	Purpose  string `json:"purpose,omitempty"`
	Source   string `json:"source,omitempty"`
	DataInst int64  `json:"data_inst,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	Patient  string `json:"patient,omitempty"`
	Study    string `json:"study,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// appendJournalLine appends an event as a journalEvent's JSON line, written by hand: encoding/json's reflection was
// a third of the committer's work per event.
func appendJournalLine(b []byte, e *renkei.AuditEvent) []byte {
	b = strconv.AppendInt(append(b, `{"at":`...), e.Time.UnixMilli(), 10)
	str := func(name, v string) {
		if v != "" {
			b = appendJSONString(append(append(append(b, `,"`...), name...), `":`...), v)
		}
	}
	num := func(name string, v int64) {
		if v != 0 {
			b = strconv.AppendInt(append(append(append(b, `,"`...), name...), `":`...), v, 10)
		}
	}
	str("actor", e.Actor)
	str("kind", string(e.ActorKind))
	num("actor_id", e.ActorID)
	num("inst", e.Institution)
	str("role", string(e.Role))
	b = appendJSONString(append(b, `,"action":`...), string(e.Action))
	str("outcome", e.Outcome)
	str("purpose", e.Purpose)
	str("source", e.Source)
	num("data_inst", e.DataInstitution)
	str("issuer", e.Patient.Issuer)
	str("patient", e.Patient.ID)
	str("study", e.Study)
	str("detail", e.Detail)
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control characters escaped, invalid UTF-8
// replaced by U+FFFD (as encoding/json does), everything else as it is.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			i++
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, "\\ufffd"...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
		}
	}
	return append(b, '"')
}

func (j journalEvent) event() *renkei.AuditEvent {
	return &renkei.AuditEvent{Time: time.UnixMilli(j.At), Actor: j.Actor, ActorKind: renkei.PrincipalKind(j.Kind), ActorID: j.ActorID,
		Institution: j.Inst, Role: renkei.Role(j.Role), Action: renkei.AuditAction(j.Action), Outcome: j.Outcome, Purpose: j.Purpose,
		Source: j.Source, DataInstitution: j.DataInst, Patient: renkei.PatientKey{Issuer: j.Issuer, ID: j.Patient}, Study: j.Study, Detail: j.Detail}
}

func (j *auditJournal) name(n int64) string { return fmt.Sprintf("%s.%016d", j.base, n) }

// cur is the file being written to.
func (j *auditJournal) cur() *journalFile { return j.files[len(j.files)-1] }

// pending counts the events not yet in the chain.
func (j *auditJournal) pending() int {
	n := 0
	for _, f := range j.files {
		n += len(f.events)
	}
	return n
}

// openJournal takes the journal of the index at path, appends to the chain what its files hold that the chain does
// not (a crash's leftovers), and starts a new file. It returns nil, nil when another process owns the journal.
func (db *DB) openJournal(ctx context.Context, path string) (_ *auditJournal, err error) {
	lock, err := os.OpenFile(path+JournalLockSuffix, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit journal: %w", err)
	}
	defer func() {
		if err != nil {
			lock.Close()
			err = fmt.Errorf("audit journal of %s: %w", path, err)
		}
	}()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			lock.Close()
			return nil, nil // another process (the running server) owns it
		}
		return nil, fmt.Errorf("lock: %w", err)
	}
	// The files carry the index's journal name (made at its first open), so that files left beside a folder's
	// earlier index.db (deleted and made anew) are never taken for this one's.
	var id string
	var mark journalMark
	if err := db.write.QueryRowContext(ctx, `SELECT id, file, drained FROM audit_journal`).Scan(&id, &mark.file, &mark.count); err != nil {
		return nil, err
	}
	if id == "" {
		var b [8]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
		if _, err := db.write.ExecContext(ctx, `UPDATE audit_journal SET id = ?`, id); err != nil {
			return nil, err
		}
	}
	j := &auditJournal{base: path + journalSuffix + "." + id, lock: lock, drained: make(chan error, 1)}
	last, err := db.replayJournal(ctx, j, mark)
	if err != nil {
		return nil, fmt.Errorf("appending a previous run's events to the audit trail: %w", err)
	}
	j.next, j.covered = last+1, last
	if err := j.startFile(); err != nil {
		return nil, err
	}
	return j, nil
}

// journalFiles lists the numbers of the journal's files, in order. (Not filepath.Glob: the index's folder may have
// a [, * or ? in its name.)
func (j *auditJournal) journalFiles() ([]int64, error) {
	entries, err := os.ReadDir(filepath.Dir(j.base))
	if err != nil {
		return nil, err
	}
	prefix := filepath.Base(j.base) + "."
	var out []int64
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if n, err := strconv.ParseInt(rest, 10, 64); ok && err == nil && n > 0 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// readJournalFile reads a file's events, up to a torn or unreadable line.
func readJournalFile(name string) ([]journalEvent, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var events []journalEvent
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return events, nil // a line without its newline is torn: its write never completed
		}
		if err != nil {
			return nil, err
		}
		var e journalEvent
		if json.Unmarshal(line, &e) != nil || e.Action == "" {
			return events, nil
		}
		events = append(events, e)
	}
}

// replayJournal appends the events of the journal's files that the chain does not hold yet (the chain holds those
// that recorded names), removes the files, and returns the highest file number used so far.
func (db *DB) replayJournal(ctx context.Context, j *auditJournal, recorded journalMark) (int64, error) {
	done, drained := recorded.file, recorded.count
	nums, err := j.journalFiles()
	if err != nil {
		return 0, err
	}
	var evs []*renkei.AuditEvent
	mark := recorded
	for _, n := range nums {
		if n < done {
			continue // appended before the newest file the chain records
		}
		events, err := readJournalFile(j.name(n))
		if err != nil {
			return 0, err
		}
		skip := 0
		if n == done {
			skip = min(drained, len(events))
		}
		for _, e := range events[skip:] {
			evs = append(evs, e.event())
		}
		mark = journalMark{file: n, count: len(events)}
	}
	if len(evs) > 0 {
		tx, err := db.write.BeginTx(ctx, nil)
		if err != nil {
			return 0, err
		}
		defer tx.Rollback()
		if err := db.appendAudit(ctx, tx, evs); err != nil {
			return 0, err
		}
		if err := mark.record(ctx, tx); err != nil {
			return 0, err
		}
		if err := tx.Commit(); err != nil {
			return 0, err
		}
	}
	for _, n := range nums {
		if err := os.Remove(j.name(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
	}
	if len(nums) > 0 {
		return max(done, nums[len(nums)-1]), nil
	}
	return done, nil
}

// record writes the mark in tx.
func (m journalMark) record(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE audit_journal SET file = ?, drained = ?`, m.file, m.count)
	return err
}

// startFile creates the next file and makes it the one written to. Its directory entry is made durable, so that
// what the file will hold is not lost with it in a power loss.
func (j *auditJournal) startFile() error {
	n := j.next
	f, err := os.OpenFile(j.name(n), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if err := fsync.Dir(filepath.Dir(j.base)); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	j.files = append(j.files, &journalFile{n: n, f: f})
	j.next++
	j.lastSync, j.dirty = time.Now(), false
	return nil
}

// drop removes the first n files, whose events are in the chain.
func (j *auditJournal) drop(n int) {
	for _, f := range j.files[:n] {
		f.f.Close()
		os.Remove(f.f.Name()) // a file left by a failed remove is skipped at the next open (audit_journal)
	}
	j.files = slices.Delete(j.files, 0, n)
}

// take returns the events of the first n files and the mark that records them.
func (j *auditJournal) take(n int) ([]*renkei.AuditEvent, journalMark) {
	var evs []*renkei.AuditEvent
	for _, f := range j.files[:n] {
		evs = append(evs, f.events...)
	}
	last := j.files[n-1]
	return evs, journalMark{file: last.n, count: len(last.events)}
}

// appendEvents writes events to the file being written to (one write) and keeps them until they are in the chain.
// They are durable against a crash of the process when it returns, and against a power loss once the file is
// synced (maxReadSyncDelay later at most).
func (j *auditJournal) appendEvents(events []*renkei.AuditEvent) error {
	cur := j.cur()
	buf := make([]byte, 0, 320*len(events))
	for _, e := range events {
		buf = appendJournalLine(buf, e)
	}
	if _, err := cur.f.Write(buf); err != nil {
		// A short write leaves a torn line, which a replay would take for the end: the file is cut back to its
		// last whole line (not to the descriptor's offset, which stays where the short write ended) so that the
		// next write follows that. If even that fails, the file is not written to again: reads take the chain's
		// own path until a transaction of it succeeds and a new file starts.
		if terr := cur.f.Truncate(cur.size); terr != nil {
			j.failing, j.since = terr, time.Now()
		}
		return err
	}
	cur.size += int64(len(buf))
	if len(cur.events) == 0 {
		j.since = time.Now()
	}
	cur.events = append(cur.events, events...)
	j.dirty = true
	if time.Since(j.lastSync) >= maxReadSyncDelay {
		// If the sync fails the events are written but may not survive a power loss: the reads are refused
		// (recording an access that was then refused is the safe side).
		return j.sync()
	}
	return nil
}

// sync makes the file being written to durable.
func (j *auditJournal) sync() error {
	if err := j.cur().f.Sync(); err != nil {
		return err
	}
	j.lastSync, j.dirty = time.Now(), false
	return nil
}

// syncJournal makes the file being written to durable, maxReadSyncDelay after a write that appendEvents did not
// sync (no later write came to). If it cannot, the reads answered since the last sync may not survive a power loss:
// the chain's own path takes the waiting events (with the next read, or the retry journalDrainEvery later).
func (db *DB) syncJournal() {
	j := db.journal
	j.dirty = false
	if len(j.files) == 0 {
		return // the files were dropped, their events in the chain, and no new one could start
	}
	if err := j.sync(); err != nil {
		j.failing, j.since = err, time.Now()
	}
}

// journalReads writes the events of a batch of reads to the journal and answers the batch, unless the chain's own
// path must take it (its last transaction failed, or too many events wait); it reports whether it did.
func (db *DB) journalReads(batch []*insertReq) bool {
	j := db.journal
	n := 0
	for _, r := range batch {
		n += len(r.events)
	}
	if j.failing != nil || j.pending()+n > journalMaxPending {
		return false
	}
	now := db.Now()
	events := make([]*renkei.AuditEvent, 0, n)
	for _, r := range batch {
		for _, e := range r.events {
			c := *e // the caller's event stays the caller's
			if c.Time.IsZero() {
				c.Time = now
			}
			if c.Outcome == "" {
				c.Outcome = renkei.OutcomeSuccess
			}
			events = append(events, &c)
		}
	}
	err := j.appendEvents(events)
	for _, r := range batch {
		if err != nil {
			r.res <- insertRes{err: &renkei.Error{Op: "index.Audit", Kind: renkei.Unavailable, Message: "the audit trail could not be written",
				Japanese: "監査記録に書き込めませんでした。しばらくしてからもう一度お試しください。", Err: err}}
		} else {
			r.res <- insertRes{}
		}
	}
	if len(j.cur().events) >= journalDrainAt {
		db.startDrain()
	}
	return true
}

// startDrain closes the file being written to, starts the next, and appends the closed files' events to the chain
// in a transaction beside the committer, which goes on with the new file. At most one drain runs.
func (db *DB) startDrain() {
	j := db.journal
	if j.draining > 0 || j.failing != nil || len(j.cur().events) == 0 {
		return
	}
	if err := j.startFile(); err != nil {
		j.failing, j.since = err, time.Now()
		return
	}
	n := len(j.files) - 1
	files := slices.Clone(j.files[:n])
	events, mark := j.take(n)
	j.draining = n
	go func() {
		for _, f := range files {
			f.f.Sync() // if the transaction fails, the events wait in these files, durable
		}
		_, err := db.chainCommit(context.Background(), []*insertReq{{events: events, res: make(chan insertRes, 1)}}, false, &mark)
		if err == nil && journalAfterDrain != nil {
			journalAfterDrain()
		}
		j.drained <- err
	}()
}

// afterDrain takes a drain's outcome: its files go, or the chain is failing and their events wait.
func (db *DB) afterDrain(err error) {
	j := db.journal
	n := j.draining
	j.draining = 0
	if err != nil {
		j.failing, j.since = err, time.Now()
		j.answer(err)
		return
	}
	j.covered = j.files[n-1].n
	j.drop(n)
	j.answer(nil)
	if len(j.waiters) > 0 {
		db.startDrain() // they wait for events written during this drain too
	}
}

// flushLater answers FlushAudit's requests once the events acknowledged so far are in the chain: at once if they
// are, else after a drain beside the committer, which meanwhile goes on answering reads (the monitor asks every
// second; a drain on the committer itself would hold every read up for its length).
func (db *DB) flushLater(batch []*insertReq) {
	j := db.journal
	need := int64(0) // the newest file holding events
	for i := len(j.files) - 1; i >= 0; i-- {
		if len(j.files[i].events) > 0 {
			need = j.files[i].n
			break
		}
	}
	for _, r := range batch {
		if need <= j.covered {
			r.res <- insertRes{}
		} else {
			j.waiters = append(j.waiters, journalWaiter{r.res, need})
		}
	}
	if len(j.waiters) > 0 {
		db.startDrain() // if one runs already, afterDrain starts the next
	}
}

// answer answers the waiters whose events are in the chain, or all of them with err.
func (j *auditJournal) answer(err error) {
	keep := j.waiters[:0]
	for _, w := range j.waiters {
		switch {
		case err != nil:
			w.res <- insertRes{err: &renkei.Error{Op: "index.Audit", Kind: renkei.Unavailable, Message: "the audit trail could not be written",
				Japanese: "監査記録に書き込めませんでした。しばらくしてからもう一度お試しください。", Err: err}}
		case w.need <= j.covered:
			w.res <- insertRes{}
		default:
			keep = append(keep, w)
		}
	}
	j.waiters = keep
}

// waitDrain returns once no drain runs.
func (db *DB) waitDrain() {
	// A loop: afterDrain starts the next drain if FlushAudit's callers still wait.
	for j := db.journal; j != nil && j.draining > 0; {
		db.afterDrain(<-j.drained)
	}
}

// timer returns how long until the waiting events are due for the chain (false if none wait, or a drain runs).
func (j *auditJournal) timer() (time.Duration, bool) {
	if j.draining > 0 || j.pending() == 0 {
		return 0, false
	}
	return journalDrainEvery - time.Since(j.since), true
}

// drainDue appends the waiting events to the chain: by a drain beside the committer, or, while the chain is failing,
// by a transaction of the committer's own (a retry every journalDrainEvery: since is the last failure's time).
func (db *DB) drainDue() {
	if db.journal.failing != nil {
		db.commitBatch([]*insertReq{{flush: true, res: make(chan insertRes, 1)}})
		return
	}
	db.startDrain()
}

// closeJournal appends what waits to the chain (what it cannot stays in the files for the next start) and lets the
// journal go. The committer calls it as it stops.
func (db *DB) closeJournal() {
	j := db.journal
	if j == nil {
		return
	}
	db.waitDrain()
	if j.pending() > 0 {
		db.commitBatch([]*insertReq{{flush: true, res: make(chan insertRes, 1)}})
	}
	for _, f := range j.files {
		f.f.Close()
		if len(f.events) == 0 {
			os.Remove(f.f.Name())
		}
	}
	j.lock.Close() // releases the lock
}

// FlushAudit returns once every event already acknowledged is in the chain (audit_events), so that what reads the
// chain sees every access up to now (the index's own readers of the chain call it; benchmarks call it to charge
// the events' drain to the requests that wrote them). Without a journal it is a no-op.
func (db *DB) FlushAudit(ctx context.Context) error {
	if db.journal == nil {
		return nil
	}
	req := &insertReq{flush: true, res: make(chan insertRes, 1)}
	if err := db.submit(ctx, req); err != nil {
		return err
	}
	return (<-req.res).err
}
