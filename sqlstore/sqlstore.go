// Package sqlstore is renkei's index: the SQL tables behind the archive (and later identity, shares, audit,
// referrals…). It runs on an embedded SQLite file (modernc.org/sqlite, no cgo); PostgreSQL follows with the same
// schema. Migrations are numbered .sql files applied in order at Open.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is an open index. Writes go through one connection (SQLite allows one writer) and are grouped into shared
// transactions by the committer; reads use a pool of read-only connections (WAL lets them run beside the writer).
type DB struct {
	write *sql.DB
	read  *sql.DB
	Now   func() time.Time
	// AuditKey signs checkpoints of the audit chain; nil writes none (tests of the bare index).
	AuditKey *AuditKey

	batches chan *insertReq
	done    chan struct{}

	batch        *batchStmts // the statements of the batch being committed
	reads        stmtCache   // prepared read statements
	writes       stmtCache   // prepared write statements, promoted after their first transaction
	lastFullSync time.Time   // when the committer last committed with synchronous=FULL (committer goroutine only)
}

// Open opens (creating if needed) the SQLite index at path and applies pending migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)", "cache_size(-65536)"} {
		q.Add("_pragma", p)
	}
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	db := &DB{write: w, read: r, Now: time.Now, batches: make(chan *insertReq, 256), done: make(chan struct{})}
	if err := db.migrate(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	go db.committer()
	return db, nil
}

// Close stops the committer and closes the connections.
func (db *DB) Close() error {
	close(db.batches)
	<-db.done
	db.reads.closeAll()
	db.writes.closeAll()
	err := db.write.Close()
	if rerr := db.read.Close(); err == nil {
		err = rerr
	}
	return err
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		var version int
		if _, err := fmt.Sscanf(strings.TrimPrefix(name, "migrations/"), "%d_", &version); err != nil {
			return fmt.Errorf("migration %s: name must start with a number", name)
		}
		var n int
		if err := db.write.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := db.write.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, time.Now().UnixMilli()); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
	}
	return nil
}
