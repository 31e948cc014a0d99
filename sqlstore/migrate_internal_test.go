package sqlstore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"renkei/sqlstore/pgtest"
)

// TestNewerSchemaRefused: an index that a newer renkei migrated (a version this binary does not know) is refused at
// Open, on both databases, with a message that says what to run; the index is left as it was.
func TestNewerSchemaRefused(t *testing.T) {
	for _, b := range []struct {
		name   string
		target func(t testing.TB) string
	}{
		{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "index.db") }},
		{"postgres", pgtest.URL},
	} {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			target := b.target(t)
			db, err := Open(ctx, target)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.write.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db, err = Open(ctx, target)
			if err == nil {
				db.Close()
				t.Fatal("an index migrated by a newer renkei was opened")
			}
			if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), "9999") {
				t.Errorf("error %q: want ErrNewerSchema naming migration 9999", err)
			}
		})
	}
}
