package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"

	"renkei"
)

// writeTx runs fn in a write transaction and appends the audit events in the same transaction: an admin action and
// its record commit together or not at all.
func (db *DB) writeTx(ctx context.Context, op string, fn func(tx *sql.Tx) error, events ...*renkei.AuditEvent) error {
	// The journal's events of reads go into the chain first, so that it keeps the order in which things happened.
	if slices.ContainsFunc(events, func(e *renkei.AuditEvent) bool { return e != nil }) {
		if err := db.FlushAudit(ctx); err != nil {
			return err
		}
	}
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return &renkei.Error{Op: op, Kind: renkei.Unavailable, Message: "the index could not be written",
			Japanese: "データを保存できませんでした。しばらくしてからもう一度お試しください。", Err: err}
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		var re *renkei.Error
		if errors.As(err, &re) {
			return err
		}
		if isUniqueViolation(err) {
			return &renkei.Error{Op: op, Kind: renkei.Conflict, Message: "it already exists", Japanese: "すでに登録されています。", Err: err}
		}
		return &renkei.Error{Op: op, Kind: renkei.Unavailable, Message: "the index could not be written",
			Japanese: "データを保存できませんでした。しばらくしてからもう一度お試しください。", Err: err}
	}
	var evs []*renkei.AuditEvent
	for _, e := range events {
		if e != nil {
			evs = append(evs, e)
		}
	}
	if err := db.appendAudit(ctx, tx, evs); err != nil {
		return &renkei.Error{Op: op, Kind: renkei.Unavailable, Message: "the audit trail could not be written",
			Japanese: "監査記録に書き込めませんでした。しばらくしてからもう一度お試しください。", Err: err}
	}
	if err := tx.Commit(); err != nil {
		return &renkei.Error{Op: op, Kind: renkei.Unavailable, Message: "the index could not be written",
			Japanese: "データを保存できませんでした。しばらくしてからもう一度お試しください。", Err: err}
	}
	return nil
}

func msPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

// PutInstitution adds an institution or updates the one with the same ID; it sets inst.PK. The directory's version
// changes with it: its entries carry the institution's name and care functions, and a new one must be found.
func (db *DB) PutInstitution(ctx context.Context, inst *renkei.Institution, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.PutInstitution", func(tx *sql.Tx) error {
		if err := bumpDirectory(ctx, tx); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO institutions (id, name, name_en, kind, code, care_functions, issuer, email, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_en = excluded.name_en, kind = excluded.kind, code = excluded.code,
				care_functions = excluded.care_functions, issuer = excluded.issuer, email = excluded.email
			RETURNING pk`,
			inst.ID, inst.Name, inst.NameEn, string(inst.Kind), inst.Code, strings.Join(inst.CareFunctions, `\`), inst.Issuer, inst.Email,
			db.Now().UnixMilli()).Scan(&inst.PK)
	}, audit)
}

const institutionCols = `pk, id, name, name_en, kind, code, care_functions, issuer, email`

func scanInstitution(row interface{ Scan(...any) error }) (renkei.Institution, error) {
	var in renkei.Institution
	var cf string
	err := row.Scan(&in.PK, &in.ID, &in.Name, &in.NameEn, (*string)(&in.Kind), &in.Code, &cf, &in.Issuer, &in.Email)
	if cf != "" {
		in.CareFunctions = strings.Split(cf, `\`)
	}
	return in, err
}

// Institution returns the institution with the given ID; an unknown one is a renkei.NotFound error.
func (db *DB) Institution(ctx context.Context, id string) (renkei.Institution, error) {
	in, err := scanInstitution(db.queryRowContext(ctx, `SELECT `+institutionCols+` FROM institutions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return in, renkei.Errorj("index.Institution", renkei.NotFound, "施設 %q は見つかりません。", "there is no institution %q", id)
	}
	return in, queryErr(err)
}

// InstitutionByPK returns the institution with the given index key.
func (db *DB) InstitutionByPK(ctx context.Context, pk int64) (renkei.Institution, error) {
	in, err := scanInstitution(db.queryRowContext(ctx, `SELECT `+institutionCols+` FROM institutions WHERE pk = ?`, pk))
	if errors.Is(err, sql.ErrNoRows) {
		return in, renkei.Errorj("index.Institution", renkei.NotFound, "該当する施設はありません。", "there is no such institution")
	}
	return in, queryErr(err)
}

// Institutions lists every institution by ID.
func (db *DB) Institutions(ctx context.Context) ([]renkei.Institution, error) {
	rows, err := db.queryContext(ctx, `SELECT `+institutionCols+` FROM institutions ORDER BY id`)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.Institution
	for rows.Next() {
		in, err := scanInstitution(rows)
		if err != nil {
			return nil, queryErr(err)
		}
		out = append(out, in)
	}
	return out, queryErr(rows.Err())
}

// CreateUser adds a user with a password hash (a one-time password's, with MustChangePassword); it sets u.PK.
// A login already taken is a renkei.Conflict.
func (db *DB) CreateUser(ctx context.Context, u *renkei.User, passwordHash string, audit *renkei.AuditEvent) error {
	u.CreatedAt = db.Now()
	err := db.writeTx(ctx, "index.CreateUser", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO users (institution_pk, login, name, role, person, patient_pk, password_hash, must_change, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk`,
			u.Institution.PK, u.Login, u.Name, string(u.Role), u.Person, u.PatientPK, passwordHash, u.MustChangePassword, u.CreatedAt.UnixMilli()).Scan(&u.PK)
	}, audit)
	if renkei.ErrorKind(err) == renkei.Conflict {
		return renkei.Errorj("index.CreateUser", renkei.Conflict, "ログイン名 %q はすでに使われています。", "the login %q is already taken", u.Login)
	}
	return err
}

const userCols = `u.pk, u.login, u.name, u.role, u.person, u.patient_pk, u.lang, u.disabled, u.must_change, u.totp_secret <> '', u.created_at,
	u.password_hash, u.totp_secret, u.totp_last_step, u.failed_logins, u.locked_until, ` + `i.pk, i.id, i.name, i.name_en, i.kind, i.code, i.care_functions, i.issuer`

func scanUser(row interface{ Scan(...any) error }) (renkei.User, renkei.Credentials, error) {
	var u renkei.User
	var c renkei.Credentials
	var created, locked int64
	var cf string
	err := row.Scan(&u.PK, &u.Login, &u.Name, (*string)(&u.Role), &u.Person, &u.PatientPK, &u.Lang, &u.Disabled, &u.MustChangePassword, &u.HasTOTP, &created,
		&c.PasswordHash, &c.TOTPSecret, &c.TOTPLastStep, &c.FailedLogins, &locked,
		&u.Institution.PK, &u.Institution.ID, &u.Institution.Name, &u.Institution.NameEn, (*string)(&u.Institution.Kind),
		&u.Institution.Code, &cf, &u.Institution.Issuer)
	u.CreatedAt = time.UnixMilli(created)
	if locked > 0 {
		c.LockedUntil = time.UnixMilli(locked)
	}
	if cf != "" {
		u.Institution.CareFunctions = strings.Split(cf, `\`)
	}
	return u, c, err
}

// UserByLogin returns a user and their credentials; an unknown login is a renkei.NotFound error.
func (db *DB) UserByLogin(ctx context.Context, login string) (renkei.User, renkei.Credentials, error) {
	u, c, err := scanUser(db.queryRowContext(ctx, `SELECT `+userCols+` FROM users u JOIN institutions i ON i.pk = u.institution_pk
		WHERE u.login = ?`, login))
	if errors.Is(err, sql.ErrNoRows) {
		return u, c, renkei.Errorj("index.User", renkei.NotFound, "利用者 %q は見つかりません。", "there is no user %q", login)
	}
	return u, c, queryErr(err)
}

// UserByPK returns a user and their credentials.
func (db *DB) UserByPK(ctx context.Context, pk int64) (renkei.User, renkei.Credentials, error) {
	u, c, err := scanUser(db.queryRowContext(ctx, `SELECT `+userCols+` FROM users u JOIN institutions i ON i.pk = u.institution_pk
		WHERE u.pk = ?`, pk))
	if errors.Is(err, sql.ErrNoRows) {
		return u, c, renkei.Errorj("index.User", renkei.NotFound, "該当する利用者はいません。", "there is no such user")
	}
	return u, c, queryErr(err)
}

// Users lists the users of an institution (0: all), by login.
func (db *DB) Users(ctx context.Context, institution int64) ([]renkei.User, error) {
	rows, err := db.queryContext(ctx, `SELECT `+userCols+` FROM users u JOIN institutions i ON i.pk = u.institution_pk
		WHERE ? = 0 OR u.institution_pk = ? ORDER BY u.login`, institution, institution)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.User
	for rows.Next() {
		u, _, err := scanUser(rows)
		if err != nil {
			return nil, queryErr(err)
		}
		out = append(out, u)
	}
	return out, queryErr(rows.Err())
}

// UpdateUser applies up to a user, with its audit event in the same transaction.
func (db *DB) UpdateUser(ctx context.Context, pk int64, up renkei.UserUpdate, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.UpdateUser", func(tx *sql.Tx) error {
		set := func(col string, v any) error {
			res, err := tx.ExecContext(ctx, `UPDATE users SET `+col+` = ? WHERE pk = ?`, v, pk)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return renkei.Errorj("index.UpdateUser", renkei.NotFound, "該当する利用者はいません。", "there is no such user")
			}
			return nil
		}
		var err error
		if up.PasswordHash != nil && err == nil {
			err = set("password_hash", *up.PasswordHash)
		}
		if up.MustChange != nil && err == nil {
			err = set("must_change", *up.MustChange)
		}
		if up.TOTPSecret != nil && err == nil {
			if err = set("totp_secret", *up.TOTPSecret); err == nil {
				err = set("totp_last_step", 0)
			}
		}
		if up.Disabled != nil && err == nil {
			err = set("disabled", *up.Disabled)
		}
		if up.FailedLogins != nil && err == nil {
			err = set("failed_logins", *up.FailedLogins)
		}
		if up.LockedUntil != nil && err == nil {
			err = set("locked_until", up.LockedUntil.UnixMilli())
		}
		if up.RecoveryCodes != nil && err == nil {
			if _, err = tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_pk = ?`, pk); err == nil {
				for _, h := range up.RecoveryCodes {
					if _, err = tx.ExecContext(ctx, `INSERT INTO recovery_codes (user_pk, hash) VALUES (?, ?)`, pk, h); err != nil {
						break
					}
				}
			}
		}
		if up.RemoveSecurityKeys && err == nil {
			_, err = tx.ExecContext(ctx, `DELETE FROM webauthn_credentials WHERE user_pk = ?`, pk)
		}
		if up.EndSessions && err == nil {
			_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_pk = ?`, pk)
		}
		return err
	}, audit)
}

// UseTOTPStep records that the TOTP code of time step was accepted for the user. It reports false if that step or
// a later one was already used: a code is good once (RFC 6238 5.2).
func (db *DB) UseTOTPStep(ctx context.Context, pk, step int64) (bool, error) {
	res, err := db.write.ExecContext(ctx, `UPDATE users SET totp_last_step = ? WHERE pk = ? AND totp_last_step < ?`, step, pk, step)
	if err != nil {
		return false, queryErr(err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// UseRecoveryCode marks the recovery code with the given hash used; it reports false if the user has no such unused
// code.
func (db *DB) UseRecoveryCode(ctx context.Context, pk int64, hash string) (bool, error) {
	res, err := db.write.ExecContext(ctx, `UPDATE recovery_codes SET used_at = ? WHERE user_pk = ? AND hash = ? AND used_at IS NULL`,
		db.Now().UnixMilli(), pk, hash)
	if err != nil {
		return false, queryErr(err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// RecoveryCodesLeft counts a user's unused recovery codes.
func (db *DB) RecoveryCodesLeft(ctx context.Context, pk int64) (int, error) {
	var n int
	err := db.queryRowContext(ctx, `SELECT count(*) FROM recovery_codes WHERE user_pk = ? AND used_at IS NULL`, pk).Scan(&n)
	return n, queryErr(err)
}

// CreateSession stores a new session.
func (db *DB) CreateSession(ctx context.Context, s *renkei.Session, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.CreateSession", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions (id_hash, user_pk, csrf, created_at, last_seen, second_factor_at, source)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, s.IDHash, s.User, s.CSRF, s.CreatedAt.UnixMilli(), s.LastSeen.UnixMilli(), msPtr(s.SecondFactorAt), s.Source)
		if err != nil {
			return err
		}
		return noteLogin(ctx, tx, s)
	}, audit)
}

// Session returns the session with the given id hash; an unknown one is a renkei.NotFound error.
func (db *DB) Session(ctx context.Context, idHash string) (renkei.Session, error) {
	var s renkei.Session
	var created, seen int64
	var sf sql.NullInt64
	err := db.queryRowContext(ctx, `SELECT id_hash, user_pk, csrf, created_at, last_seen, second_factor_at, source FROM sessions
		WHERE id_hash = ?`, idHash).Scan(&s.IDHash, &s.User, &s.CSRF, &created, &seen, &sf, &s.Source)
	if errors.Is(err, sql.ErrNoRows) {
		return s, renkei.Errorf("index.Session", renkei.NotFound, "no such session")
	}
	if err != nil {
		return s, queryErr(err)
	}
	s.CreatedAt, s.LastSeen = time.UnixMilli(created), time.UnixMilli(seen)
	if sf.Valid {
		t := time.UnixMilli(sf.Int64)
		s.SecondFactorAt = &t
	}
	return s, nil
}

// TouchSession records activity on a session (for the idle timeout).
func (db *DB) TouchSession(ctx context.Context, idHash string, at time.Time) error {
	_, err := db.write.ExecContext(ctx, `UPDATE sessions SET last_seen = ? WHERE id_hash = ?`, at.UnixMilli(), idHash)
	return queryErr(err)
}

// ReplaceSession ends the session old and stores s in its place, in one transaction: used when the second factor
// completes, so that the session id known before login is never the id of a full session (no session fixation).
func (db *DB) ReplaceSession(ctx context.Context, old string, s *renkei.Session, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.ReplaceSession", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, old)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorj("index.ReplaceSession", renkei.Unauthorized, "セッションが終了しました。もう一度ログインしてください。",
				"the login session has ended; please log in again")
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO sessions (id_hash, user_pk, csrf, created_at, last_seen, second_factor_at, source)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, s.IDHash, s.User, s.CSRF, s.CreatedAt.UnixMilli(), s.LastSeen.UnixMilli(), msPtr(s.SecondFactorAt), s.Source)
		if err != nil {
			return err
		}
		return noteLogin(ctx, tx, s)
	}, audit)
}

// DeleteSession ends one session.
func (db *DB) DeleteSession(ctx context.Context, idHash string, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.DeleteSession", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash)
		return err
	}, audit)
}

// CreateToken stores an API token by the hash of its secret; it sets t.PK.
func (db *DB) CreateToken(ctx context.Context, t *renkei.APIToken, hash string, audit *renkei.AuditEvent) error {
	t.CreatedAt = db.Now()
	return db.writeTx(ctx, "index.CreateToken", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO api_tokens (institution_pk, name, hash, write, created_by, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING pk`, t.Institution, t.Name, hash, t.Write, t.CreatedBy, t.CreatedAt.UnixMilli(),
			msPtr(t.ExpiresAt)).Scan(&t.PK)
	}, audit)
}

const tokenCols = `t.pk, t.institution_pk, t.name, t.write, i.issuer, t.created_by, t.created_at, t.expires_at, t.revoked_at, t.last_used`

func scanToken(row interface{ Scan(...any) error }) (renkei.APIToken, error) {
	var t renkei.APIToken
	var created int64
	err := row.Scan(&t.PK, &t.Institution, &t.Name, &t.Write, &t.Issuer, &t.CreatedBy, &created, msTimeScanner{&t.ExpiresAt},
		msTimeScanner{&t.RevokedAt}, msTimeScanner{&t.LastUsed})
	t.CreatedAt = time.UnixMilli(created)
	return t, err
}

// TokenByHash returns the token whose secret hashes to hash; an unknown one is a renkei.NotFound error. Revoked and
// expired tokens are returned too: the caller decides.
func (db *DB) TokenByHash(ctx context.Context, hash string) (renkei.APIToken, error) {
	t, err := scanToken(db.queryRowContext(ctx, `SELECT `+tokenCols+` FROM api_tokens t JOIN institutions i ON i.pk = t.institution_pk WHERE t.hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, renkei.Errorf("index.Token", renkei.NotFound, "no such token")
	}
	return t, queryErr(err)
}

// Tokens lists the tokens of an institution (0: all).
func (db *DB) Tokens(ctx context.Context, institution int64) ([]renkei.APIToken, error) {
	rows, err := db.queryContext(ctx, `SELECT `+tokenCols+` FROM api_tokens t JOIN institutions i ON i.pk = t.institution_pk
		WHERE ? = 0 OR t.institution_pk = ? ORDER BY t.pk`, institution, institution)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.APIToken
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, queryErr(err)
		}
		out = append(out, t)
	}
	return out, queryErr(rows.Err())
}

// RevokeToken revokes a token at once. institution limits which tokens may be revoked (0: any).
func (db *DB) RevokeToken(ctx context.Context, pk, institution int64, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.RevokeToken", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE pk = ? AND (? = 0 OR institution_pk = ?)`,
			db.Now().UnixMilli(), pk, institution, institution)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorj("index.RevokeToken", renkei.NotFound, "トークン No. %d は見つかりません。", "there is no token %d", pk)
		}
		return nil
	}, audit)
}

// TouchToken records when a token was last used.
func (db *DB) TouchToken(ctx context.Context, pk int64, at time.Time) error {
	_, err := db.write.ExecContext(ctx, `UPDATE api_tokens SET last_used = ? WHERE pk = ?`, at.UnixMilli(), pk)
	return queryErr(err)
}

// SetLanguage remembers a user's language for the web app ("ja" or "en").
func (db *DB) SetLanguage(ctx context.Context, pk int64, lang string) error {
	_, err := db.write.ExecContext(ctx, `UPDATE users SET lang = ? WHERE pk = ?`, lang, pk)
	return queryErr(err)
}
