package sqlstore

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestNewerSchemaRefused: an index that a newer renkei migrated (a version this binary does not know) is refused at
// Open, on both databases, with a message that says what to run; the index is left as it was.
func TestNewerSchemaRefused(t *testing.T) {
	eachInternalTarget(t, func(t *testing.T, target string) {
		ctx := context.Background()
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
