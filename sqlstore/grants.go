package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"regexp"
	"strings"

	"renkei"
)

// study_grants (migration 0022) holds, for each grantee (an institution, or one user) and study, the latest expiry of
// the shares in force that grant it. It is derived from shares and share_studies and kept in step here, in the
// transaction that changes them: refreshGrants when a share of a patient is created or revoked, grantNewStudy when
// a shared patient gets a new study, and Purge when a study leaves the index; on PostgreSQL each of these writers
// first takes the patient's lock (lockGrants), so that transactions running at once do not each miss the other's
// write. A share's expiry needs no write: the list compares expires_at with the time of the query. recountStudy
// copies a study's deleted_at into its grants when it moves into or out of the trash. The scope's subqueries on
// shares stay the rule for every other query; the grants only serve the study list's walk by date (browseStudies),
// and TestBrowseStudies, TestGrantsRandom and TestGrantsRace check that both give the same answer.

// grantCols are study_grants' columns in the order grantRows selects them.
const grantCols = `(to_institution, to_user, study_pk, study_date, study_time, patient_pk, institution_pk, expires_at, deleted_at)`

// grantRows selects what the shares in force at a time grant (grantCols); shareCond narrows the shares (" AND
// patient_pk = ?" for one patient's, "" for all). Arguments: now and shareCond's, twice.
func grantRows(shareCond string) string {
	return `SELECT k.to_institution, k.to_user, s.pk, s.study_date, s.study_time, s.patient_pk, s.institution_pk, max(k.expires_at), s.deleted_at
	FROM (SELECT pk, patient_pk, all_studies, to_institution, 0 AS to_user, expires_at FROM shares
		WHERE revoked_at IS NULL AND expires_at > ? AND to_institution <> 0` + shareCond + `
		UNION ALL
		SELECT pk, patient_pk, all_studies, 0, to_user, expires_at FROM shares
		WHERE revoked_at IS NULL AND expires_at > ? AND to_user <> 0` + shareCond + `) k
	JOIN studies s ON s.patient_pk = k.patient_pk
	WHERE k.all_studies = 1 OR EXISTS (SELECT 1 FROM share_studies ss WHERE ss.share_pk = k.pk AND ss.study_pk = s.pk)
	GROUP BY k.to_institution, k.to_user, s.pk, s.study_date, s.study_time, s.patient_pk, s.institution_pk, s.deleted_at`
}

// patientGrantRows and allGrantRows are grantRows for one patient (arguments: now, patient, now, patient) and for
// every patient (arguments: now, now).
var patientGrantRows, allGrantRows = grantRows(" AND patient_pk = ?"), grantRows("")

// grantsLock is the first of the two keys of the PostgreSQL advisory locks that order the writes of one patient's
// grants (locks of two keys are apart from the one-key locks of the audit chain and of the migrations).
const grantsLock = 0x72656e6b // "renk"

// lockGrants orders, on PostgreSQL, the transactions that write one patient's grants until they end. Under READ
// COMMITTED the transaction of a share and that of a new study of its patient, or of a study moving into or out of
// the trash, each read what the other has not committed: without an order the grants missed the new study, or kept
// a trashed study live, while the share lasted (TestStudyGrantsConcurrentWrites). A share's rebuild takes the lock
// alone (exclusive), a study's write shares it with other studies' writes (a batch of new studies waits for no
// other); each reads after the lock what the other committed. Link and WithdrawConsent take it too (exclusive), so
// that a link is not made on a consent withdrawn meanwhile. Every grants lock is taken before the audit chain's,
// which comes last in a transaction. SQLite has one writer: nothing to order.
func (db *DB) lockGrants(ctx context.Context, tx *sql.Tx, patientPK int64, exclusive bool) error {
	if db.dialect != postgres {
		return nil
	}
	f := "pg_advisory_xact_lock_shared"
	if exclusive {
		f = "pg_advisory_xact_lock"
	}
	// The second key is an int4: a patient key past 2^31 shares its lock with another patient's, which orders more
	// than it needs to, and nothing less.
	_, err := tx.ExecContext(ctx, `SELECT `+f+`(?, ?)`, int32(grantsLock), int32(patientPK&math.MaxInt32))
	return err
}

// refreshGrants rebuilds the grants of one patient's studies from the patient's shares in force at now (Unix ms).
func (db *DB) refreshGrants(ctx context.Context, tx *sql.Tx, patientPK, now int64) error {
	if err := db.lockGrants(ctx, tx, patientPK, true); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM study_grants WHERE patient_pk = ?`, patientPK); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO study_grants `+grantCols+` `+patientGrantRows, now, patientPK, now, patientPK)
	return err
}

// refreshShareGrants is refreshGrants for the patient of a share (after it was revoked).
func (db *DB) refreshShareGrants(ctx context.Context, tx *sql.Tx, sharePK, now int64) error {
	var patientPK int64
	if err := tx.QueryRowContext(ctx, `SELECT patient_pk FROM shares WHERE pk = ?`, sharePK).Scan(&patientPK); err != nil {
		return err
	}
	return db.refreshGrants(ctx, tx, patientPK, now)
}

// grantNewStudyQ grants a new study to the grantees of its patient's whole-patient shares in force. Arguments: study,
// date, time, owner, patient, now, and the same six again (cast: PostgreSQL takes an untyped parameter in a select
// list for text).
const grantNewStudyQ = `INSERT INTO study_grants (to_institution, to_user, study_pk, study_date, study_time, institution_pk, patient_pk, expires_at)
	SELECT to_institution, 0, CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), patient_pk, max(expires_at) FROM shares
	WHERE patient_pk = ? AND all_studies = 1 AND revoked_at IS NULL AND expires_at > ? AND to_institution <> 0 GROUP BY to_institution, patient_pk
	UNION ALL
	SELECT 0, to_user, CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), patient_pk, max(expires_at) FROM shares
	WHERE patient_pk = ? AND all_studies = 1 AND revoked_at IS NULL AND expires_at > ? AND to_user <> 0 GROUP BY to_user, patient_pk`

// grantNewStudy adds the grants of a study just created (one statement; it inserts nothing for an unshared patient).
func (db *DB) grantNewStudy(ctx context.Context, tx *sql.Tx, in *renkei.Instance, studyPK, patientPK, now int64) error {
	if err := db.lockGrants(ctx, tx, patientPK, false); err != nil {
		return err
	}
	_, err := db.txExec(ctx, tx, grantNewStudyQ, studyPK, in.StudyDate, in.StudyTime, in.Institution, patientPK, now,
		studyPK, in.StudyDate, in.StudyTime, in.Institution, patientPK, now)
	return err
}

// browsable reports whether a study query is a browse that browseStudies answers: newest (or oldest) first, live
// studies, not narrowed to a few candidates (those are answered faster by looking up each candidate's grants), and a
// scope made of institutions and a grantee only (a staff member's or a token's), or no scope at all.
func browsable(q *renkei.Query) bool {
	if q.Deleted || selective(q) || q.Owner != 0 {
		return false
	}
	if q.Sort != "" && q.Sort != "date" && q.Sort != "date-asc" {
		return false
	}
	sc := q.Scope
	if sc == nil {
		return true
	}
	return !sc.OwnOnly && len(sc.Patients) == 0 && len(sc.Studies) == 0 && len(sc.Institutions) > 0 && sc.Grantee != nil
}

// patientCols finds a reference to the patients table (alias p) in a condition.
var patientCols = regexp.MustCompile(`\bp\.`)

// browseStudies answers a browsable query in two steps: the page's study keys first, from indexes alone where it
// can (the live studies by date; the caller's institution's own by date and the grants to the caller by date,
// merged), then the page's rows by key. Reading only the page's rows matters as much as the merge: a page deep in
// the list otherwise carries every skipped study's DICOM JSON header through the sort. w and args are where(q)'s.
func (db *DB) browseStudies(ctx context.Context, q *renkei.Query, w string, args []any) ([]renkei.StudyRecord, error) {
	joinP := ""
	if patientCols.MatchString(w) {
		joinP = ` JOIN patients p ON p.pk = s.patient_pk`
	}
	dir := " DESC"
	if q.Sort == "date-asc" {
		dir = ""
	}
	var keys string
	var kargs []any
	if sc := q.Scope; sc == nil {
		keys = `SELECT s.pk FROM studies s` + joinP + ` WHERE s.deleted_at IS NULL` + w +
			` ORDER BY s.study_date` + dir + `, s.study_time` + dir + `, s.pk` + dir + limitOffset(q)
		kargs = args
	} else {
		// The caller's own studies, and those granted to its institution and to it, each in date order: the database
		// merges the ordered walks and stops at the page's end. Each study comes from one walk only (UNION ALL, which
		// PostgreSQL merges where it would sort a UNION whole): a grant of one of the caller's own studies is left to
		// the first walk, and a user's grant of a study granted to their institution too to the second.
		own := placeholders(len(sc.Institutions))
		branches := []string{`SELECT s.study_date AS d, s.study_time AS t, s.pk AS pk FROM studies s` + joinP +
			` WHERE s.deleted_at IS NULL AND s.institution_pk IN (` + own + `)` + w}
		kargs = appendKeys(kargs, sc.Institutions)
		kargs = append(kargs, args...)
		joinS := ""
		if w != "" {
			joinS = ` JOIN studies s ON s.pk = g.study_pk` + joinP // the conditions are on the study's (and patient's) rows
		}
		at := sc.Grantee.At.UnixMilli()
		granted := func(inst, user int64, extra string, extraArgs ...any) {
			branches = append(branches, `SELECT g.study_date, g.study_time, g.study_pk FROM study_grants g`+joinS+
				` WHERE g.to_institution = ? AND g.to_user = ? AND g.expires_at > ? AND g.deleted_at IS NULL AND g.institution_pk NOT IN (`+own+`)`+extra+w)
			kargs = append(kargs, inst, user, at)
			kargs = appendKeys(kargs, sc.Institutions)
			kargs = append(kargs, extraArgs...)
			kargs = append(kargs, args...)
		}
		granted(sc.Grantee.Institution, 0, "")
		if sc.Grantee.User != 0 {
			granted(0, sc.Grantee.User, ` AND NOT EXISTS (SELECT 1 FROM study_grants gi WHERE gi.to_institution = ? AND gi.to_user = 0
				AND gi.study_pk = g.study_pk AND gi.expires_at > ? AND gi.deleted_at IS NULL)`, sc.Grantee.Institution, at)
		}
		if db.dialect == postgres {
			// PostgreSQL plans each member of a UNION ALL on its own and would read every study of the caller's
			// institution and sort them: each walk is ordered and cut at the page's end in its own member, and the
			// few rows left are sorted.
			order := ` ORDER BY 1` + dir + `, 2` + dir + `, 3` + dir
			cut := ""
			if q.Limit > 0 {
				// The page's end; an offset a client sends may be any int, and the sum must not wrap around to a
				// negative LIMIT, which PostgreSQL refuses (the list past the end is empty).
				end := q.Limit + q.Offset
				if q.Offset > math.MaxInt-q.Limit {
					end = math.MaxInt
				}
				cut = fmt.Sprintf(" LIMIT %d", end)
			}
			for i := range branches {
				branches[i] = "(" + branches[i] + order + cut + ")"
			}
			keys = `SELECT u.pk FROM (` + strings.Join(branches, " UNION ALL ") + `) u ORDER BY u.d` + dir + `, u.t` + dir + `, u.pk` + dir + limitOffset(q)
		} else {
			all := strings.Join(branches, " UNION ALL ")
			// SQLite merges them for a compound SELECT ordered by its columns (MERGE (UNION ALL)).
			keys = `SELECT x.pk FROM (` + all + ` ORDER BY 1` + dir + `, 2` + dir + `, 3` + dir + limitOffset(q) + `) x`
		}
	}
	query := `SELECT ` + studyCols + ` FROM studies s JOIN patients p ON p.pk = s.patient_pk WHERE s.pk IN (` + keys + `)` + studyOrders[q.Sort]
	return db.studyRows(ctx, query, kargs)
}

// CheckGrants compares study_grants with the shares in force now and returns how many rows differ (missing or not
// owed; rows of shares that expired since are not counted, the list ignores them). With rebuild, it rebuilds the
// table from the shares in one transaction first, so that the count it returns is what remained (0). The table is
// derived data kept in step by every write (see the top of this file); this is the operator's check that it is,
// and the repair should a defect ever leave it out of step: `renkei admin verify [--rebuild-grants]`.
func (db *DB) CheckGrants(ctx context.Context, rebuild bool) (int, error) {
	now := db.Now().UnixMilli()
	if rebuild {
		err := db.writeTx(ctx, "index.CheckGrants", func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `DELETE FROM study_grants`); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO study_grants `+grantCols+` `+allGrantRows, now, now)
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	have := `SELECT ` + strings.Trim(grantCols, "()") + ` FROM study_grants WHERE expires_at > ?`
	var n int
	err := db.read.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM (`+have+` EXCEPT `+allGrantRows+`) a) + (SELECT count(*) FROM (`+allGrantRows+` EXCEPT `+have+`) b)`,
		now, now, now, now, now, now).Scan(&n)
	if err != nil {
		return 0, queryErr(err)
	}
	return n, nil
}
