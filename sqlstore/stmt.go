package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// Prepared statements. modernc's SQLite parses SQL in Go, and parsing cost as much as running the short queries of
// a QIDO-RS request or an audit append; so each statement is prepared once and reused. Reads prepare on the read
// pool (each connection keeps its own copy). Writes cannot prepare on the one write connection while a transaction
// holds it, so a write statement is prepared inside its first transaction and, once that transaction has ended,
// promoted to a database-level statement that later transactions reuse with Tx.StmtContext.

// maxCachedStmts bounds the caches: QIDO-RS builds its SQL from the attributes asked for, so the set of texts is
// finite but large; beyond the bound statements are prepared per use.
const maxCachedStmts = 4000

type stmtCache struct {
	mu      sync.Mutex
	stmts   map[string]*sql.Stmt
	pending map[string]bool // write statements waiting to be promoted
}

func (c *stmtCache) get(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stmts[q]
}

func (c *stmtCache) put(q string, st *sql.Stmt) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stmts == nil {
		c.stmts = map[string]*sql.Stmt{}
	}
	if _, ok := c.stmts[q]; ok || len(c.stmts) >= maxCachedStmts {
		return false
	}
	c.stmts[q] = st
	return true
}

func (c *stmtCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = nil
}

// readStmt returns the prepared read statement for q, preparing it the first time.
func (db *DB) readStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st := db.reads.get(q); st != nil {
		return st, nil
	}
	st, err := db.read.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if !db.reads.put(q, st) {
		// Another goroutine cached it first, or the cache is full: this one is used once and closed by the caller's
		// result (database/sql closes a statement's connection copies when the statement closes).
		if cached := db.reads.get(q); cached != nil {
			st.Close()
			return cached, nil
		}
		return st, nil
	}
	return st, nil
}

// queryContext is db.read.QueryContext with a prepared statement. On PostgreSQL pgx prepares and caches each
// statement per connection by itself.
func (db *DB) queryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if db.dialect == postgres {
		return db.read.QueryContext(ctx, q, args...)
	}
	st, err := db.readStmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// queryRowContext is db.read.QueryRowContext with a prepared statement.
func (db *DB) queryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if db.dialect == postgres {
		return db.read.QueryRowContext(ctx, q, args...)
	}
	st, err := db.readStmt(ctx, q)
	if err != nil {
		return db.read.QueryRowContext(ctx, q, args...) // reports the same preparation error through Scan
	}
	return st.QueryRowContext(ctx, args...)
}

// txStmt returns q prepared for tx: the promoted database-level statement bound to tx, or a statement prepared in
// tx (and queued for promotion). On PostgreSQL it returns nil: pgx prepares and caches each statement per
// connection, and a statement prepared in tx would be deallocated (a round trip) when tx ends; callers then run q
// on tx directly (txExecOn, txQueryRowOn).
func (db *DB) txStmt(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	if db.dialect == postgres {
		return nil, nil
	}
	if st := db.writes.get(q); st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	st, err := tx.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	db.writes.mu.Lock()
	if db.writes.pending == nil {
		db.writes.pending = map[string]bool{}
	}
	db.writes.pending[q] = true
	db.writes.mu.Unlock()
	return st, nil
}

// promote prepares the queued write statements on the write connection. It must run outside any transaction of
// the caller (the committer calls it between batches).
func (db *DB) promote(ctx context.Context) {
	db.writes.mu.Lock()
	pending := db.writes.pending
	db.writes.pending = nil
	db.writes.mu.Unlock()
	for q := range pending {
		if db.writes.get(q) != nil {
			continue
		}
		st, err := db.write.PrepareContext(ctx, q)
		if err != nil {
			continue // it is prepared per transaction, as before
		}
		if !db.writes.put(q, st) {
			st.Close()
		}
	}
}

// txExecOn runs q in tx, through its prepared statement st if there is one.
func txExecOn(ctx context.Context, tx *sql.Tx, st *sql.Stmt, q string, args ...any) (sql.Result, error) {
	if st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}

// txQueryRowOn runs q in tx, through its prepared statement st if there is one.
func txQueryRowOn(ctx context.Context, tx *sql.Tx, st *sql.Stmt, q string, args ...any) *sql.Row {
	if st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, q, args...)
}
