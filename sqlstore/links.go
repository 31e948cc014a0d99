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

// Share links (issue 7): a URL and a PIN that show one patient's studies to someone outside renkei. See
// migrations/0012_share_links.sql for what is kept and why.

// CreateShareLink records a link to one of l.Institution's patients (all studies when l.Studies is empty, or the
// listed ones), by the hashes of its token and PIN; it sets l.ID, l.PatientPK, l.AllStudies and l.CreatedAt. A link
// discloses outside the region, so the patient's consent to disclose in the region is required: without it the
// answer is renkei.Forbidden. A patient or study the institution does not hold is renkei.NotFound. The audit event
// commits with the link, its Detail prefixed with the link's ID.
func (db *DB) CreateShareLink(ctx context.Context, l *renkei.ShareLink, audit *renkei.AuditEvent) error {
	const op = "index.CreateShareLink"
	l.CreatedAt = db.Now()
	return db.writeTx(ctx, op, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT pk FROM patients WHERE institution_pk = ? AND issuer = ? AND patient_id = ?`,
			l.Institution, l.Patient.Issuer, l.Patient.ID).Scan(&l.PatientPK)
		if errors.Is(err, sql.ErrNoRows) {
			return renkei.Errorj(op, renkei.NotFound, "患者ID %s(発行者 %s)の患者は、貴施設に登録されていません。",
				"your institution holds no patient %s (issuer %s)", l.Patient.ID, l.Patient.Issuer)
		}
		if err != nil {
			return err
		}
		// As for shares: the patient's lock orders this link with a withdrawal of the consent (see createShare).
		if err := db.lockGrants(ctx, tx, l.PatientPK, true); err != nil {
			return err
		}
		if err := consentFor(ctx, tx, l.Institution, l.PatientPK, 0, 0); err != nil {
			if renkei.ErrorKind(err) == renkei.Forbidden {
				return &renkei.Error{Op: op, Kind: renkei.Forbidden, Err: err, Code: "consent-required", Message: "the patient has not consented to your institution " +
					"disclosing their data (consent for the region is needed): a share link shows the images to someone outside renkei, " +
					"so record the patient's consent (同意) first",
					Japanese: "患者の情報提供への同意(地域全体への同意)が記録されていません。共有リンクは renkei の外の方に画像を見せるものですので、" +
						"先に患者の同意を記録してください。"}
			}
			return err
		}
		var studyPKs []int64
		for _, uid := range l.Studies {
			var pk int64
			err := tx.QueryRowContext(ctx, `SELECT pk FROM studies WHERE institution_pk = ? AND patient_pk = ? AND study_uid = ? AND deleted_at IS NULL`,
				l.Institution, l.PatientPK, uid).Scan(&pk)
			if errors.Is(err, sql.ErrNoRows) {
				return renkei.Errorj(op, renkei.NotFound, "検査 %s は、貴施設でのこの患者の検査ではありません。",
					"study %s is not one of this patient's studies at your institution", uid)
			}
			if err != nil {
				return err
			}
			studyPKs = append(studyPKs, pk)
		}
		l.AllStudies = len(studyPKs) == 0
		err = tx.QueryRowContext(ctx, `INSERT INTO share_links (token_hash, pin_hash, institution_pk, patient_pk, all_studies, note, created_by,
			created_by_name, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk`,
			l.TokenHash, l.PINHash, l.Institution, l.PatientPK, l.AllStudies, l.Note, l.CreatedBy, l.CreatedByName, l.CreatedAt.UnixMilli(),
			l.ExpiresAt.UnixMilli()).Scan(&l.ID)
		if err != nil {
			return err
		}
		for _, pk := range studyPKs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO share_link_studies (link_pk, study_pk) VALUES (?, ?) ON CONFLICT DO NOTHING`, l.ID, pk); err != nil {
				return err
			}
		}
		if audit != nil {
			audit.Detail = strings.TrimSpace(fmt.Sprintf("share link %d: %s", l.ID, audit.Detail))
		}
		return nil
	}, audit)
}

const shareLinkCols = `l.pk, l.institution_pk, p.issuer, p.patient_id, l.patient_pk, l.all_studies, l.note, l.created_by, l.created_by_name,
	l.created_at, l.expires_at, l.revoked_at, l.locked_at, l.failed_pins, l.last_view_at, l.token_hash, l.pin_hash,
	coalesce((SELECT group_concat(s.study_uid, '\') FROM share_link_studies ls JOIN studies s ON s.pk = ls.study_pk WHERE ls.link_pk = l.pk), '')`

func scanShareLink(row interface{ Scan(...any) error }) (renkei.ShareLink, error) {
	var l renkei.ShareLink
	var created, expires int64
	var studies string
	err := row.Scan(&l.ID, &l.Institution, &l.Patient.Issuer, &l.Patient.ID, &l.PatientPK, &l.AllStudies, &l.Note, &l.CreatedBy, &l.CreatedByName,
		&created, &expires, msTimeScanner{&l.RevokedAt}, msTimeScanner{&l.LockedAt}, &l.FailedPINs, msTimeScanner{&l.LastViewAt},
		&l.TokenHash, &l.PINHash, &studies)
	l.CreatedAt, l.ExpiresAt = time.UnixMilli(created), time.UnixMilli(expires)
	if studies != "" {
		l.Studies = strings.Split(studies, `\`)
	}
	return l, err
}

// ShareLinkByToken returns the link whose token hashes to tokenHash, whatever its state (the caller decides); an
// unknown one is renkei.NotFound.
func (db *DB) ShareLinkByToken(ctx context.Context, tokenHash string) (renkei.ShareLink, error) {
	l, err := scanShareLink(db.queryRowContext(ctx, `SELECT `+shareLinkCols+` FROM share_links l JOIN patients p ON p.pk = l.patient_pk
		WHERE l.token_hash = ?`, tokenHash))
	if errors.Is(err, sql.ErrNoRows) {
		return l, renkei.Errorj("index.ShareLink", renkei.NotFound, "該当する共有リンクはありません。", "there is no such link")
	}
	return l, queryErr(err)
}

// ShareLinks lists an institution's links, newest first; id, when not 0, selects one.
func (db *DB) ShareLinks(ctx context.Context, institution, id int64) ([]renkei.ShareLink, error) {
	rows, err := db.queryContext(ctx, `SELECT `+shareLinkCols+` FROM share_links l JOIN patients p ON p.pk = l.patient_pk
		WHERE l.institution_pk = ? AND (? = 0 OR l.pk = ?) ORDER BY l.pk DESC LIMIT 1000`, institution, id, id)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.ShareLink
	for rows.Next() {
		l, err := scanShareLink(rows)
		if err != nil {
			return nil, queryErr(err)
		}
		out = append(out, l)
	}
	return out, queryErr(rows.Err())
}

// RevokeShareLink ends one of an institution's links at once, and every view opened with it.
func (db *DB) RevokeShareLink(ctx context.Context, id, institution int64, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.RevokeShareLink", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE share_links SET revoked_at = coalesce(revoked_at, ?) WHERE pk = ? AND institution_pk = ?`,
			db.Now().UnixMilli(), id, institution)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorj("index.RevokeShareLink", renkei.NotFound, "共有リンク No. %d は見つかりません。", "there is no share link %d", id)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM share_link_views WHERE link_pk = ?`, id)
		return err
	}, audit)
}

// errLinkLocked is the answer to every PIN attempt once a link is locked, the right PIN included.
var errLinkLocked = renkei.Errorj("index.ShareLinkPIN", renkei.Forbidden, "PIN の誤りが続いたため、この共有リンクはロックされています。",
	"this link is locked after too many wrong PINs")

// BeginPINAttempt counts a PIN attempt against a link before the PIN is checked, so that attempts made at the same
// moment from many addresses cannot together try more than limit PINs: it answers how many wrong PINs the link has
// now counting this one, or renkei.Forbidden when the link is locked or has no attempt left. PINRight gives the
// attempt back; PINWrong keeps it.
func (db *DB) BeginPINAttempt(ctx context.Context, id int64, limit int) (int, error) {
	var n int
	err := db.writeTx(ctx, "index.BeginPINAttempt", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE share_links SET failed_pins = failed_pins + 1
			WHERE pk = ? AND locked_at IS NULL AND revoked_at IS NULL AND failed_pins < ? RETURNING failed_pins`, id, limit).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return errLinkLocked
		}
		return err
	})
	return n, err
}

// PINWrong records a wrong PIN (already counted by BeginPINAttempt) with its audit event; when the link has reached
// limit wrong PINs it locks it, appends lockEvent too, and reports locked (to the one attempt that locked it only).
func (db *DB) PINWrong(ctx context.Context, id int64, limit int, audit, lockEvent *renkei.AuditEvent) (locked bool, err error) {
	// writeTx reads its events after fn has run, from this very slice: an attempt that locks nothing drops the lock
	// event by setting it to nil.
	events := []*renkei.AuditEvent{audit, lockEvent}
	err = db.writeTx(ctx, "index.PINWrong", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE share_links SET locked_at = ? WHERE pk = ? AND locked_at IS NULL AND failed_pins >= ?`,
			db.Now().UnixMilli(), id, limit)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if locked = n > 0; !locked {
			events[1] = nil
			return nil
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM share_link_views WHERE link_pk = ?`, id)
		return err
	}, events...)
	return locked, err
}

// PINRight opens a view of a link after a right PIN: the attempt is given back (the count of wrong PINs starts
// again), the view's credential is stored by its hash until expires, and the audit event commits with it. A link
// locked, revoked or expired meanwhile is renkei.Forbidden.
func (db *DB) PINRight(ctx context.Context, id int64, viewHash, source string, expires time.Time, audit *renkei.AuditEvent) error {
	now := db.Now().UnixMilli()
	return db.writeTx(ctx, "index.PINRight", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE share_links SET failed_pins = 0, last_view_at = ?
			WHERE pk = ? AND locked_at IS NULL AND revoked_at IS NULL AND expires_at > ?`, now, id, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errLinkLocked
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM share_link_views WHERE expires_at <= ?`, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO share_link_views (view_hash, link_pk, source, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			viewHash, id, source, now, expires.UnixMilli())
		return err
	}, audit)
}

// ShareLinkView reports whether viewHash is a view of link id open at now.
func (db *DB) ShareLinkView(ctx context.Context, id int64, viewHash string, now time.Time) (bool, error) {
	var n int
	err := db.queryRowContext(ctx, `SELECT count(*) FROM share_link_views WHERE view_hash = ? AND link_pk = ? AND expires_at > ?`,
		viewHash, id, now.UnixMilli()).Scan(&n)
	return n > 0, queryErr(err)
}

// ShareLinkViewed records views through a link: their audit events, and the link's last view, in one transaction
// that commits before the data goes out.
func (db *DB) ShareLinkViewed(ctx context.Context, id int64, events ...*renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.ShareLinkViewed", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE share_links SET last_view_at = ? WHERE pk = ?`, db.Now().UnixMilli(), id)
		return err
	}, events...)
}
