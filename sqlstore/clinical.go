package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"renkei"
)

// The clinical record: facts written by an institution about a local patient, kept as JSON bodies.

const (
	factAllergy    = "allergy"
	factMedication = "medication"
	factCondition  = "condition"
	factDocument   = "document"
)

// AddFacts records the facts of rec (all or none) with the audit event; it sets their IDs and times. Every fact must
// name its institution and its local patient (PatientPK).
func (db *DB) AddFacts(ctx context.Context, rec *renkei.Record, audit *renkei.AuditEvent) error {
	now := db.Now()
	return db.writeTx(ctx, "index.AddFacts", func(tx *sql.Tx) error { return db.addFactsTx(ctx, tx, rec, now) }, audit)
}

func (db *DB) addFactsTx(ctx context.Context, tx *sql.Tx, rec *renkei.Record, now time.Time) error {
	put := func(kind string, f *renkei.Fact, v any) error {
		if f.Institution == 0 || f.PatientPK == 0 {
			return renkei.Errorf("index.AddFacts", renkei.Invalid, "a fact needs its institution and patient")
		}
		if f.RecordedAt.IsZero() {
			f.RecordedAt = now
		}
		if f.Source == "" {
			f.Source = "manual"
		}
		body, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO facts (kind, institution_pk, patient_pk, author, recorded_at, source, source_id, body)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk`, kind, f.Institution, f.PatientPK, f.Author, f.RecordedAt.UnixMilli(),
			f.Source, f.SourceID, string(body)).Scan(&f.ID)
	}
	for i := range rec.Allergies {
		if err := put(factAllergy, &rec.Allergies[i].Fact, &rec.Allergies[i]); err != nil {
			return err
		}
	}
	for i := range rec.Medications {
		if err := put(factMedication, &rec.Medications[i].Fact, &rec.Medications[i]); err != nil {
			return err
		}
	}
	for i := range rec.Conditions {
		if err := put(factCondition, &rec.Conditions[i].Fact, &rec.Conditions[i]); err != nil {
			return err
		}
	}
	for i := range rec.Documents {
		if err := put(factDocument, &rec.Documents[i].Fact, &rec.Documents[i]); err != nil {
			return err
		}
	}
	return nil
}

// WithdrawFact marks a fact entered in error. Only its institution may (institution 0: any).
func (db *DB) WithdrawFact(ctx context.Context, id, institution int64, audit *renkei.AuditEvent) error {
	return db.writeTx(ctx, "index.WithdrawFact", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE facts SET entered_in_error = 1 WHERE pk = ? AND (? = 0 OR institution_pk = ?)`, id, institution, institution)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorj("index.WithdrawFact", renkei.NotFound, "貴施設の記録に該当するものはありません。", "there is no such entry of your institution")
		}
		return nil
	}, audit)
}

// Facts returns the facts about the given local patients, newest first, without those withdrawn as entered in
// error. The caller decides which patients the reader may see.
func (db *DB) Facts(ctx context.Context, patients []int64) (renkei.Record, error) {
	var rec renkei.Record
	if len(patients) == 0 {
		return rec, nil
	}
	rows, err := db.queryContext(ctx, `SELECT f.pk, f.kind, f.institution_pk, coalesce(i.name, ''), f.patient_pk, p.issuer, p.patient_id,
		f.author, f.recorded_at, f.source, f.source_id, f.body FROM facts f JOIN patients p ON p.pk = f.patient_pk
		LEFT JOIN institutions i ON i.pk = f.institution_pk
		WHERE f.patient_pk IN (`+placeholders(len(patients))+`) AND f.entered_in_error = 0 ORDER BY f.recorded_at DESC, f.pk DESC`,
		appendKeys(nil, patients)...)
	if err != nil {
		return rec, queryErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var f renkei.Fact
		var kind, body string
		var at int64
		if err := rows.Scan(&f.ID, &kind, &f.Institution, &f.InstitutionName, &f.PatientPK, &f.Patient.Issuer, &f.Patient.ID,
			&f.Author, &at, &f.Source, &f.SourceID, &body); err != nil {
			return rec, queryErr(err)
		}
		f.RecordedAt = time.UnixMilli(at)
		switch kind {
		case factAllergy:
			var a renkei.Allergy
			err = json.Unmarshal([]byte(body), &a)
			a.Fact = f
			rec.Allergies = append(rec.Allergies, a)
		case factMedication:
			var m renkei.Medication
			err = json.Unmarshal([]byte(body), &m)
			m.Fact = f
			rec.Medications = append(rec.Medications, m)
		case factCondition:
			var c renkei.Condition
			err = json.Unmarshal([]byte(body), &c)
			c.Fact = f
			rec.Conditions = append(rec.Conditions, c)
		case factDocument:
			var d renkei.Document
			err = json.Unmarshal([]byte(body), &d)
			d.Fact = f
			rec.Documents = append(rec.Documents, d)
		}
		if err != nil {
			return rec, &renkei.Error{Op: "index.Facts", Kind: renkei.Unavailable, Message: "a stored fact cannot be read",
				Japanese: "保存されている記録を読み込めません。", Err: err}
		}
	}
	return rec, queryErr(rows.Err())
}

// Document returns one document fact by key, whatever its patient (the caller checks who may read it).
func (db *DB) Document(ctx context.Context, id int64) (renkei.Document, error) {
	var d renkei.Document
	var body string
	var at int64
	err := db.queryRowContext(ctx, `SELECT f.institution_pk, f.patient_pk, f.author, f.recorded_at, f.body FROM facts f
		WHERE f.pk = ? AND f.kind = 'document' AND f.entered_in_error = 0`, id).Scan(&d.Institution, &d.PatientPK, &d.Author, &at, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return d, renkei.Errorj("index.Document", renkei.NotFound, "該当する書類はありません。", "there is no such document")
	}
	if err != nil {
		return d, queryErr(err)
	}
	f := d.Fact
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		return d, &renkei.Error{Op: "index.Document", Kind: renkei.Unavailable, Message: "a stored document cannot be read",
			Japanese: "保存されている書類を読み込めません。", Err: err}
	}
	f.ID, f.RecordedAt = id, time.UnixMilli(at)
	d.Fact = f
	return d, nil
}

// MaySeePatient reports whether an institution (or one of its users) may see a local patient now: it holds the
// patient, or a share in force (of the patient or of some of their studies, break-glass included) grants them.
func (db *DB) MaySeePatient(ctx context.Context, institution, user, patient int64, now time.Time) (bool, error) {
	var ok bool
	err := db.queryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM patients WHERE pk = ? AND institution_pk = ?)
		OR EXISTS (SELECT 1 FROM shares sh WHERE sh.patient_pk = ? AND sh.revoked_at IS NULL AND sh.expires_at > ?
			AND (sh.to_institution = ? OR (sh.to_user <> 0 AND sh.to_user = ?)))`,
		patient, institution, patient, now.UnixMilli(), institution, user).Scan(&ok)
	return ok, queryErr(err)
}

// ---- referrals ----

func letterJSON(l renkei.Letter) string {
	b, _ := json.Marshal(l)
	return string(b)
}

func joinKeys(keys []int64) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = strconv.FormatInt(k, 10)
	}
	return strings.Join(s, ",")
}

func splitKeys(s string) []int64 {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		if k, err := strconv.ParseInt(f, 10, 64); err == nil {
			out = append(out, k)
		}
	}
	return out
}

func splitUIDs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, `\`)
}

// CreateReferral records a draft (its letter as version 0) about one of the sender's local patients; it sets r.ID.
func (db *DB) CreateReferral(ctx context.Context, r *renkei.Referral, audit *renkei.AuditEvent) error {
	now := db.Now()
	r.CreatedAt, r.UpdatedAt, r.Status = now, now, renkei.StatusDraft
	return db.writeTx(ctx, "index.CreateReferral", func(tx *sql.Tx) error {
		// A reverse referral names its parent's patient (PatientPK, checked by the caller); others the sender's own.
		if r.PatientPK == 0 {
			err := tx.QueryRowContext(ctx, `SELECT pk FROM patients WHERE institution_pk = ? AND issuer = ? AND patient_id = ?`,
				r.FromInstitution, r.Patient.Issuer, r.Patient.ID).Scan(&r.PatientPK)
			np := r.NewPatient
			taken := func(id string) error {
				// Perhaps the same person, perhaps a typo for someone else: the sender chooses them from the search,
				// where their name and birth date show which.
				return renkei.Errorj("index.CreateReferral", renkei.Conflict, "患者ID %s の患者さんは、すでに貴施設に登録されています。患者の検索で探して選んでください。",
					"a patient with ID %s is already registered at your institution; find and choose them in the patient search", id)
			}
			if errors.Is(err, sql.ErrNoRows) && np != nil {
				// IDs are found in any case (the patient search), so one that differs from a registered ID only in
				// case is taken too: registered beside it, the picker could not tell them apart by the ID typed.
				var other string
				switch err := tx.QueryRowContext(ctx, `SELECT patient_id FROM patients WHERE institution_pk = ? AND issuer = ? AND upper(patient_id) = upper(?) LIMIT 1`,
					r.FromInstitution, r.Patient.Issuer, r.Patient.ID).Scan(&other); {
				case err == nil:
					return taken(other)
				case !errors.Is(err, sql.ErrNoRows):
					return err
				}
			}
			switch {
			case errors.Is(err, sql.ErrNoRows) && np != nil:
				// Registered with the draft, in its transaction: the referral then keeps the patient (the purge of
				// patients without studies spares those a referral is about), so no typed patient is left orphaned.
				if err := tx.QueryRowContext(ctx, `INSERT INTO patients (institution_pk, issuer, patient_id, name, birth_date, sex) VALUES (?, ?, ?, ?, ?, ?) RETURNING pk`,
					r.FromInstitution, r.Patient.Issuer, r.Patient.ID, np.Name, np.BirthDate, np.Sex).Scan(&r.PatientPK); err != nil {
					return err
				}
				for _, k := range np.NameKeys {
					if _, err := tx.ExecContext(ctx, `INSERT INTO patient_names (key, patient_pk) VALUES (?, ?) ON CONFLICT DO NOTHING`, k, r.PatientPK); err != nil {
						return err
					}
				}
			case errors.Is(err, sql.ErrNoRows):
				return renkei.Errorj("index.CreateReferral", renkei.NotFound, "患者ID %s(発行者 %s)の患者は、貴施設に登録されていません。",
					"your institution holds no patient %s (issuer %s)", r.Patient.ID, r.Patient.Issuer)
			case err != nil:
				return err
			case np != nil:
				return taken(r.Patient.ID)
			}
		}
		patientPK := r.PatientPK
		if err := tx.QueryRowContext(ctx, `INSERT INTO referrals (kind, parent_pk, from_institution, from_user, from_user_name, to_institution,
			to_department, to_doctor, patient_pk, priority, status, studies, documents, created_at, updated_at, due_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk`,
			string(r.Kind), r.Parent, r.FromInstitution, r.FromUser, r.FromUserName, r.ToInstitution, r.ToDepartment, r.ToDoctor,
			patientPK, r.Priority, string(r.Status), strings.Join(r.Studies, `\`), joinKeys(r.Documents), now.UnixMilli(), now.UnixMilli(),
			msPtr(r.DueAt)).Scan(&r.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO referral_letters (referral_pk, reply, version, body, written_by, written_at) VALUES (?, 0, 0, ?, ?, ?)`,
			r.ID, letterJSON(r.Letter), r.FromUserName, now.UnixMilli()); err != nil {
			return err
		}
		return addReferralEvent(ctx, tx, r.ID, renkei.ReferralEvent{Status: renkei.StatusDraft, At: now, By: r.FromUserName, ByInst: r.FromInstitution})
	}, audit)
}

func addReferralEvent(ctx context.Context, tx *sql.Tx, id int64, e renkei.ReferralEvent) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO referral_events (referral_pk, status, at, by_name, by_institution, note) VALUES (?, ?, ?, ?, ?, ?)`,
		id, string(e.Status), e.At.UnixMilli(), e.By, e.ByInst, e.Note)
	return err
}

// SaveDraft replaces a draft's addressee, attachments and letter. A referral that was sent is not a draft any more:
// renkei.Conflict.
func (db *DB) SaveDraft(ctx context.Context, r *renkei.Referral, audit *renkei.AuditEvent) error {
	now := db.Now()
	return db.writeTx(ctx, "index.SaveDraft", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE referrals SET to_institution = ?, to_department = ?, to_doctor = ?, priority = ?, studies = ?,
			documents = ?, due_at = ?, updated_at = ? WHERE pk = ? AND from_institution = ? AND status = 'draft'`,
			r.ToInstitution, r.ToDepartment, r.ToDoctor, r.Priority, strings.Join(r.Studies, `\`), joinKeys(r.Documents), msPtr(r.DueAt),
			now.UnixMilli(), r.ID, r.FromInstitution)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return renkei.Errorj("index.SaveDraft", renkei.Conflict, "この紹介状は送信済みのため、編集できません。訂正版を作成してください。",
				"this referral has been sent and can no longer be edited; write a corrected version instead")
		}
		_, err = tx.ExecContext(ctx, `UPDATE referral_letters SET body = ?, written_by = ?, written_at = ? WHERE referral_pk = ? AND reply = 0 AND version = 0`,
			letterJSON(r.Letter), r.FromUserName, now.UnixMilli(), r.ID)
		return err
	}, audit)
}

const referralCols = `r.pk, r.kind, r.parent_pk, r.from_institution, coalesce(fi.name, ''), r.from_user, r.from_user_name, r.to_institution,
	coalesce(ti.name, ''), r.to_department, r.to_doctor, r.patient_pk, p.issuer, p.patient_id, p.name, p.birth_date, p.sex, r.priority,
	r.status, r.version, r.studies, r.documents, r.appointment, r.decline_reason, r.share_pk, r.created_at, r.updated_at, r.sent_at, r.due_at,
	coalesce(l.body, '{}')`

const referralFrom = ` FROM referrals r JOIN patients p ON p.pk = r.patient_pk
	LEFT JOIN institutions fi ON fi.pk = r.from_institution LEFT JOIN institutions ti ON ti.pk = r.to_institution
	LEFT JOIN referral_letters l ON l.referral_pk = r.pk AND l.reply = 0 AND l.version = r.version`

func scanReferral(sc interface{ Scan(...any) error }) (renkei.Referral, error) {
	var r renkei.Referral
	var kind, status, studies, docs, letter string
	var created, updated int64
	var sent, due sql.NullInt64
	err := sc.Scan(&r.ID, &kind, &r.Parent, &r.FromInstitution, &r.FromName, &r.FromUser, &r.FromUserName, &r.ToInstitution, &r.ToName,
		&r.ToDepartment, &r.ToDoctor, &r.PatientPK, &r.Patient.Issuer, &r.Patient.ID, &r.PatientName, &r.PatientBirth, &r.PatientSex,
		&r.Priority, &status, &r.Version, &studies, &docs, &r.Appointment, &r.DeclineReason, &r.Share, &created, &updated, &sent, &due, &letter)
	if err != nil {
		return r, err
	}
	r.Kind, r.Status = renkei.ReferralKind(kind), renkei.ReferralStatus(status)
	r.Studies, r.Documents = splitUIDs(studies), splitKeys(docs)
	r.CreatedAt, r.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	if sent.Valid {
		t := time.UnixMilli(sent.Int64)
		r.SentAt = &t
	}
	if due.Valid {
		t := time.UnixMilli(due.Int64)
		r.DueAt = &t
	}
	if err := json.Unmarshal([]byte(letter), &r.Letter); err != nil {
		return r, err
	}
	return r, nil
}

// Referral returns one referral with its latest letter, its latest reply and its history.
func (db *DB) Referral(ctx context.Context, id int64) (renkei.Referral, error) {
	r, err := scanReferral(db.queryRowContext(ctx, `SELECT `+referralCols+referralFrom+` WHERE r.pk = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, renkei.Errorj("index.Referral", renkei.NotFound, "紹介 No. %d は見つかりません。", "there is no referral %d", id)
	}
	if err != nil {
		return r, queryErr(err)
	}
	var reply string
	err = db.queryRowContext(ctx, `SELECT body FROM referral_letters WHERE referral_pk = ? AND reply = 1 ORDER BY version DESC LIMIT 1`, id).Scan(&reply)
	if err == nil {
		r.Reply = &renkei.Letter{}
		if err := json.Unmarshal([]byte(reply), r.Reply); err != nil {
			return r, queryErr(err)
		}
	} else if !errors.Is(err, sql.ErrNoRows) {
		return r, queryErr(err)
	}
	rows, err := db.queryContext(ctx, `SELECT status, at, by_name, by_institution, note FROM referral_events WHERE referral_pk = ? ORDER BY pk`, id)
	if err != nil {
		return r, queryErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var e renkei.ReferralEvent
		var st string
		var at int64
		if err := rows.Scan(&st, &at, &e.By, &e.ByInst, &e.Note); err != nil {
			return r, queryErr(err)
		}
		e.Status, e.At = renkei.ReferralStatus(st), time.UnixMilli(at)
		r.Events = append(r.Events, e)
	}
	return r, queryErr(rows.Err())
}

// LetterVersions returns every version of a referral's letters (reply false) or replies (true), oldest first.
func (db *DB) LetterVersions(ctx context.Context, id int64, reply bool) ([]renkei.LetterVersion, error) {
	rows, err := db.queryContext(ctx, `SELECT version, body, written_by, written_at FROM referral_letters WHERE referral_pk = ? AND reply = ?
		AND (reply = 1 OR version > 0) ORDER BY version`, id, reply)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.LetterVersion
	for rows.Next() {
		v := renkei.LetterVersion{Reply: reply}
		var body string
		var at int64
		if err := rows.Scan(&v.Version, &body, &v.WrittenBy, &at); err != nil {
			return nil, queryErr(err)
		}
		v.WrittenAt = time.UnixMilli(at)
		if err := json.Unmarshal([]byte(body), &v.Letter); err != nil {
			return nil, queryErr(err)
		}
		out = append(out, v)
	}
	return out, queryErr(rows.Err())
}

// Referrals lists the referrals an institution sent or received (drafts only to their sender), those waiting
// longest first within the statuses asked for.
func (db *DB) Referrals(ctx context.Context, f renkei.ReferralFilter) ([]renkei.Referral, error) {
	var where []string
	var args []any
	switch f.Direction {
	case "in":
		where = append(where, "r.to_institution = ? AND r.status <> 'draft'")
		args = append(args, f.Institution)
	case "out":
		where = append(where, "r.from_institution = ?")
		args = append(args, f.Institution)
	default:
		// Two indexed halves rather than an OR, which SQLite would answer by scanning every referral.
		where = append(where, "r.pk IN (SELECT pk FROM referrals WHERE to_institution = ? AND status <> 'draft' UNION ALL SELECT pk FROM referrals WHERE from_institution = ?)")
		args = append(args, f.Institution, f.Institution)
	}
	if len(f.Status) > 0 {
		ph := make([]string, len(f.Status))
		for i, s := range f.Status {
			ph[i] = "?"
			args = append(args, string(s))
		}
		where = append(where, "r.status IN ("+strings.Join(ph, ",")+")")
	}
	if f.Kind != "" {
		where = append(where, "r.kind = ?")
		args = append(args, string(f.Kind))
	}
	if f.Patient != "" {
		where = append(where, "(p.patient_id = ? OR p.name "+db.dialect.caseInsensitiveLike()+" ?)")
		args = append(args, f.Patient, "%"+f.Patient+"%")
	}
	limit := f.Limit
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	// Open items first (what still waits for someone), overdue before the rest, then by priority (stat, urgent,
	// routine: a reading worklist), then the longest waiting first; finished ones after, newest first.
	q := `SELECT ` + referralCols + referralFrom + ` WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY r.status IN ('completed', 'declined', 'cancelled', 'closed'), (r.due_at IS NOT NULL AND r.due_at < ?) DESC,
		CASE WHEN r.status IN ('completed', 'declined', 'cancelled', 'closed') THEN 0 WHEN r.priority = 'stat' THEN 0 WHEN r.priority = 'urgent' THEN 1 ELSE 2 END,
		CASE WHEN r.status IN ('completed', 'declined', 'cancelled', 'closed') THEN -r.updated_at ELSE r.updated_at END, r.pk
		LIMIT ` + strconv.Itoa(limit) + ` OFFSET ` + strconv.Itoa(max(0, f.Offset))
	args = append(args, db.Now().UnixMilli())
	rows, err := db.queryContext(ctx, q, args...)
	if err != nil {
		return nil, queryErr(err)
	}
	defer rows.Close()
	var out []renkei.Referral
	for rows.Next() {
		r, err := scanReferral(rows)
		if err != nil {
			return nil, queryErr(err)
		}
		out = append(out, r)
	}
	return out, queryErr(rows.Err())
}

// MoveReferral takes one step by compare-and-set: if the referral is no longer in one of m.From (someone else
// acted first), nothing is written and the answer is renkei.Conflict naming where it stands.
func (db *DB) MoveReferral(ctx context.Context, m renkei.ReferralMove, audit *renkei.AuditEvent) error {
	now := db.Now()
	m.Event.At = now
	return db.writeTx(ctx, "index.MoveReferral", func(tx *sql.Tx) error {
		var status, studies string
		var from, to, patient, sharePK int64
		var version int
		err := tx.QueryRowContext(ctx, `SELECT status, from_institution, to_institution, patient_pk, share_pk, version, studies FROM referrals WHERE pk = ?`, m.ID).
			Scan(&status, &from, &to, &patient, &sharePK, &version, &studies)
		if errors.Is(err, sql.ErrNoRows) {
			return renkei.Errorj("index.MoveReferral", renkei.NotFound, "紹介 No. %d は見つかりません。", "there is no referral %d", m.ID)
		}
		if err != nil {
			return err
		}
		side := to
		if m.Side == "sender" {
			side = from
		}
		if side != m.Institution {
			return renkei.Errorj("index.MoveReferral", renkei.NotFound, "紹介 No. %d は見つかりません。", "there is no referral %d", m.ID)
		}
		ph := make([]string, len(m.From))
		for i := range m.From {
			ph[i] = "?"
		}
		set := `status = ?, updated_at = ?, appointment = CASE WHEN ? <> '' THEN ? ELSE appointment END,
			decline_reason = CASE WHEN ? <> '' THEN ? ELSE decline_reason END`
		args := []any{string(m.To), now.UnixMilli(), m.Appointment, m.Appointment, m.Reason, m.Reason}
		if m.To == renkei.StatusSent && m.NewTo == 0 {
			set += `, sent_at = ?, version = 1`
			args = append(args, now.UnixMilli())
		}
		if m.NewTo != 0 {
			set += `, to_institution = ?, to_department = '', to_doctor = ''`
			args = append(args, m.NewTo)
		}
		// The compare-and-set names the receiver and the share read above, not only the status: on PostgreSQL a
		// concurrent step that committed since (a redirect: still "sent", to another hospital, with another share)
		// is seen by the UPDATE's WHERE only, and must not let this step act on a referral that is no longer the
		// one it checked.
		args = append(args, m.ID, to, sharePK)
		for _, s := range m.From {
			args = append(args, string(s))
		}
		res, err := tx.ExecContext(ctx, `UPDATE referrals SET `+set+` WHERE pk = ? AND to_institution = ? AND share_pk = ? AND status IN (`+
			strings.Join(ph, ",")+`)`, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			// Where it stands now (a new statement sees what the other step committed).
			if err := tx.QueryRowContext(ctx, `SELECT status, to_institution FROM referrals WHERE pk = ?`, m.ID).Scan(&status, &to); err != nil {
				return err
			}
			if m.Side != "sender" && to != m.Institution {
				return renkei.Errorj("index.MoveReferral", renkei.NotFound, "紹介 No. %d は見つかりません。", "there is no referral %d", m.ID)
			}
			return renkei.Errorj("index.MoveReferral", renkei.Conflict, "この紹介はすでに「%[2]s」になっています。画面には最新の状態を表示しています。",
				"this referral is already %[1]s; the page shows the latest state", status, renkei.ReferralStatus(status).Japanese())
		}
		if m.To == renkei.StatusSent && m.NewTo == 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO referral_letters (referral_pk, reply, version, body, written_by, written_at)
				SELECT referral_pk, 0, 1, body, written_by, ? FROM referral_letters WHERE referral_pk = ? AND reply = 0 AND version = 0`, now.UnixMilli(), m.ID); err != nil {
				return err
			}
		}
		if m.Share != nil && m.To == renkei.StatusSent && m.NewTo == 0 {
			// Sending: the share goes where the draft goes now, with the studies it lists now (the step was
			// prepared from the draft as it stood; a colleague may have saved it since, which the letter's version
			// 1 above copies too).
			m.Share.ToInstitution, m.Share.Studies = to, splitUIDs(studies)
			m.Share.RecordOnly = len(m.Share.Studies) == 0
		}
		if m.Share != nil {
			m.Share.CreatedAt = now
			if m.NewTo != 0 && len(m.Share.Studies) > 0 {
				// A redirect hands on the transfer's studies that are still live: one moved to the trash (or purged)
				// since it was sent must not stop an emergency on its way. None left: the record only, never the
				// whole patient.
				live, err := liveStudies(ctx, tx, m.Share.FromInstitution, m.Share.Patient, m.Share.Studies)
				if err != nil {
					return err
				}
				m.Share.Studies, m.Share.RecordOnly = live, len(live) == 0
			}
			if err := db.createShare(ctx, tx, m.Share); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE referrals SET share_pk = ? WHERE pk = ?`, m.Share.ID, m.ID); err != nil {
				return err
			}
		}
		if m.Revoke && sharePK != 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE shares SET revoked_at = coalesce(revoked_at, ?) WHERE pk = ?`, now.UnixMilli(), sharePK); err != nil {
				return err
			}
			if err := db.refreshShareGrants(ctx, tx, sharePK, now.UnixMilli()); err != nil {
				return err
			}
		}
		if m.Reply != nil {
			if _, err := tx.ExecContext(ctx, `INSERT INTO referral_letters (referral_pk, reply, version, body, written_by, written_at)
				VALUES (?, 1, (SELECT coalesce(max(version), 0) + 1 FROM referral_letters WHERE referral_pk = ? AND reply = 1), ?, ?, ?)`,
				m.ID, m.ID, letterJSON(*m.Reply), m.Event.By, now.UnixMilli()); err != nil {
				return err
			}
		}
		if m.Facts != nil {
			if err := db.addFactsTx(ctx, tx, m.Facts, now); err != nil {
				return err
			}
		}
		m.Event.Status = m.To
		return addReferralEvent(ctx, tx, m.ID, m.Event)
	}, audit)
}

// liveStudies returns, in their order, the studies of uids that the institution holds of the patient and that are
// not in the trash.
func liveStudies(ctx context.Context, tx *sql.Tx, institution int64, patient renkei.PatientKey, uids []string) ([]string, error) {
	var live []string
	for _, uid := range uids {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM studies s JOIN patients p ON p.pk = s.patient_pk
			WHERE s.institution_pk = ? AND s.study_uid = ? AND s.deleted_at IS NULL AND p.institution_pk = ? AND p.issuer = ? AND p.patient_id = ?`,
			institution, uid, institution, patient.Issuer, patient.ID).Scan(&n); err != nil {
			return nil, err
		}
		if n > 0 {
			live = append(live, uid)
		}
	}
	return live, nil
}

// AddLetterVersion records a corrected letter of a sent referral as its next version; earlier versions stay. A
// draft is edited, not versioned, and a referral that ended without the receiver taking the patient (cancelled by
// its sender, declined by its receiver) takes no correction: the receiver no longer acts on it nor sees its
// attachments (ReferralGrantsDocument), so a corrected letter would reach nobody who needs it, and the sender is
// told to write a new referral instead. Both are renkei.Conflict, and nothing is written. A referral that was
// accepted, answered or closed does take one: its letter is part of the record the receiver keeps of the patient,
// and an error in it (an allergy, a medication) must be correctable, with the earlier versions kept.
func (db *DB) AddLetterVersion(ctx context.Context, id, institution int64, l renkei.Letter, by string, audit *renkei.AuditEvent) (int, error) {
	const op = "index.AddLetterVersion"
	now := db.Now()
	var v int
	err := db.writeTx(ctx, op, func(tx *sql.Tx) error {
		// The status is checked by the UPDATE that takes the version: on PostgreSQL a cancel committed after a
		// SELECT here would not be seen, and the correction would land on the cancelled referral. The UPDATE waits
		// for it and re-checks its WHERE against the row it committed.
		var status string
		err := tx.QueryRowContext(ctx, `UPDATE referrals SET version = version + 1, updated_at = ?
			WHERE pk = ? AND from_institution = ? AND status NOT IN ('draft', 'cancelled', 'declined') RETURNING version, status`,
			now.UnixMilli(), id, institution).Scan(&v, &status)
		if errors.Is(err, sql.ErrNoRows) {
			err = tx.QueryRowContext(ctx, `SELECT status FROM referrals WHERE pk = ? AND from_institution = ?`, id, institution).Scan(&status)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return renkei.Errorj(op, renkei.NotFound, "紹介 No. %d は見つかりません。", "there is no referral %d", id)
			case err != nil:
				return err
			case status == string(renkei.StatusDraft):
				return renkei.Errorj(op, renkei.Conflict, "この紹介はまだ下書きです。訂正版を作るのではなく、紹介状をそのまま編集してください。",
					"this referral is still a draft: edit the letter instead of writing a corrected version")
			case status == string(renkei.StatusCancelled):
				return renkei.Errorj(op, renkei.Conflict, "この紹介は取り消されたため、訂正版の紹介状は送れません。引き続き紹介が必要な場合は、新しい紹介状を作成してください。",
					"this referral was cancelled, so a corrected letter can no longer be sent; if the patient still needs a referral, write a new one")
			case status == string(renkei.StatusDeclined):
				return renkei.Errorj(op, renkei.Conflict, "この紹介は紹介先の施設からお断りを受けたため、訂正版の紹介状は送れません。引き続き紹介が必要な場合は、新しい紹介状を作成してください。",
					"this referral was declined by the receiving institution, so a corrected letter can no longer be sent; if the patient still needs a referral, write a new one")
			}
			return renkei.Errorj(op, renkei.Conflict, "この紹介(%[2]s)には訂正版の紹介状を送れません。", "this referral (%[1]s) takes no corrected letter",
				status, renkei.ReferralStatus(status).Japanese())
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO referral_letters (referral_pk, reply, version, body, written_by, written_at) VALUES (?, 0, ?, ?, ?, ?)`,
			id, v, letterJSON(l), by, now.UnixMilli()); err != nil {
			return err
		}
		return addReferralEvent(ctx, tx, id, renkei.ReferralEvent{Status: renkei.ReferralStatus(status), At: now, By: by, ByInst: institution,
			Note: fmt.Sprintf("version %d", v)})
	}, audit)
	return v, err
}

// ReferralGrantsDocument reports whether a referral sent to institution (and not cancelled or declined) carries the
// document: attachments travel with the letter, also to an institution that may not see the patient otherwise
// (a reverse referral to a 回復期 hospital).
func (db *DB) ReferralGrantsDocument(ctx context.Context, institution, doc int64) (bool, error) {
	var ok bool
	err := db.queryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM referrals WHERE to_institution = ? AND status NOT IN ('draft', 'cancelled', 'declined')
		AND ',' || documents || ',' LIKE ?)`, institution, fmt.Sprintf("%%,%d,%%", doc)).Scan(&ok)
	return ok, queryErr(err)
}
