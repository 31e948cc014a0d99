package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"renkei"
)

// CreateShare records a share of one of s.FromInstitution's patients (all studies, or the listed ones); it sets s.ID.
// A patient or study the institution does not hold is a renkei.NotFound error. The audit event commits with it.
func (db *DB) CreateShare(ctx context.Context, s *renkei.Share, audit *renkei.AuditEvent) error {
	s.CreatedAt = db.Now()
	return db.writeTx(ctx, "index.CreateShare", func(tx *sql.Tx) error { return db.createShare(ctx, tx, s) }, audit)
}

// createShare is CreateShare inside a transaction (a referral's sending creates its share in its own).
func (db *DB) createShare(ctx context.Context, tx *sql.Tx, s *renkei.Share) error {
	var patientPK int64
	err := tx.QueryRowContext(ctx, `SELECT pk FROM patients WHERE institution_pk = ? AND issuer = ? AND patient_id = ?`,
		s.FromInstitution, s.Patient.Issuer, s.Patient.ID).Scan(&patientPK)
	if errors.Is(err, sql.ErrNoRows) {
		return renkei.Errorj("index.CreateShare", renkei.NotFound, "患者ID %s(発行者 %s)の患者は、貴施設に登録されていません。",
			"your institution holds no patient %s (issuer %s)", s.Patient.ID, s.Patient.Issuer)
	}
	if err != nil {
		return err
	}
	// The patient's lock, which WithdrawConsent takes before it ends the shares in force, orders the two on PostgreSQL:
	// a withdrawal committed between the consent read below and this share's commit would miss the share, and the
	// share would stay in force without a consent (SQLite has one writer at a time).
	if err := db.lockGrants(ctx, tx, patientPK, true); err != nil {
		return err
	}
	if !s.WithoutConsent {
		if err := consentFor(ctx, tx, s.FromInstitution, patientPK, s.ToInstitution, s.ToUser); err != nil {
			return err
		}
	}
	var studyPKs []int64
	for _, uid := range s.Studies {
		var pk int64
		err := tx.QueryRowContext(ctx, `SELECT pk FROM studies WHERE institution_pk = ? AND patient_pk = ? AND study_uid = ? AND deleted_at IS NULL`,
			s.FromInstitution, patientPK, uid).Scan(&pk)
		if errors.Is(err, sql.ErrNoRows) {
			return renkei.Errorj("index.CreateShare", renkei.NotFound, "検査 %s は、貴施設でのこの患者の検査ではありません。",
				"study %s is not one of this patient's studies at your institution", uid)
		}
		if err != nil {
			return err
		}
		studyPKs = append(studyPKs, pk)
	}
	err = tx.QueryRowContext(ctx, `INSERT INTO shares (from_institution, patient_pk, all_studies, to_institution, to_user, purpose, reason,
		created_by, created_by_name, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk`,
		s.FromInstitution, patientPK, len(s.Studies) == 0 && !s.RecordOnly, s.ToInstitution, s.ToUser, string(s.Purpose), s.Reason, s.CreatedBy,
		s.CreatedByName, s.CreatedAt.UnixMilli(), s.ExpiresAt.UnixMilli()).Scan(&s.ID)
	if err != nil {
		return err
	}
	for _, pk := range studyPKs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO share_studies (share_pk, study_pk) VALUES (?, ?) ON CONFLICT DO NOTHING`, s.ID, pk); err != nil {
			return err
		}
	}
	return db.refreshGrants(ctx, tx, patientPK, s.CreatedAt.UnixMilli())
}

// RevokeShare ends a share at once. institution is the sharer's (only it may revoke); 0 allows any (region admin).
func (db *DB) RevokeShare(ctx context.Context, id, institution int64, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.RevokeShare", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE shares SET revoked_at = coalesce(revoked_at, ?) WHERE pk = ? AND (? = 0 OR from_institution = ?)`,
			db.Now().UnixMilli(), id, institution, institution)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorj("index.RevokeShare", renkei.NotFound, "共有 No. %d は見つかりません。", "there is no share %d", id)
		}
		return db.refreshShareGrants(ctx, tx, id, db.Now().UnixMilli())
	}, audit)
}

// Shares lists shares, newest first.
func (db *DB) Shares(ctx context.Context, f renkei.ShareFilter) ([]renkei.Share, error) {
	q := `SELECT sh.pk, sh.from_institution, p.issuer, p.patient_id, sh.to_institution, sh.to_user, sh.purpose, sh.reason, sh.created_by,
		sh.created_by_name, sh.created_at, sh.expires_at, sh.revoked_at, sh.reviewed_at, sh.reviewed_by, sh.review_note,
		coalesce((SELECT group_concat(s.study_uid, '\') FROM share_studies ss JOIN studies s ON s.pk = ss.study_pk WHERE ss.share_pk = sh.pk), '')
		FROM shares sh JOIN patients p ON p.pk = sh.patient_pk WHERE 1 = 1`
	var args []any
	if f.ID != 0 {
		q += ` AND sh.pk = ?`
		args = append(args, f.ID)
	}
	if f.FromInstitution != 0 {
		q += ` AND sh.from_institution = ?`
		args = append(args, f.FromInstitution)
	}
	if f.ToInstitution != 0 || f.ToUser != 0 {
		q += ` AND (sh.to_institution = ? OR (sh.to_user <> 0 AND sh.to_user = ?))`
		args = append(args, f.ToInstitution, f.ToUser)
	}
	if !f.ActiveAt.IsZero() {
		q += ` AND sh.revoked_at IS NULL AND sh.expires_at > ?`
		args = append(args, f.ActiveAt.UnixMilli())
	}
	if f.Purpose != "" {
		q += ` AND sh.purpose = ?`
		args = append(args, string(f.Purpose))
	}
	if f.Unreviewed {
		q += ` AND sh.reviewed_at IS NULL`
	}
	rows, err := db.queryContext(ctx, q+` ORDER BY sh.pk DESC`, args...)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.Share
	for rows.Next() {
		var s renkei.Share
		var created, expires int64
		var studies string
		if err := rows.Scan(&s.ID, &s.FromInstitution, &s.Patient.Issuer, &s.Patient.ID, &s.ToInstitution, &s.ToUser, (*string)(&s.Purpose),
			&s.Reason, &s.CreatedBy, &s.CreatedByName, &created, &expires, msTimeScanner{&s.RevokedAt}, msTimeScanner{&s.ReviewedAt},
			&s.ReviewedBy, &s.ReviewNote, &studies); err != nil {
			return nil, queryErr(err)
		}
		s.CreatedAt, s.ExpiresAt = time.UnixMilli(created), time.UnixMilli(expires)
		if studies != "" {
			s.Studies = strings.Split(studies, `\`)
		}
		out = append(out, s)
	}
	return out, queryErr(rows.Err())
}

// Grants returns what the shares in force at now add to what an institution's user sees: whole patients and single
// studies (index keys), from shares to the institution or to the user, and which patients came by break-glass.
func (db *DB) Grants(ctx context.Context, institution, user int64, now time.Time) (renkei.Grants, error) {
	var g renkei.Grants
	rows, err := db.queryContext(ctx, `SELECT sh.patient_pk, 0, sh.purpose FROM shares sh
		WHERE sh.all_studies = 1 AND sh.revoked_at IS NULL AND sh.expires_at > ? AND (sh.to_institution = ? OR (sh.to_user <> 0 AND sh.to_user = ?))
		UNION SELECT 0, ss.study_pk, sh.purpose FROM shares sh JOIN share_studies ss ON ss.share_pk = sh.pk
		WHERE sh.all_studies = 0 AND sh.revoked_at IS NULL AND sh.expires_at > ? AND (sh.to_institution = ? OR (sh.to_user <> 0 AND sh.to_user = ?))`,
		now.UnixMilli(), institution, user, now.UnixMilli(), institution, user)
	if err != nil {
		return g, queryErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var p, s int64
		var purpose string
		if err := rows.Scan(&p, &s, &purpose); err != nil {
			return g, queryErr(err)
		}
		if p != 0 {
			g.Patients = append(g.Patients, p)
			if purpose == string(renkei.PurposeBreakGlass) {
				g.BreakGlass = append(g.BreakGlass, p)
			}
		}
		if s != 0 {
			g.Studies = append(g.Studies, s)
		}
	}
	return g, queryErr(rows.Err())
}

// ReviewBreakGlass records the owning institution's review of a break-glass grant.
func (db *DB) ReviewBreakGlass(ctx context.Context, id, institution int64, by, note string, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.ReviewBreakGlass", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE shares SET reviewed_at = ?, reviewed_by = ?, review_note = ?
			WHERE pk = ? AND purpose = 'break-glass' AND (? = 0 OR from_institution = ?) AND reviewed_at IS NULL`,
			db.Now().UnixMilli(), by, note, id, institution, institution)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorj("index.ReviewBreakGlass", renkei.NotFound, "未確認の緊急閲覧 No. %d は見つかりません。",
				"there is no unreviewed break-glass access %d", id)
		}
		return nil
	}, audit)
}
