package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"renkei"
)

const localPatientCols = `p.pk, p.institution_pk, p.issuer, p.patient_id, p.name, p.birth_date, p.sex, coalesce(l.regional_pk, 0)`

func scanLocalPatient(row interface{ Scan(...any) error }) (renkei.LocalPatient, error) {
	var lp renkei.LocalPatient
	err := row.Scan(&lp.PK, &lp.Institution, &lp.Key.Issuer, &lp.Key.ID, &lp.Name, &lp.BirthDate, &lp.Sex, &lp.Regional)
	return lp, err
}

func (db *DB) localPatients(ctx context.Context, q string, args ...any) ([]renkei.LocalPatient, error) {
	rows, err := db.queryContext(ctx, q, args...)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.LocalPatient
	for rows.Next() {
		lp, err := scanLocalPatient(rows)
		if err != nil {
			return nil, queryErr(err)
		}
		out = append(out, lp)
	}
	return out, queryErr(rows.Err())
}

// LocalPatient returns an institution's patient; one it does not hold is a renkei.NotFound error.
func (db *DB) LocalPatient(ctx context.Context, institution int64, key renkei.PatientKey) (renkei.LocalPatient, error) {
	lp, err := scanLocalPatient(db.queryRowContext(ctx, `SELECT `+localPatientCols+` FROM patients p
		LEFT JOIN patient_links l ON l.patient_pk = p.pk WHERE p.institution_pk = ? AND p.issuer = ? AND p.patient_id = ?`,
		institution, key.Issuer, key.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return lp, renkei.Errorj("index.LocalPatient", renkei.NotFound, "患者ID %s(発行者 %s)の患者は、貴施設に登録されていません。",
			"your institution holds no patient %s (issuer %s)", key.ID, key.Issuer)
	}
	return lp, queryErr(err)
}

// LocalPatientByPK returns a local patient by index key.
func (db *DB) LocalPatientByPK(ctx context.Context, pk int64) (renkei.LocalPatient, error) {
	lp, err := scanLocalPatient(db.queryRowContext(ctx, `SELECT `+localPatientCols+` FROM patients p
		LEFT JOIN patient_links l ON l.patient_pk = p.pk WHERE p.pk = ?`, pk))
	if errors.Is(err, sql.ErrNoRows) {
		return lp, renkei.Errorj("index.LocalPatient", renkei.NotFound, "該当する患者はいません。", "there is no such patient")
	}
	return lp, queryErr(err)
}

// Linked returns the local patients linked to the same regional patient as pk (pk itself included, first).
func (db *DB) Linked(ctx context.Context, pk int64) ([]renkei.LocalPatient, error) {
	self, err := db.LocalPatientByPK(ctx, pk)
	if err != nil {
		return nil, err
	}
	if self.Regional == 0 {
		return []renkei.LocalPatient{self}, nil
	}
	others, err := db.localPatients(ctx, `SELECT `+localPatientCols+` FROM patient_links l JOIN patients p ON p.pk = l.patient_pk
		WHERE l.regional_pk = ? AND p.pk <> ? ORDER BY p.pk`, self.Regional, pk)
	return append([]renkei.LocalPatient{self}, others...), err
}

// RegionalPatient returns the local patients linked to one regional patient.
func (db *DB) RegionalPatient(ctx context.Context, regional int64) ([]renkei.LocalPatient, error) {
	list, err := db.localPatients(ctx, `SELECT `+localPatientCols+` FROM patient_links l JOIN patients p ON p.pk = l.patient_pk
		WHERE l.regional_pk = ? ORDER BY p.pk`, regional)
	if err == nil && len(list) == 0 {
		err = renkei.Errorj("index.RegionalPatient", renkei.NotFound, "地域患者番号 %d の患者は見つかりません。", "there is no regional patient %d", regional)
	}
	return list, err
}

// FindPatients finds local patients region-wide by birth date and either a folded name key or a patient ID: the
// search behind break-glass, which must find an unconscious patient wherever they were seen.
func (db *DB) FindPatients(ctx context.Context, birthDate, nameKey, patientID string, limit int) ([]renkei.LocalPatient, error) {
	if birthDate == "" || (nameKey == "" && patientID == "") {
		return nil, renkei.Errorj("index.FindPatients", renkei.Invalid, "生年月日と、氏名または患者IDを入力してください。",
			"give the birth date and the name or a patient ID")
	}
	q := `SELECT ` + localPatientCols + ` FROM patients p LEFT JOIN patient_links l ON l.patient_pk = p.pk WHERE p.birth_date = ?`
	args := []any{birthDate}
	if patientID != "" {
		q += ` AND p.patient_id = ?`
		args = append(args, patientID)
	}
	if nameKey != "" {
		q += ` AND p.pk IN (SELECT patient_pk FROM patient_names WHERE key = ?)`
		args = append(args, nameKey)
	}
	return db.localPatients(ctx, q+fmt.Sprintf(` ORDER BY p.pk LIMIT %d`, limit), args...)
}

// QueryPatients finds local patients within q.Scope whose ID starts with q.IDPrefix in any case, or whose name
// or one of its components starts with q.NameKey (the keys of patient_names), whether or not they have studies:
// an exact ID first, then IDs that start so, then names, at most q.Limit (0: 50).
func (db *DB) QueryPatients(ctx context.Context, q *renkei.PatientQuery) ([]renkei.PatientRecord, error) {
	var match []string
	var args []any
	// Both sides upper-cased: SQLite's upper() changes ASCII only, so a prefix in other scripts is compared as typed.
	id := strings.ToUpper(q.IDPrefix)
	if id != "" {
		match = append(match, `substr(upper(p.patient_id), 1, ?) = ?`)
		args = append(args, utf8.RuneCountInString(id), id)
	}
	if q.NameKey != "" {
		// The whole name (with and without '^') or, with \x01, one component: each a range of the key index.
		match = append(match, `p.pk IN (SELECT patient_pk FROM patient_names WHERE (key >= ? AND key < ?) OR (key >= ? AND key < ?))`)
		args = append(args, q.NameKey, q.NameKey+"\U0010FFFF", "\x01"+q.NameKey, "\x01"+q.NameKey+"\U0010FFFF")
	}
	if len(match) == 0 {
		return nil, renkei.Errorf("index.QueryPatients", renkei.Invalid, "a patient search needs an ID or a name")
	}
	where := "(" + strings.Join(match, " OR ") + ")"
	if q.Owner != 0 {
		where += " AND p.institution_pk = ?"
		args = append(args, q.Owner)
	}
	sc, scArgs := patientScopeCond(q.Scope)
	where += sc
	args = append(args, scArgs...)
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	args = append(args, id, utf8.RuneCountInString(id), id)
	// The latest study is the latest the caller may see: a patient granted by a share of some of their studies shows
	// the date of those, not of a later study that was not shared (the study search would not show it either).
	last, lastArgs := scopeCond(q.Scope, true)
	rows, err := db.queryContext(ctx, `SELECT `+localPatientCols+`,
		coalesce((SELECT max(s.study_date) FROM studies s WHERE s.patient_pk = p.pk AND s.deleted_at IS NULL`+last+`), '')
		FROM patients p LEFT JOIN patient_links l ON l.patient_pk = p.pk WHERE `+where+`
		ORDER BY CASE WHEN upper(p.patient_id) = ? THEN 0 WHEN substr(upper(p.patient_id), 1, ?) = ? THEN 1 ELSE 2 END, p.patient_id, p.pk
		LIMIT `+strconv.Itoa(limit), append(lastArgs, args...)...)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.PatientRecord
	for rows.Next() {
		var pr renkei.PatientRecord
		lp := &pr.LocalPatient
		if err := rows.Scan(&lp.PK, &lp.Institution, &lp.Key.Issuer, &lp.Key.ID, &lp.Name, &lp.BirthDate, &lp.Sex, &lp.Regional,
			&pr.LastStudyDate); err != nil {
			return nil, queryErr(err)
		}
		out = append(out, pr)
	}
	return out, queryErr(rows.Err())
}

// patientScopeCond is scopeCond for patients (alias p) rather than studies: a patient is in scope when their
// institution is, when they are granted with all their studies, when one of their studies is granted, or when a share
// in force for the grantee names them (wholly or by some of their studies), as MaySeePatient decides for the record.
func patientScopeCond(sc *renkei.Scope) (string, []any) {
	if sc == nil {
		return "", nil
	}
	var or []string
	var args []any
	if len(sc.Institutions) > 0 {
		or = append(or, "p.institution_pk IN ("+placeholders(len(sc.Institutions))+")")
		args = appendKeys(args, sc.Institutions)
	}
	if !sc.OwnOnly {
		if len(sc.Patients) > 0 {
			or = append(or, "p.pk IN ("+placeholders(len(sc.Patients))+")")
			args = appendKeys(args, sc.Patients)
		}
		if len(sc.Studies) > 0 {
			or = append(or, "EXISTS (SELECT 1 FROM studies s WHERE s.patient_pk = p.pk AND s.pk IN ("+placeholders(len(sc.Studies))+"))")
			args = appendKeys(args, sc.Studies)
		}
		if g := sc.Grantee; g != nil {
			or = append(or, `EXISTS (SELECT 1 FROM shares sh WHERE sh.patient_pk = p.pk AND sh.revoked_at IS NULL AND sh.expires_at > ?
				AND (sh.to_institution = ? OR (sh.to_user <> 0 AND sh.to_user = ?)))`)
			args = append(args, g.At.UnixMilli(), g.Institution, g.User)
		}
	}
	if len(or) == 0 {
		return " AND 0 = 1", nil
	}
	return " AND (" + strings.Join(or, " OR ") + ")", args
}

// LinkProposals lists pairs of local patients of different institutions that look like one person (same birth
// date and sex, a folded name key in common) and are not linked to each other yet.
func (db *DB) LinkProposals(ctx context.Context, limit int) ([]renkei.LinkProposal, error) {
	rows, err := db.queryContext(ctx, `SELECT DISTINCT a.pk, b.pk, na.key FROM patients a
		JOIN patients b ON b.birth_date = a.birth_date AND b.sex = a.sex AND b.institution_pk > a.institution_pk
		JOIN patient_names na ON na.patient_pk = a.pk AND substr(na.key, 1, 1) <> '`+"\x01"+`' AND na.key LIKE '%^%'
		JOIN patient_names nb ON nb.patient_pk = b.pk AND nb.key = na.key
		LEFT JOIN patient_links la ON la.patient_pk = a.pk
		LEFT JOIN patient_links lb ON lb.patient_pk = b.pk
		WHERE a.birth_date <> '' AND (la.regional_pk IS NULL OR lb.regional_pk IS NULL OR la.regional_pk <> lb.regional_pk)
		ORDER BY a.pk, b.pk LIMIT ?`, limit*4)
	if err != nil {
		return nil, queryErr(err)
	}
	type pair struct{ a, b int64 }
	var pairs []pair
	names := map[pair]string{}
	for rows.Next() {
		var p pair
		var key string
		if err := rows.Scan(&p.a, &p.b, &key); err != nil {
			rows.Close()
			return nil, queryErr(err)
		}
		if _, ok := names[p]; !ok {
			pairs = append(pairs, p)
			names[p] = key
		}
	}
	if err := rows.Close(); err != nil {
		return nil, queryErr(err)
	}
	var out []renkei.LinkProposal
	for _, p := range pairs {
		if len(out) == limit {
			break
		}
		a, err := db.LocalPatientByPK(ctx, p.a)
		if err != nil {
			return nil, err
		}
		b, err := db.LocalPatientByPK(ctx, p.b)
		if err != nil {
			return nil, err
		}
		out = append(out, renkei.LinkProposal{A: a, B: b, Name: names[p]})
	}
	return out, nil
}

// Link makes local patients a and b one regional patient. If both were already linked to different regional
// patients, those are merged (every local patient of b's moves to a's). The audit event names what each was linked
// to before, so that Unlink can undo it. Both institutions must have the patient's consent to disclose.
func (db *DB) Link(ctx context.Context, a, b int64, by string, audit *renkei.AuditEvent) (int64, error) {
	var regional int64
	err := db.writeTx(ctx, "index.Link", func(tx *sql.Tx) error {
		// On PostgreSQL a withdrawal of either patient's consent, committed after the consents are read below and
		// before this link is, would look for the link to end before it exists, and the link would stay without a
		// consent: each patient's lock, which WithdrawConsent takes too, puts the two one after the other (the
		// lower key first, so that two links wait rather than deadlock).
		for _, pk := range []int64{min(a, b), max(a, b)} {
			if err := db.lockGrants(ctx, tx, pk, true); err != nil {
				return err
			}
		}
		ra, rb := regionalOf(ctx, tx, a), regionalOf(ctx, tx, b)
		for _, pk := range []int64{a, b} {
			var inst int64
			if err := tx.QueryRowContext(ctx, `SELECT institution_pk FROM patients WHERE pk = ?`, pk).Scan(&inst); err != nil {
				return renkei.Errorj("index.Link", renkei.NotFound, "患者 No. %d は見つかりません。", "there is no patient %d", pk)
			}
			if err := consentFor(ctx, tx, inst, pk, 0, 0); err != nil {
				return err
			}
		}
		now := db.Now().UnixMilli()
		switch {
		case ra == 0 && rb == 0:
			if err := tx.QueryRowContext(ctx, `INSERT INTO regional_patients (created_at) VALUES (?) RETURNING pk`, now).Scan(&regional); err != nil {
				return err
			}
		case ra != 0:
			regional = ra
		default:
			regional = rb
		}
		if rb != 0 && ra != 0 && ra != rb {
			// Every link of b's regional patient moves to a's, each remembering this merge on top of those it went
			// through before (merge_path), so that the merges can be undone one by one, the last first.
			if _, err := tx.ExecContext(ctx, `UPDATE patient_links SET regional_pk = ?, linked_by = ?, linked_at = ?, merged_from = ?,
				merge_path = CASE WHEN merge_path = '' THEN ? ELSE merge_path || ',' || ? END WHERE regional_pk = ?`,
				regional, by, now, rb, strconv.FormatInt(rb, 10), strconv.FormatInt(rb, 10), rb); err != nil {
				return err
			}
		}
		for _, pk := range []int64{a, b} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO patient_links (patient_pk, regional_pk, linked_by, linked_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (patient_pk) DO UPDATE SET regional_pk = excluded.regional_pk, linked_by = excluded.linked_by, linked_at = excluded.linked_at`,
				pk, regional, by, now); err != nil {
				return err
			}
		}
		if audit != nil {
			audit.Detail = strings.TrimSpace(fmt.Sprintf("linked local patients %d (was regional %d) and %d (was regional %d) as regional patient %d; %s",
				a, ra, b, rb, regional, audit.Detail))
		}
		return nil
	}, audit)
	return regional, err
}

// endIdentityLink takes a local patient out of its regional patient because the consent the link depended on was
// withdrawn (Link requires a consent for the region of each linked patient's institution). The link's row goes, as
// Unlink's does: every reader of the patient index (the regional query, a patient's own account, the referral's
// related studies, break-glass) follows patient_links, so that nothing the link showed is shown any more. Its
// history stays in the audit chain, which the region's administrators read: the event that made it ("linked local
// patients … as regional patient R") and this one, which names the regional patient, who linked it and when.
// A patient that is not linked is nothing to end.
func endIdentityLink(ctx context.Context, tx *sql.Tx, patientPK int64, audit *renkei.AuditEvent) error {
	var regional, linkedAt int64
	var linkedBy string
	err := tx.QueryRowContext(ctx, `DELETE FROM patient_links WHERE patient_pk = ? RETURNING regional_pk, linked_by, linked_at`,
		patientPK).Scan(&regional, &linkedBy, &linkedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if audit != nil {
		audit.Detail = strings.TrimSpace(audit.Detail + fmt.Sprintf("; identity link ended: local patient %d unlinked from regional patient %d (linked by %s at %s)",
			patientPK, regional, linkedBy, time.UnixMilli(linkedAt).UTC().Format(time.RFC3339)))
	}
	return nil
}

func regionalOf(ctx context.Context, tx *sql.Tx, pk int64) int64 {
	var r int64
	tx.QueryRowContext(ctx, `SELECT regional_pk FROM patient_links WHERE patient_pk = ?`, pk).Scan(&r)
	return r
}

// Unmerge undoes the merge of regional patient from into regional: every link that merge moved goes back under
// from, whose number is the same as before. It returns how many local patients moved back.
func (db *DB) Unmerge(ctx context.Context, regional, from int64, audit *renkei.AuditEvent) (int, error) {
	var n int64
	err := db.writeTx(ctx, "index.Unmerge", func(tx *sql.Tx) error {
		// The links that merge moved (their last merge is from) go back under from, with the merges they went
		// through before it (a patient merged into from earlier stays merged into from, undoable in its turn).
		rows, err := tx.QueryContext(ctx, `SELECT patient_pk, merge_path FROM patient_links WHERE regional_pk = ? AND merged_from = ?`, regional, from)
		if err != nil {
			return err
		}
		type back struct {
			pk   int64
			path string
		}
		var moved []back
		for rows.Next() {
			var b back
			if err := rows.Scan(&b.pk, &b.path); err != nil {
				rows.Close()
				return err
			}
			moved = append(moved, b)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, b := range moved {
			rest, last := "", int64(0)
			if i := strings.LastIndexByte(b.path, ','); i >= 0 {
				rest = b.path[:i]
				j := strings.LastIndexByte(rest, ',')
				last, _ = strconv.ParseInt(rest[j+1:], 10, 64)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE patient_links SET regional_pk = ?, merged_from = ?, merge_path = ? WHERE patient_pk = ?`,
				from, last, rest, b.pk); err != nil {
				return err
			}
		}
		n = int64(len(moved))
		if n == 0 {
			return renkei.Errorj("index.Unmerge", renkei.NotFound, "地域患者番号 %d には、地域患者番号 %d から統合された患者はいません。",
				"regional patient %d holds no patients merged from regional patient %d", regional, from)
		}
		if audit != nil {
			audit.Detail = strings.TrimSpace(fmt.Sprintf("unmerged regional patient %d from %d: %d local patient(s) back under %d; %s", from, regional, n, from, audit.Detail))
		}
		return nil
	}, audit)
	return int(n), err
}

// Unlink takes a local patient out of its regional patient (the undo of a wrong link or merge).
func (db *DB) Unlink(ctx context.Context, pk int64, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.Unlink", func(tx *sql.Tx) error {
		r := regionalOf(ctx, tx, pk)
		if r == 0 {
			return renkei.Errorj("index.Unlink", renkei.NotFound, "患者 No. %d は名寄せされていません。", "patient %d is not linked", pk)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM patient_links WHERE patient_pk = ?`, pk); err != nil {
			return err
		}
		if audit != nil {
			audit.Detail = strings.TrimSpace(fmt.Sprintf("unlinked local patient %d from regional patient %d; %s", pk, r, audit.Detail))
		}
		return nil
	}, audit)
}

// consentFor checks that the institution may disclose the patient: an active consent whose scope is the region or
// names the receiving institution (or, for a user, their institution). toInstitution and toUser 0 ask for a
// region-wide consent (identity links disclose to the region's patient index).
func consentFor(ctx context.Context, tx *sql.Tx, institution, patientPK, toInstitution, toUser int64) error {
	target := ""
	if toUser != 0 {
		tx.QueryRowContext(ctx, `SELECT i.id FROM users u JOIN institutions i ON i.pk = u.institution_pk WHERE u.pk = ?`, toUser).Scan(&target)
	} else if toInstitution != 0 {
		tx.QueryRowContext(ctx, `SELECT id FROM institutions WHERE pk = ?`, toInstitution).Scan(&target)
	}
	rows, err := tx.QueryContext(ctx, `SELECT scope FROM consents WHERE institution_pk = ? AND patient_pk = ? AND withdrawn_at IS NULL`,
		institution, patientPK)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var scope string
		if err := rows.Scan(&scope); err != nil {
			return err
		}
		if scope == renkei.ConsentScopeRegion || (target != "" && slices.Contains(strings.Split(scope, ","), target)) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return renkei.Errorj("index.Consent", renkei.Forbidden,
		"%[2]s への情報提供について、患者の同意が記録されていません。先に患者の同意を記録してください。",
		"the patient has not consented to your institution disclosing their data to %[1]s; record the patient's consent (同意) first",
		map[bool]string{true: "the region", false: target}[target == ""], map[bool]string{true: "地域の医療機関", false: target}[target == ""]).
		WithCode("consent-required")
}

// AddConsent records a patient's consent; it sets c.ID. A patient the institution does not hold is NotFound.
func (db *DB) AddConsent(ctx context.Context, c *renkei.Consent, audit *renkei.AuditEvent) error {
	c.RecordedAt = db.Now()
	return db.writeTx(ctx, "index.AddConsent", func(tx *sql.Tx) error {
		var pk int64
		err := tx.QueryRowContext(ctx, `SELECT pk FROM patients WHERE institution_pk = ? AND issuer = ? AND patient_id = ?`,
			c.Institution, c.Patient.Issuer, c.Patient.ID).Scan(&pk)
		if errors.Is(err, sql.ErrNoRows) {
			return renkei.Errorj("index.AddConsent", renkei.NotFound, "患者ID %s(発行者 %s)の患者は、貴施設に登録されていません。",
				"your institution holds no patient %s (issuer %s)", c.Patient.ID, c.Patient.Issuer)
		}
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO consents (institution_pk, patient_pk, scope, given_at, method, document_key, document_type, note,
			recorded_by, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk`, c.Institution, pk, c.Scope, c.GivenAt.UnixMilli(), c.Method,
			c.DocumentKey, c.DocumentType, c.Note, c.RecordedBy, c.RecordedAt.UnixMilli()).Scan(&c.ID)
	}, audit)
}

// WithdrawConsent records a withdrawal: from now on nothing of the patient is disclosed by the institution beyond
// what its remaining consents (if any) cover, and the shares it made of the patient (other than break-glass) that
// they do not cover end at once. When no consent for the region remains, its share links of the patient end too,
// and so does the patient's identity link (the local patient leaves its regional patient; the others stay linked
// to each other). Every ending is named in audit's Detail, which commits with them.
func (db *DB) WithdrawConsent(ctx context.Context, id, institution int64, by string, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.WithdrawConsent", func(tx *sql.Tx) error {
		now := db.Now().UnixMilli()
		var patientPK int64
		err := tx.QueryRowContext(ctx, `UPDATE consents SET withdrawn_at = ?, withdrawn_by = ? WHERE pk = ? AND institution_pk = ? AND withdrawn_at IS NULL
			RETURNING patient_pk`, now, by, id, institution).Scan(&patientPK)
		if errors.Is(err, sql.ErrNoRows) {
			return renkei.Errorj("index.WithdrawConsent", renkei.NotFound, "有効な同意 No. %d は見つかりません。", "there is no active consent %d", id)
		}
		if err != nil {
			return err
		}
		// The patient's lock orders this withdrawal with a Link of the patient (and with the shares' grants, which
		// refreshGrants rebuilds under the same lock): a Link that read the consent before it is withdrawn commits
		// its link before the link is looked for below.
		if err := db.lockGrants(ctx, tx, patientPK, true); err != nil {
			return err
		}
		// Each share still in force is checked against the consents that remain (a narrower one may remain: to one
		// hospital only, where the withdrawn one covered the region).
		type active struct{ pk, toInstitution, toUser int64 }
		var shares []active
		rows, err := tx.QueryContext(ctx, `SELECT pk, to_institution, to_user FROM shares WHERE from_institution = ? AND patient_pk = ?
			AND revoked_at IS NULL AND purpose <> 'break-glass'`, institution, patientPK)
		if err != nil {
			return err
		}
		for rows.Next() {
			var a active
			if err := rows.Scan(&a.pk, &a.toInstitution, &a.toUser); err != nil {
				rows.Close()
				return err
			}
			shares = append(shares, a)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		ended := 0
		for _, a := range shares {
			err := consentFor(ctx, tx, institution, patientPK, a.toInstitution, a.toUser)
			if renkei.ErrorKind(err) != renkei.Forbidden {
				if err != nil {
					return err
				}
				continue // still covered
			}
			if _, err := tx.ExecContext(ctx, `UPDATE shares SET revoked_at = ? WHERE pk = ?`, now, a.pk); err != nil {
				return err
			}
			ended++
		}
		if ended > 0 {
			if err := db.refreshGrants(ctx, tx, patientPK, now); err != nil {
				return err
			}
		}
		if ended > 0 && audit != nil {
			audit.Detail = strings.TrimSpace(audit.Detail + fmt.Sprintf("; %d share(s) of the patient ended", ended))
		}
		// A share link shows the images outside the region, and an identity link discloses the patient to the
		// region's patient index; both need a consent for the region (CreateShareLink, Link). Without one left, the
		// institution's share links of the patient end, with the views opened with them, and so does the patient's
		// identity link.
		err = consentFor(ctx, tx, institution, patientPK, 0, 0)
		if renkei.ErrorKind(err) != renkei.Forbidden {
			return err
		}
		if err := endIdentityLink(ctx, tx, patientPK, audit); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE share_links SET revoked_at = ? WHERE institution_pk = ? AND patient_pk = ? AND revoked_at IS NULL`,
			now, institution, patientPK)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM share_link_views WHERE link_pk IN (SELECT pk FROM share_links WHERE institution_pk = ? AND patient_pk = ?)`,
			institution, patientPK); err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 && audit != nil {
			audit.Detail = strings.TrimSpace(audit.Detail + fmt.Sprintf("; %d share link(s) of the patient ended", n))
		}
		return nil
	}, audit)
}

// Consents lists an institution's consents of one patient (0: of every patient), newest first.
func (db *DB) Consents(ctx context.Context, institution, patientPK int64) ([]renkei.Consent, error) {
	rows, err := db.queryContext(ctx, `SELECT c.pk, c.institution_pk, p.issuer, p.patient_id, c.scope, c.given_at, c.method, c.document_key,
		c.document_type, c.note, c.recorded_by, c.recorded_at, c.withdrawn_at, c.withdrawn_by
		FROM consents c JOIN patients p ON p.pk = c.patient_pk WHERE c.institution_pk = ? AND (? = 0 OR c.patient_pk = ?) ORDER BY c.pk DESC`,
		institution, patientPK, patientPK)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.Consent
	for rows.Next() {
		var c renkei.Consent
		var given, recorded int64
		if err := rows.Scan(&c.ID, &c.Institution, &c.Patient.Issuer, &c.Patient.ID, &c.Scope, &given, &c.Method, &c.DocumentKey, &c.DocumentType,
			&c.Note, &c.RecordedBy, &recorded, msTimeScanner{&c.WithdrawnAt}, &c.WithdrawnBy); err != nil {
			return nil, queryErr(err)
		}
		c.GivenAt, c.RecordedAt = time.UnixMilli(given), time.UnixMilli(recorded)
		out = append(out, c)
	}
	return out, queryErr(rows.Err())
}

// CreateInvitation stores an invitation for a patient to create their account, by the hash of its code.
func (db *DB) CreateInvitation(ctx context.Context, institution, patientPK int64, codeHash, by string, expires time.Time, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.CreateInvitation", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO invitations (code_hash, institution_pk, patient_pk, created_by, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?)`, codeHash, institution, patientPK, by, db.Now().UnixMilli(), expires.UnixMilli())
		return err
	}, audit)
}

// AcceptInvitation uses an invitation up and creates the patient's account in one transaction. An unknown, used or
// expired code is renkei.Unauthorized.
func (db *DB) AcceptInvitation(ctx context.Context, codeHash string, u *renkei.User, passwordHash string, audit *renkei.AuditEvent) error {
	u.CreatedAt = db.Now()
	err := db.writeTx(ctx, "index.AcceptInvitation", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE invitations SET used_at = ? WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?
			RETURNING institution_pk, patient_pk`, u.CreatedAt.UnixMilli(), codeHash, u.CreatedAt.UnixMilli()).Scan(&u.Institution.PK, &u.PatientPK)
		if errors.Is(err, sql.ErrNoRows) {
			return renkei.Errorj("index.AcceptInvitation", renkei.Unauthorized, "招待コードが違うか、使用済みか、期限切れです。病院・診療所に新しいコードをお尋ねください。",
				"the invitation code is wrong, already used or expired; ask the hospital or clinic for a new one")
		}
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO users (institution_pk, login, name, role, patient_pk, password_hash, must_change, created_at)
			VALUES (?, ?, ?, 'patient', ?, ?, 0, ?) RETURNING pk`, u.Institution.PK, u.Login, u.Name, u.PatientPK, passwordHash,
			u.CreatedAt.UnixMilli()).Scan(&u.PK)
	}, audit)
	if renkei.ErrorKind(err) == renkei.Conflict {
		return renkei.Errorj("index.AcceptInvitation", renkei.Conflict, "ログイン名 %q はすでに使われています。別の名前にしてください。",
			"the login %q is already taken; choose another", u.Login)
	}
	return err
}
