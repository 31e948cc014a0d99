package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"renkei"
)

// Copying a region's index from SQLite to PostgreSQL (renkei admin migrate). Every table is copied as it is, primary
// keys included, in the order of its rowid and in batches: each batch's rows and the table's progress (the last
// rowid copied) are written in one PostgreSQL transaction, so a run stopped at any point (Ctrl-C, kill, power) and
// started again continues after the last committed batch, and never copies a row twice. The progress is the table
// migration_progress on the target; it also names the source, so that a target that holds another region's rows is
// refused rather than mixed.

// CopyProgress says how far a copy has come, for a progress line.
type CopyProgress struct {
	Table              string // the table being copied
	TablesDone, Tables int
	Rows, TotalRows    int64 // rows copied so far (this run and earlier runs) and rows in the source
}

// CopyOptions tune Copy.
type CopyOptions struct {
	Batch    int                // rows per transaction (default 1000)
	Progress func(CopyProgress) // called after every batch; may be nil
}

// TableCount is one table's row count in the source and in the target.
type TableCount struct {
	Table          string
	Source, Target int64
}

// table is one source table: its columns in order, and the tables its foreign keys point to.
type table struct {
	name    string
	columns []string
	parents []string
}

const createProgress = `CREATE TABLE IF NOT EXISTS migration_progress (
    name       TEXT PRIMARY KEY,
    last_rowid BIGINT NOT NULL DEFAULT 0,
    copied     BIGINT NOT NULL DEFAULT 0,
    done       INTEGER NOT NULL DEFAULT 0,
    note       TEXT NOT NULL DEFAULT ''
)`

// Copy copies every table of src, a SQLite index, into dst, a PostgreSQL index (both opened with Open, so both hold
// every migration), then moves dst's identity sequences past the copied keys. dst must be empty, or hold an earlier,
// interrupted Copy of the same source (recognised by the first event of its audit chain), which is then continued.
// The source must not change meanwhile (renkei serve stopped). Errors: Invalid for a wrong pair of databases or a
// target that holds other data; otherwise the database's error.
func Copy(ctx context.Context, dst, src *DB, opt CopyOptions) error {
	if src.dialect != sqlite || dst.dialect != postgres {
		return fmt.Errorf("copy the index: from SQLite to PostgreSQL only (got %s to %s)", src.dialect, dst.dialect)
	}
	if opt.Batch <= 0 {
		opt.Batch = 1000
	}
	tables, err := src.sourceTables(ctx)
	if err != nil {
		return err
	}
	types, err := dst.columnTypes(ctx)
	if err != nil {
		return err
	}
	for _, t := range tables {
		for _, c := range t.columns {
			if _, ok := types[t.name][c]; !ok {
				return fmt.Errorf("copy the index: column %s.%s is missing on PostgreSQL (the two schemas differ)", t.name, c)
			}
		}
	}
	if err := dst.claimTarget(ctx, src, tables); err != nil {
		return err
	}
	p := CopyProgress{Tables: len(tables)}
	for _, t := range tables {
		var n int64
		if err := src.read.QueryRowContext(ctx, `SELECT count(*) FROM "`+t.name+`"`).Scan(&n); err != nil {
			return fmt.Errorf("copy the index: count %s: %w", t.name, err)
		}
		p.TotalRows += n
		var copied int64
		if err := dst.read.QueryRowContext(ctx, `SELECT coalesce(sum(copied), 0) FROM migration_progress WHERE name = ?`, "table:"+t.name).Scan(&copied); err != nil {
			return fmt.Errorf("copy the index: progress of %s: %w", t.name, err)
		}
		p.Rows += copied
	}
	for _, t := range tables {
		p.Table = t.name
		if err := dst.copyTable(ctx, src, t, types[t.name], opt, &p); err != nil {
			return err
		}
		p.TablesDone++
		if opt.Progress != nil {
			opt.Progress(p)
		}
	}
	return dst.resetSequences(ctx, tables, types)
}

// seededTables are the tables whose rows the migrations themselves insert (audit_head's genesis, a version
// counter): a fresh target has them, and the source's rows replace them.
func seededTables() (map[string]bool, error) {
	ms, err := loadMigrations()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, m := range ms {
		for _, sub := range insertInto.FindAllStringSubmatch(m.postgres, -1) {
			out[sub[1]] = true
		}
	}
	return out, nil
}

var insertInto = regexp.MustCompile(`(?i)\bINSERT\s+INTO\s+"?(\w+)`)

// sourceID names a region's index by the hash of the first event of its audit chain, which no other region shares.
func (db *DB) sourceID(ctx context.Context) (string, error) {
	var h []byte
	err := db.read.QueryRowContext(ctx, `SELECT hash FROM audit_events ORDER BY seq LIMIT 1`).Scan(&h)
	if err == sql.ErrNoRows {
		return "region without audit events", nil
	}
	if err != nil {
		return "", fmt.Errorf("copy the index: the source's audit chain: %w", err)
	}
	return "audit chain " + hex.EncodeToString(h), nil
}

// claimTarget checks that dst is empty or holds a Copy of the same source, and on an empty one records the source
// and clears the rows the migrations inserted, in one transaction.
func (dst *DB) claimTarget(ctx context.Context, src *DB, tables []table) error {
	id, err := src.sourceID(ctx)
	if err != nil {
		return err
	}
	if _, err := dst.write.ExecContext(ctx, createProgress); err != nil {
		return fmt.Errorf("copy the index: progress table: %w", err)
	}
	var have string
	err = dst.read.QueryRowContext(ctx, `SELECT note FROM migration_progress WHERE name = 'source'`).Scan(&have)
	switch {
	case err == nil && have == id:
		return nil
	case err == nil:
		return fmt.Errorf("the target database holds a migration of another region (%s, not %s): give an empty database", have, id)
	case err != sql.ErrNoRows:
		return fmt.Errorf("copy the index: progress: %w", err)
	}
	seeded, err := seededTables()
	if err != nil {
		return err
	}
	for _, t := range tables {
		if seeded[t.name] {
			continue
		}
		var n int64
		if err := dst.read.QueryRowContext(ctx, `SELECT count(*) FROM "`+t.name+`"`).Scan(&n); err != nil {
			return fmt.Errorf("copy the index: count %s on the target: %w", t.name, err)
		}
		if n > 0 {
			return fmt.Errorf("the target database is not empty (table %s has %d rows) and holds no earlier migration of this region: give an empty database", t.name, n)
		}
	}
	tx, err := dst.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, t := range tables {
		if seeded[t.name] {
			if _, err := tx.ExecContext(ctx, `DELETE FROM "`+t.name+`"`); err != nil {
				return fmt.Errorf("copy the index: clear %s: %w", t.name, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO migration_progress (name, note) VALUES ('source', ?)`, id); err != nil {
		return fmt.Errorf("copy the index: progress: %w", err)
	}
	return tx.Commit()
}

// copyTable copies the rows of t after the last batch committed, a batch per transaction.
func (dst *DB) copyTable(ctx context.Context, src *DB, t table, types map[string]string, opt CopyOptions, p *CopyProgress) error {
	name := "table:" + t.name
	var last int64
	var done int
	err := dst.read.QueryRowContext(ctx, `SELECT last_rowid, done FROM migration_progress WHERE name = ?`, name).Scan(&last, &done)
	if err != nil && err != sql.ErrNoRows {
		return fmt.Errorf("copy the index: progress of %s: %w", t.name, err)
	}
	if done == 1 {
		return nil
	}
	quoted := make([]string, len(t.columns))
	for i, c := range t.columns {
		quoted[i] = `"` + c + `"`
	}
	cols := strings.Join(quoted, ", ")
	sel := `SELECT rowid, ` + cols + ` FROM "` + t.name + `" WHERE rowid > ? ORDER BY rowid LIMIT ?`
	// PostgreSQL takes at most 65535 parameters in one statement.
	perInsert := max(1, min(opt.Batch, 60000/len(t.columns)))
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.columns)), ", ") + ")"
	for {
		batch, lastRowid, err := src.readBatch(ctx, sel, last, opt.Batch, t, types)
		if err != nil {
			return err
		}
		tx, err := dst.write.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("copy the index: %w", err)
		}
		for i := 0; i < len(batch); i += perInsert {
			part := batch[i:min(i+perInsert, len(batch))]
			args := make([]any, 0, len(part)*len(t.columns))
			for _, r := range part {
				args = append(args, r...)
			}
			q := `INSERT INTO "` + t.name + `" (` + cols + `) VALUES ` + strings.TrimSuffix(strings.Repeat(row+", ", len(part)), ", ")
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				tx.Rollback()
				return fmt.Errorf("copy the index: table %s after rowid %d: %w", t.name, last, err)
			}
		}
		finished := 0
		if len(batch) < opt.Batch {
			finished = 1
		}
		if len(batch) > 0 {
			last = lastRowid
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO migration_progress (name, last_rowid, copied, done) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET last_rowid = excluded.last_rowid, copied = migration_progress.copied + excluded.copied, done = excluded.done`,
			name, last, int64(len(batch)), finished); err != nil {
			tx.Rollback()
			return fmt.Errorf("copy the index: progress of %s: %w", t.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("copy the index: table %s: %w", t.name, err)
		}
		p.Rows += int64(len(batch))
		if finished == 1 {
			return nil
		}
		if opt.Progress != nil {
			opt.Progress(*p)
		}
	}
}

// readBatch reads up to n rows of t after rowid, with each value converted to what the PostgreSQL column takes.
func (src *DB) readBatch(ctx context.Context, sel string, after int64, n int, t table, types map[string]string) ([][]any, int64, error) {
	rows, err := src.read.QueryContext(ctx, sel, after, n)
	if err != nil {
		return nil, 0, fmt.Errorf("copy the index: read %s: %w", t.name, err)
	}
	defer rows.Close()
	var out [][]any
	var last int64
	for rows.Next() {
		vals := make([]any, len(t.columns)+1)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, 0, fmt.Errorf("copy the index: read %s: %w", t.name, err)
		}
		last = vals[0].(int64)
		r := vals[1:]
		for i, c := range t.columns {
			// SQLite keeps a value's own type whatever the column says; PostgreSQL wants the column's.
			switch v := r[i].(type) {
			case string:
				if types[c] == "bytea" {
					r[i] = []byte(v)
				}
			case []byte:
				if v == nil && types[c] == "bytea" {
					r[i] = []byte{} // an empty BLOB, not NULL
				} else if types[c] != "bytea" {
					r[i] = string(v)
				}
			}
		}
		out = append(out, r)
	}
	return out, last, rows.Err()
}

// resetSequences moves every identity column's sequence past the largest key copied, so that the next row the
// server inserts does not collide with a copied one.
func (dst *DB) resetSequences(ctx context.Context, tables []table, types map[string]map[string]string) error {
	rows, err := dst.read.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() AND is_identity = 'YES'`)
	if err != nil {
		return fmt.Errorf("copy the index: identity columns: %w", err)
	}
	type ident struct{ table, column string }
	var ids []ident
	for rows.Next() {
		var i ident
		if err := rows.Scan(&i.table, &i.column); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, i)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	for _, i := range ids {
		if !slices.ContainsFunc(tables, func(t table) bool { return t.name == i.table }) {
			continue
		}
		q := fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('"%s"', '%s'), max("%s")) FROM "%s" HAVING max("%s") IS NOT NULL`, i.table, i.column, i.column, i.table, i.column)
		if _, err := dst.write.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("copy the index: sequence of %s.%s: %w", i.table, i.column, err)
		}
	}
	return nil
}

// CompareTables counts the rows of every table of src (SQLite) in src and in dst, in the order Copy copies them.
func CompareTables(ctx context.Context, dst, src *DB) ([]TableCount, error) {
	tables, err := src.sourceTables(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]TableCount, 0, len(tables))
	for _, t := range tables {
		c := TableCount{Table: t.name}
		if err := src.read.QueryRowContext(ctx, `SELECT count(*) FROM "`+t.name+`"`).Scan(&c.Source); err != nil {
			return nil, fmt.Errorf("count %s on the source: %w", t.name, err)
		}
		if err := dst.read.QueryRowContext(ctx, `SELECT count(*) FROM "`+t.name+`"`).Scan(&c.Target); err != nil {
			return nil, fmt.Errorf("count %s on the target: %w", t.name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// FlaggedText lists up to n instances whose text could not be decoded with their declared (or their sender's)
// character set at ingest, kept as received: where a name may show garbled (a sender to register with --charset).
func (db *DB) FlaggedText(ctx context.Context, n int) ([]renkei.InstanceRef, int, error) {
	var total int
	if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM instances WHERE charset_flag = 1 AND deleted_at IS NULL`).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("flagged text: %w", err)
	}
	rows, err := db.read.QueryContext(ctx, `SELECT s.study_uid, r.series_uid, i.sop_uid, i.source FROM instances i JOIN series r ON r.pk = i.series_pk
		JOIN studies s ON s.pk = r.study_pk WHERE i.charset_flag = 1 AND i.deleted_at IS NULL ORDER BY i.pk DESC LIMIT ?`, n)
	if err != nil {
		return nil, 0, fmt.Errorf("flagged text: %w", err)
	}
	defer rows.Close()
	var out []renkei.InstanceRef
	for rows.Next() {
		var r renkei.InstanceRef
		if err := rows.Scan(&r.Study, &r.Series, &r.Instance, &r.Source); err != nil {
			return nil, 0, fmt.Errorf("flagged text: %w", err)
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}

// BlobKeys returns, in ascending order, up to n keys of blobs the index refers to (instances, consent documents and
// the documents, letters and reports named in blob_refs) that sort after after.
func (db *DB) BlobKeys(ctx context.Context, after string, n int) ([]string, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT k FROM (SELECT blob_key AS k FROM instances UNION SELECT document_key FROM consents WHERE document_key <> '' UNION SELECT blob_key FROM blob_refs) AS keys WHERE k > ? ORDER BY k LIMIT ?`, after, n)
	if err != nil {
		return nil, fmt.Errorf("blob keys: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("blob keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// TrashedOnly reports whether the blob is named by instances in the trash alone (no live instance, consent document
// or kept blob), and the latest time one of them went to the trash: a blob that a purge may have removed since.
func (db *DB) TrashedOnly(ctx context.Context, key string) (time.Time, bool, error) {
	var live int
	var latest sql.NullInt64
	err := db.read.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM instances WHERE blob_key = ? AND deleted_at IS NULL)
		+ (SELECT count(*) FROM consents WHERE document_key = ?) + (SELECT count(*) FROM blob_refs WHERE blob_key = ?),
		(SELECT max(deleted_at) FROM instances WHERE blob_key = ?)`, key, key, key, key).Scan(&live, &latest)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("blob %s in the index: %w", key, err)
	}
	return time.UnixMilli(latest.Int64), live == 0 && latest.Valid, nil
}

// MigrationCursor returns the position a copy recorded under name on this (target) database: a cursor, the items
// copied and whether that part is done; all zero when nothing was recorded.
func (db *DB) MigrationCursor(ctx context.Context, name string) (cursor string, copied int64, done bool, err error) {
	if _, err := db.write.ExecContext(ctx, createProgress); err != nil {
		return "", 0, false, fmt.Errorf("migration progress: %w", err)
	}
	var d int
	err = db.read.QueryRowContext(ctx, `SELECT note, copied, done FROM migration_progress WHERE name = ?`, name).Scan(&cursor, &copied, &d)
	if err == sql.ErrNoRows {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("migration progress: %w", err)
	}
	return cursor, copied, d == 1, nil
}

// SetMigrationCursor records the position of a copy under name (see MigrationCursor).
func (db *DB) SetMigrationCursor(ctx context.Context, name, cursor string, copied int64, done bool) error {
	d := 0
	if done {
		d = 1
	}
	_, err := db.write.ExecContext(ctx, `INSERT INTO migration_progress (name, note, copied, done) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET note = excluded.note, copied = excluded.copied, done = excluded.done`, name, cursor, copied, d)
	if err != nil {
		return fmt.Errorf("migration progress: %w", err)
	}
	return nil
}

// sourceTables lists the tables of a SQLite index in an order where every table comes after the tables its foreign
// keys refer to.
func (db *DB) sourceTables(ctx context.Context) ([]table, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("copy the index: list tables: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	byName := map[string]*table{}
	for _, n := range names {
		t := &table{name: n}
		cols, err := db.read.QueryContext(ctx, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, n)
		if err != nil {
			return nil, fmt.Errorf("copy the index: columns of %s: %w", n, err)
		}
		for cols.Next() {
			var c string
			if err := cols.Scan(&c); err != nil {
				cols.Close()
				return nil, err
			}
			t.columns = append(t.columns, c)
		}
		if err := cols.Close(); err != nil {
			return nil, err
		}
		fks, err := db.read.QueryContext(ctx, `SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)`, n)
		if err != nil {
			return nil, fmt.Errorf("copy the index: foreign keys of %s: %w", n, err)
		}
		for fks.Next() {
			var p string
			if err := fks.Scan(&p); err != nil {
				fks.Close()
				return nil, err
			}
			if p != n {
				t.parents = append(t.parents, p)
			}
		}
		if err := fks.Close(); err != nil {
			return nil, err
		}
		byName[n] = t
	}
	var out []table
	state := map[string]int{} // 1 visiting, 2 placed
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("copy the index: the foreign keys of %s form a cycle", n)
		case 2:
			return nil
		}
		t := byName[n]
		if t == nil {
			return nil
		}
		state[n] = 1
		for _, p := range t.parents {
			if err := visit(p); err != nil {
				return err
			}
		}
		state[n] = 2
		out = append(out, *t)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// columnTypes maps table and column to PostgreSQL's data type name, for the tables of the current schema.
func (db *DB) columnTypes(ctx context.Context) (map[string]map[string]string, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema()`)
	if err != nil {
		return nil, fmt.Errorf("copy the index: columns on PostgreSQL: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	for rows.Next() {
		var t, c, typ string
		if err := rows.Scan(&t, &c, &typ); err != nil {
			return nil, err
		}
		if out[t] == nil {
			out[t] = map[string]string{}
		}
		out[t][c] = typ
	}
	return out, rows.Err()
}
