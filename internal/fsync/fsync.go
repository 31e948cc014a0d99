// Package fsync makes a folder's entries durable: after a file is created, renamed or removed in it, the folder
// itself must be synced for the change to survive a power loss (a file's own fsync covers its contents only).
package fsync

import (
	"fmt"
	"os"
)

// Dir fsyncs the folder (or file) at path.
func Dir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}
