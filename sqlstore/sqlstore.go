// Package sqlstore is renkei's index: the SQL tables behind the archive, identity, shares, the audit chain,
// referrals, the clinical record and the directory. It runs on an embedded SQLite file (modernc.org/sqlite, no cgo)
// or on PostgreSQL (pgx through database/sql), with one schema and one body of SQL (see dialect.go). Migrations
// are numbered .sql files applied in order at Open.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// pgFunctions defines, on PostgreSQL, the SQLite built-ins the queries use (see dialect.go).
//
//go:embed postgres.sql
var pgFunctions string

// DB is an open index. On SQLite, writes go through one connection (SQLite allows one writer) and reads use a pool
// of read-only connections (WAL lets them run beside the writer); on PostgreSQL both are one pool, and several
// nodes may write at once. Instances and audit events are grouped into shared transactions by the committer.
type DB struct {
	write   *sql.DB
	read    *sql.DB
	dialect dialect
	Now     func() time.Time
	// AuditKey signs checkpoints of the audit chain; nil writes none (tests of the bare index).
	AuditKey *AuditKey

	batches chan *insertReq
	done    chan struct{}

	batch        *batchStmts   // the statements of the batch being committed
	reads        stmtCache     // prepared read statements
	writes       stmtCache     // prepared write statements, promoted after their first transaction
	lastFullSync time.Time     // when the committer last committed with synchronous=FULL (committer goroutine only)
	journal      *auditJournal // the audit journal of reads (journal.go); nil on PostgreSQL and when another process owns it
	trips        *atomic.Int64 // round trips to PostgreSQL; nil on SQLite
	rows         rowCache      // rows recent instances went into (committer goroutine only)
	noBrowse     bool          // tests: answer study lists with the scope's subqueries alone, to compare with browseStudies

	closeMu sync.RWMutex // Close against the senders to the committer (submit)
	closed  bool
}

// RoundTrips returns how many statements (with each transaction's BEGIN and COMMIT) this handle has sent to
// PostgreSQL since it opened: each is a round trip on the wire. On SQLite, where a statement is a function call, 0.
func (db *DB) RoundTrips() int64 {
	if db.trips == nil {
		return 0
	}
	return db.trips.Load()
}

// Open opens the index and applies pending migrations. target is a postgres:// (or postgresql://) URL, as pgx
// reads it (e.g. postgres://renkei@db.example.jp:5432/renkei?sslmode=verify-full), or else the path of the SQLite
// file, created if needed. A PostgreSQL database must use collation C (see checkCollation).
func Open(ctx context.Context, target string) (*DB, error) {
	if strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://") {
		return openPostgres(ctx, target)
	}
	return openSQLite(ctx, target)
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
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
	if db.journal, err = db.openJournal(ctx, path); err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	go db.committer()
	return db, nil
}

// pgPoolSize bounds the connections one node opens to PostgreSQL.
const pgPoolSize = 16

func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	where := fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database) // no password in errors
	trips := new(atomic.Int64)
	pool := sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg), trips})
	pool.SetMaxOpenConns(pgPoolSize)
	pool.SetMaxIdleConns(pgPoolSize)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open index %s: %w", where, err)
	}
	db := &DB{write: pool, read: pool, dialect: postgres, trips: trips, Now: time.Now, batches: make(chan *insertReq, 256), done: make(chan struct{})}
	if err := db.checkCollation(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open index %s: %w", where, err)
	}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open index %s: %w", where, err)
	}
	go db.committer()
	return db, nil
}

// checkCollation refuses a PostgreSQL database whose text does not sort as bytes (collation C, or C.UTF-8). The
// index compares dates, times and UIDs as strings and turns a name's prefix into a range (prefix ≤ key <
// prefix+U+10FFFF), as SQLite does; a language's collation (en_US, ja_JP) orders punctuation and case otherwise,
// and such searches would silently miss rows.
func (db *DB) checkCollation(ctx context.Context) error {
	var collate, enc string
	if err := db.read.QueryRowContext(ctx, `SELECT datcollate, pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()`).Scan(&collate, &enc); err != nil {
		return err
	}
	if enc != "UTF8" || (collate != "C" && collate != "POSIX" && !strings.HasPrefix(collate, "C.")) {
		return fmt.Errorf("the database has encoding %s and collation %s; renkei needs UTF8 and C: CREATE DATABASE renkei ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0", enc, collate)
	}
	return nil
}

// Ping checks that the index answers a query (a readiness check: on PostgreSQL, that the server is reachable).
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// QueueDepth is how many writes wait for the committer (instances and audit events not yet in a transaction).
func (db *DB) QueueDepth() int { return len(db.batches) }

// Close stops the committer and closes the connections.
func (db *DB) Close() error {
	// Senders hold the read lock while they queue (the committer still takes them); after this none can send.
	db.closeMu.Lock()
	if db.closed {
		db.closeMu.Unlock()
		return nil
	}
	db.closed = true
	db.closeMu.Unlock()
	close(db.batches)
	<-db.done
	db.reads.closeAll()
	db.writes.closeAll()
	err := db.write.Close()
	if db.read != db.write {
		if rerr := db.read.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// migration is one numbered step of the schema: the SQLite file, and on PostgreSQL its NNNN_name.postgres.sql if
// there is one, else the SQLite file with its types mapped (pgDDL).
type migration struct {
	version  int
	name     string
	sqlite   string
	postgres string
}

func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	byVersion := map[int]*migration{}
	var out []*migration
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		var version int
		if _, err := fmt.Sscanf(base, "%d_", &version); err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number", name)
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return nil, err
		}
		m := byVersion[version]
		if m == nil {
			m = &migration{version: version}
			byVersion[version] = m
			out = append(out, m)
		}
		if stem, ok := strings.CutSuffix(base, ".postgres.sql"); ok {
			if m.name != "" && m.name != stem {
				return nil, fmt.Errorf("migrations %s and %s have the same number", m.name, stem)
			}
			m.name, m.postgres = stem, string(body)
			continue
		}
		stem := strings.TrimSuffix(base, ".sql")
		if m.sqlite != "" || (m.name != "" && m.name != stem) {
			return nil, fmt.Errorf("migrations %s and %s have the same number", m.name, stem)
		}
		m.name, m.sqlite = stem, string(body)
	}
	res := make([]migration, 0, len(out))
	for _, m := range out {
		if m.sqlite == "" {
			return nil, fmt.Errorf("migration %s.postgres.sql has no SQLite file beside it", m.name)
		}
		if m.postgres == "" {
			m.postgres = pgDDL(m.sqlite)
		}
		res = append(res, *m)
	}
	sort.Slice(res, func(i, j int) bool { return res[i].version < res[j].version })
	return res, nil
}

// ErrNewerSchema is returned by Open for an index that a newer version of renkei has migrated.
var ErrNewerSchema = errors.New("the index was upgraded by a newer renkei")

func (db *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	// On PostgreSQL the migrations run on one connection holding an advisory lock: nodes started together wait for
	// the first, then find its migrations applied.
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	create := `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`
	if db.dialect == postgres {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?)`, migrateLockKey); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(?)`, migrateLockKey)
		create = pgDDL(create)
	}
	if _, err := conn.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if db.dialect == postgres {
		// Replaced at every start, under the same lock, so that a newer renkei's definitions win.
		if _, err := conn.ExecContext(ctx, pgFunctions); err != nil {
			return fmt.Errorf("migrate: PostgreSQL functions: %w", err)
		}
	}
	// A database that a newer renkei has migrated is refused, before anything is written: this binary would not
	// keep the newer tables up to date (the study list's grants, for one), and another node's reads of them would
	// then be wrong. Upgrades of several nodes stop all, start the new version, then the rest (docs/deploy.md).
	var newest sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if known := ms[len(ms)-1].version; newest.Valid && newest.Int64 > int64(known) {
		return fmt.Errorf("%w: the index has migration %04d, and this renkei knows migrations up to %04d only; "+
			"run the renkei version that upgraded it (or a newer one), never an older one on an upgraded index",
			ErrNewerSchema, newest.Int64, known)
	}
	for _, m := range ms {
		var n int
		if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if n > 0 {
			continue
		}
		body := m.sqlite
		if db.dialect == postgres {
			body = m.postgres
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, body); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s (%s): %w", m.name, db.dialect, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, m.version, time.Now().UnixMilli()); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
	}
	return nil
}
