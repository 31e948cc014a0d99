// Package blob declares the store that holds the bytes of every DICOM object (and later documents), keyed by the
// SHA-256 of their content so that a duplicate costs nothing and a key never comes from a UID or a file name.
// Implementations: disk (the embedded default), and later S3-compatible object storage.
package blob

import (
	"context"
	"io"
	"time"
)

// Store keeps immutable blobs under the hex SHA-256 of their bytes.
type Store interface {
	// Create starts a new blob. Bytes written to it become durable and visible only when Commit returns.
	Create(ctx context.Context) (Writer, error)
	// Open returns the blob with the given key; a missing key is a renkei.NotFound error.
	Open(ctx context.Context, key string) (Reader, error)
	// Delete removes a blob; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Lister is implemented by stores that can enumerate their blobs (for sweeping blobs no index row refers to).
type Lister interface {
	// List calls fn for every blob with its key and the time it was written, until fn returns an error.
	List(ctx context.Context, fn func(key string, written time.Time) error) error
}

// Writer receives the bytes of one new blob.
type Writer interface {
	io.Writer
	// Commit makes the blob durable (it survives a crash or power loss once Commit returns) and returns its key
	// (lowercase hex SHA-256) and size. Committing bytes that are already stored is a cheap success.
	Commit(ctx context.Context) (key string, size int64, err error)
	// Abort discards the bytes written so far. It is safe to call after Commit (then it does nothing).
	Abort() error
}

// Reader reads one stored blob with random access.
type Reader interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
	Size() int64
}
