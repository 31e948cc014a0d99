package sqlstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"renkei"
)

// AuditKey signs checkpoints of the audit chain. ID names the key in each checkpoint so that keys can be rotated.
type AuditKey struct {
	ID      string
	Private ed25519.PrivateKey
}

// auditCheckpointEvery is how many events pass between signed checkpoints (a quiet chain is also checkpointed by
// CheckpointAudit, which serve calls every minute).
const auditCheckpointEvery = 1000

// Audit appends events to the audit chain and returns once they are committed: concurrent calls share one
// transaction. An error means the events are not recorded and the access they describe must be refused.
func (db *DB) Audit(ctx context.Context, events ...*renkei.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	req := &insertReq{events: events, res: make(chan insertRes, 1)}
	if err := db.submit(ctx, req); err != nil {
		return err
	}
	return (<-req.res).err
}

// auditRowsPerInsert bounds the events one INSERT carries on PostgreSQL (18 parameters each, well under its 65,535).
const auditRowsPerInsert = 64

// appendAudit extends the chain with events inside tx. It reads the head inside the transaction, so every writer
// (the committer, trash, grants) extends the one chain, serialised by the database's write lock.
func (db *DB) appendAudit(ctx context.Context, tx *sql.Tx, events []*renkei.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	if db.dialect == postgres {
		// Several nodes append at once: the lock, held until tx ends, makes them take turns, and the head read after
		// it (a new snapshot, in READ COMMITTED) sees the previous holder's events. Without it two transactions
		// would read the same head and fork the chain (the second would then fail on seq, but only after work lost).
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, auditLockKey); err != nil {
			return fmt.Errorf("audit lock: %w", err)
		}
	}
	var seq int64
	var prev []byte
	const headQ = `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`
	head, err := db.txStmt(ctx, tx, headQ)
	if err != nil {
		return fmt.Errorf("audit head: %w", err)
	}
	if err := txQueryRowOn(ctx, tx, head, headQ).Scan(&seq, &prev); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("audit head: %w", err)
	}
	if prev == nil {
		prev = []byte{} // the first event follows the empty hash
	}
	start := seq
	const insQ = `INSERT INTO audit_events (seq, at, actor, actor_kind, actor_id, institution_pk, role, action,
		outcome, purpose, source, data_institution, issuer, patient_id, study_uid, detail, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	ins, err := db.txStmt(ctx, tx, insQ)
	if err != nil {
		return fmt.Errorf("audit append: %w", err)
	}
	now := db.Now()
	for _, e := range events {
		seq++
		e.Seq = seq
		if e.Time.IsZero() {
			e.Time = now
		}
		e.Time = time.UnixMilli(e.Time.UnixMilli())
		if e.Outcome == "" {
			e.Outcome = renkei.OutcomeSuccess
		}
		e.PrevHash = prev
		e.Hash = e.ChainHash(prev)
		prev = e.Hash
	}
	args := func(e *renkei.AuditEvent) []any {
		return []any{e.Seq, e.Time.UnixMilli(), e.Actor, string(e.ActorKind), e.ActorID, e.Institution, string(e.Role),
			string(e.Action), e.Outcome, e.Purpose, e.Source, e.DataInstitution, e.Patient.Issuer, e.Patient.ID, e.Study, e.Detail,
			e.PrevHash, e.Hash}
	}
	if db.dialect == postgres {
		// One statement for up to auditRowsPerInsert events: on PostgreSQL each statement is a round trip, and a
		// batch of stored instances brings one event each.
		for rest := events; len(rest) > 0; {
			n := min(len(rest), auditRowsPerInsert)
			var all []any
			for _, e := range rest[:n] {
				all = append(all, args(e)...)
			}
			if _, err := tx.ExecContext(ctx, insQ+strings.Repeat(`, (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, n-1), all...); err != nil {
				return fmt.Errorf("audit append: %w", err)
			}
			rest = rest[n:]
		}
	} else {
		// SQLite runs statements in process; one prepared statement an event costs less than parsing a long one
		// (a statement of 64 rows measured no faster: BenchmarkAuditAppend).
		for _, e := range events {
			if _, err := txExecOn(ctx, tx, ins, insQ, args(e)...); err != nil {
				return fmt.Errorf("audit append: %w", err)
			}
		}
	}
	if db.AuditKey != nil && seq/auditCheckpointEvery > start/auditCheckpointEvery {
		return db.checkpoint(ctx, tx, seq, prev)
	}
	return nil
}

func checkpointMessage(seq int64, hash []byte) []byte {
	msg := make([]byte, 0, 48)
	msg = append(msg, "renkei-audit"...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(seq))
	return append(msg, hash...)
}

func (db *DB) checkpoint(ctx context.Context, tx *sql.Tx, seq int64, hash []byte) error {
	sig := ed25519.Sign(db.AuditKey.Private, checkpointMessage(seq, hash))
	_, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (seq) DO NOTHING`, seq, hash, db.Now().UnixMilli(), db.AuditKey.ID, sig)
	if err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	return nil
}

// CheckpointAudit signs the chain's head if it is not signed yet, so that removing the newest events of a quiet
// chain is detected too.
func (db *DB) CheckpointAudit(ctx context.Context) error {
	if db.AuditKey == nil {
		return nil
	}
	if err := db.FlushAudit(ctx); err != nil {
		return err
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return queryErr(err)
	}
	defer tx.Rollback()
	var seq int64
	var hash []byte
	err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return queryErr(err)
	}
	if err := db.checkpoint(ctx, tx, seq, hash); err != nil {
		return queryErr(err)
	}
	return queryErr(tx.Commit())
}

// AuditProblem is one inconsistency found by VerifyAudit.
type AuditProblem struct {
	Seq     int64
	Problem string
}

// AuditReport is what VerifyAudit found.
type AuditReport struct {
	Events      int64
	Checkpoints int
	LastSeq     int64
	Problems    []AuditProblem
}

// maxProblems bounds the report: after a tampering every later event's link may be reported.
const maxProblems = 100

// VerifyAudit walks the whole chain and reports every event whose content, link or position is not what the chain
// and its signed checkpoints say: a changed event (its hash no longer matches), a removed one (a gap, or a checkpoint
// beyond the end), an inserted one (a link that does not follow). keys maps key IDs to public keys; a checkpoint
// signed by an unknown key or with a bad signature is a problem too.
func (db *DB) VerifyAudit(ctx context.Context, keys map[string]ed25519.PublicKey) (*AuditReport, error) {
	if err := db.FlushAudit(ctx); err != nil {
		return nil, err
	}
	rep := &AuditReport{}
	add := func(seq int64, format string, args ...any) {
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, AuditProblem{seq, fmt.Sprintf(format, args...)})
		}
	}
	cps := map[int64][]byte{}
	rows, err := db.queryContext(ctx, `SELECT seq, hash, key_id, signature FROM audit_checkpoints ORDER BY seq`)
	if err != nil {
		return nil, queryErr(err)
	}
	for rows.Next() {
		var seq int64
		var hash, sig []byte
		var keyID string
		if err := rows.Scan(&seq, &hash, &keyID, &sig); err != nil {
			rows.Close()
			return nil, queryErr(err)
		}
		rep.Checkpoints++
		pub, ok := keys[keyID]
		switch {
		case !ok:
			add(seq, "checkpoint signed by unknown key %q", keyID)
		case !ed25519.Verify(pub, checkpointMessage(seq, hash), sig):
			add(seq, "checkpoint signature is not valid")
		default:
			cps[seq] = hash
		}
	}
	if err := rows.Close(); err != nil {
		return nil, queryErr(err)
	}

	rows, err = db.queryContext(ctx, `SELECT seq, at, actor, actor_kind, actor_id, institution_pk, role, action, outcome, purpose,
		source, data_institution, issuer, patient_id, study_uid, detail, prev_hash, hash FROM audit_events ORDER BY seq`)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	// Rows are read in order here (links and gaps need the order); their hashes are recomputed by other goroutines
	// meanwhile, a batch at a time, so that reading and hashing use both cores.
	var mu sync.Mutex
	var hashed []AuditProblem
	batches := make(chan []renkei.AuditEvent, 4)
	var wg sync.WaitGroup
	for range max(1, runtime.NumCPU()-1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				for i := range b {
					if !bytes.Equal(b[i].ChainHash(b[i].PrevHash), b[i].Hash) {
						mu.Lock()
						hashed = append(hashed, AuditProblem{b[i].Seq, "was changed after it was written (its hash does not match its content)"})
						mu.Unlock()
					}
				}
			}
		}()
	}
	const batchSize = 2048
	prev := []byte{}
	var want int64 = 1
	batch := make([]renkei.AuditEvent, 0, batchSize)
	var scanErr error
	for rows.Next() {
		batch = append(batch, renkei.AuditEvent{})
		e := &batch[len(batch)-1]
		var at int64
		if err := rows.Scan(auditDest(e, &at)...); err != nil {
			scanErr = err
			break
		}
		e.Time = time.UnixMilli(at)
		rep.Events++
		if e.Seq != want {
			add(want, "events %d to %d are missing", want, e.Seq-1)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			add(e.Seq, "does not follow event %d (inserted, or an earlier event was removed or changed)", e.Seq-1)
		}
		if h, ok := cps[e.Seq]; ok && !bytes.Equal(h, e.Hash) {
			add(e.Seq, "differs from the signed checkpoint")
		}
		prev, want = e.Hash, e.Seq+1
		if len(batch) == batchSize {
			batches <- batch
			batch = make([]renkei.AuditEvent, 0, batchSize)
		}
	}
	batches <- batch
	close(batches)
	wg.Wait()
	if scanErr == nil {
		scanErr = rows.Err()
	}
	if scanErr != nil {
		return nil, queryErr(scanErr)
	}
	for _, p := range hashed {
		add(p.Seq, "%s", p.Problem)
	}
	rep.LastSeq = want - 1
	for seq := range cps {
		if seq > rep.LastSeq {
			add(seq, "events %d to %d were removed (a signed checkpoint names event %d)", rep.LastSeq+1, seq, seq)
		}
	}
	// The earliest problem first: it is where the tampering starts.
	slices.SortStableFunc(rep.Problems, func(a, b AuditProblem) int { return cmp.Compare(a.Seq, b.Seq) })
	return rep, nil
}

func auditDest(e *renkei.AuditEvent, at *int64) []any {
	return []any{&e.Seq, at, &e.Actor, (*string)(&e.ActorKind), &e.ActorID, &e.Institution, (*string)(&e.Role), (*string)(&e.Action),
		&e.Outcome, &e.Purpose, &e.Source, &e.DataInstitution, &e.Patient.Issuer, &e.Patient.ID, &e.Study, &e.Detail, &e.PrevHash, &e.Hash}
}

// AuditEvents returns the events that match f, newest first.
func (db *DB) AuditEvents(ctx context.Context, f renkei.AuditFilter) ([]renkei.AuditEvent, error) {
	if err := db.FlushAudit(ctx); err != nil {
		return nil, err
	}
	q := `SELECT seq, at, actor, actor_kind, actor_id, institution_pk, role, action, outcome, purpose, source, data_institution,
		issuer, patient_id, study_uid, detail, prev_hash, hash FROM audit_events WHERE 1 = 1`
	var args []any
	if f.Patient != nil {
		q += ` AND data_institution = ? AND issuer = ? AND patient_id = ?`
		args = append(args, f.DataInstitution, f.Patient.Issuer, f.Patient.ID)
	}
	if f.Institution != 0 {
		q += ` AND (institution_pk = ? OR data_institution = ?)`
		args = append(args, f.Institution, f.Institution)
	}
	if f.Action != "" {
		q += ` AND action = ?`
		args = append(args, string(f.Action))
	}
	if !f.Since.IsZero() {
		q += ` AND at >= ?`
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		q += ` AND at < ?`
		args = append(args, f.Until.UnixMilli())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	q += fmt.Sprintf(` ORDER BY seq DESC LIMIT %d`, limit)
	rows, err := db.queryContext(ctx, q, args...)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.AuditEvent
	for rows.Next() {
		var e renkei.AuditEvent
		var at int64
		if err := rows.Scan(auditDest(&e, &at)...); err != nil {
			return nil, queryErr(err)
		}
		e.Time = time.UnixMilli(at)
		out = append(out, e)
	}
	return out, queryErr(rows.Err())
}
