package disk

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openGroup returns the shared flush of the file system that holds root: syncfs(2), then an fsync of root. It
// returns nil (each Commit then syncs its own file and folder) on Linux before 5.8, whose syncfs does not report
// write-back errors.
//
// The fsync is needed on ext4 without a journal: syncfs asks the device to flush its cache (ext4_sync_fs) before it
// writes the inode tables and folder blocks (sync_blockdev, the last step of sync_filesystem in fs/sync.c), so those
// could stay in the device's volatile cache; an fsync of any file on ext4 ends with a cache flush of its own.
func openGroup(root string) (*group, *os.File, error) {
	if !syncfsReportsErrors() {
		return nil, nil, nil
	}
	// Kept open as long as the store: syncfs reports the errors met since the previous call on the same open file.
	d, err := os.Open(root)
	if err != nil {
		return nil, nil, err
	}
	fd := int(d.Fd())
	return newGroup(func() error {
		if err := unix.Syncfs(fd); err != nil {
			return fmt.Errorf("syncfs: %w", err)
		}
		if err := unix.Fsync(fd); err != nil {
			return fmt.Errorf("fsync blob folder: %w", err)
		}
		return nil
	}), d, nil
}

// syncfsReportsErrors tells whether the kernel is Linux 5.8 or later (commit 735e4ae5ba28, "vfs: track per-sb
// writeback errors and report them to syncfs").
func syncfsReportsErrors() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 8
}

// startWriteback starts writing a range of f to the disk without waiting (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE: no metadata, no cache flush; the blob's Commit still makes it durable). An error is left for
// that Commit's sync to meet.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
