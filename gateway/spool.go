// Package gateway is renkei's store-and-forward sender inside a hospital: a DIMSE Storage SCP for the local
// modalities writes each instance to a durable spool on disk, and an uploader sends the spool to renkei with STOW-RS,
// removing an instance only after renkei acknowledged it. Nothing the modality was told is stored is lost when the
// line, renkei or the gateway's own power fails.
package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"renkei/dicom"
	"renkei/internal/fsync"
)

// errUnreadable marks a spooled file that does not parse as DICOM any more.
var errUnreadable = errors.New("not readable DICOM")

// ErrFull is returned by Put when the spool's file system has less free space than the reserve.
var ErrFull = errors.New("the spool's disk is below its free-space reserve")

// Entry describes one spooled instance: the sidecar of its file.
type Entry struct {
	Key               string    `json:"-"` // SHA-256 of the file, hex: its name in the spool
	StudyInstanceUID  string    `json:"studyInstanceUID"`
	SeriesInstanceUID string    `json:"seriesInstanceUID,omitempty"`
	SOPInstanceUID    string    `json:"sopInstanceUID"`
	SOPClassUID       string    `json:"sopClassUID,omitempty"`
	CallingAETitle    string    `json:"callingAETitle,omitempty"`
	Received          time.Time `json:"received"`
	Size              int64     `json:"size"`
	Attempts          int       `json:"attempts,omitempty"`
	LastError         string    `json:"lastError,omitempty"`
	LastAttempt       time.Time `json:"lastAttempt,omitzero"`
	// NextAttempt is when the uploader may send the instance again after renkei refused it.
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
	// Refusals counts renkei's refusals since the instance was received or queued again (not the line's failures).
	Refusals int `json:"refusals,omitempty"`
	// Parked is when the uploader stopped sending the instance because renkei refused it for good (park.go), and
	// ParkedKind why (Parked… constants; LastError holds renkei's words). Zero while it is in the queue.
	Parked     time.Time `json:"parked,omitzero"`
	ParkedKind string    `json:"parkedKind,omitempty"`
}

// refused reports whether renkei refused the instance last time (not the line or a server failure).
func (e Entry) refused() bool { return !e.NextAttempt.IsZero() || !e.Parked.IsZero() }

// Spool is a directory of instances waiting to be sent: objects/<sha256>.dcm, some with a sidecar
// objects/<sha256>.json. A file is written to tmp/, fsynced, renamed into objects/ and the directory fsynced before
// Put returns: two flushes per instance. Put writes no sidecar, and no sidecar is flushed on its own: what Put knows
// can be read again from the file (UIDs, the calling AE from SourceApplicationEntityTitle, size, time), so the
// sidecar holds only what the uploader adds (attempts, errors), and a file without one, or with one cut short by a
// power failure, is described from its header when the spool is opened or listed. The spool is just the directory: a new
// Spool on the same directory after a restart or power loss sees exactly what was acknowledged.
type Spool struct {
	Dir string
	// Reserve is the free space, in bytes, Put keeps on the file system: below it Put fails with ErrFull.
	Reserve int64
	// FreeSpace reports the bytes available to us on the spool's file system. Nil means statfs(2).
	FreeSpace func(dir string) (int64, error)
	Now       func() time.Time

	mu sync.Mutex // serialises sidecar rewrites
	// kmu makes putting a file, with its sidecar and index entry, and removing one atomic with respect to each
	// other: a modality sending the same bytes again (the same key) while the uploader removes the acknowledged copy
	// must leave either both or neither, never an entry without its file (which fails every request holding it) or a
	// file without its entry (never sent until a restart).
	kmu sync.Mutex

	// index holds the entries in memory once Open read them, so that the uploader's look at the queue after each
	// arrival or request, and the status every few seconds, do not read every sidecar again (a backlog after an
	// outage can be 100,000 instances). Nil (a Spool not made by Open, as `renkei gateway status` reads one):
	// List reads the folder.
	imu   sync.Mutex
	index map[string]Entry

	// Group commit of objects/: concurrent Puts (several associations) share one directory fsync.
	smu            sync.Mutex
	scond          *sync.Cond
	wanted, synced uint64
	syncing        bool
	lastSyncErr    error
}

// Open makes the spool's directories and removes what a crash left half-written: temporary files and sidecars
// without their file.
func Open(dir string, reserve int64) (*Spool, error) {
	s := &Spool{Dir: dir, Reserve: reserve, Now: time.Now}
	for _, d := range []string{s.objects(), s.tmp()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	tmps, err := os.ReadDir(s.tmp())
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, e := range tmps {
		os.Remove(filepath.Join(s.tmp(), e.Name()))
	}
	objs, err := os.ReadDir(s.objects())
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, e := range objs {
		name := e.Name()
		if key, ok := strings.CutSuffix(name, ".json"); ok {
			if _, err := os.Stat(s.path(key)); errors.Is(err, os.ErrNotExist) {
				os.Remove(filepath.Join(s.objects(), name))
			}
		}
	}
	// Files whose sidecar a power failure lost or cut short get it back from their own header; a file that cannot
	// be read any more goes to damaged/, for a person to look at, rather than keep the gateway from starting.
	entries, err := s.scan(true)
	if err != nil {
		return nil, err
	}
	s.index = make(map[string]Entry, len(entries))
	for _, e := range entries {
		s.index[e.Key] = e
	}
	return s, nil
}

// rebuild makes the entry of a spooled file from the file itself, for a file that has no sidecar (Put writes none)
// or one cut short by a crash; with write it also writes the sidecar (Open does, so that the next start and the
// status command need not read the file again; a read-only look at another process's spool does not).
func (s *Spool) rebuild(key string, write bool) (Entry, error) {
	f, err := os.Open(s.path(key))
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Entry{}, err
	}
	opt := dicom.DefaultReadOptions
	opt.StopAtPixelData = true
	df, err := dicom.Parse(f, opt)
	if err != nil {
		return Entry{}, fmt.Errorf("spool: %s cannot be read to rebuild its sidecar: %w: %w", key, errUnreadable, err)
	}
	e := Entry{Key: key, StudyInstanceUID: df.DataSet.String(dicom.StudyInstanceUID), SeriesInstanceUID: df.DataSet.String(dicom.SeriesInstanceUID),
		SOPInstanceUID: df.DataSet.String(dicom.SOPInstanceUID), SOPClassUID: df.DataSet.String(dicom.SOPClassUID),
		CallingAETitle: df.Meta.String(dicom.SourceApplicationEntityTitle), Received: st.ModTime(), Size: st.Size()}
	if write {
		if err := s.writeSidecar(e, false); err != nil {
			return Entry{}, err
		}
	}
	return e, nil
}

// syncObjects makes the renames and removals done in objects/ so far durable. Callers that arrive while a flush
// runs wait for the next one, which covers all of them: one flush per group, not per instance.
func (s *Spool) syncObjects() error {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.scond == nil {
		s.scond = sync.NewCond(&s.smu)
	}
	s.wanted++
	mine := s.wanted
	for s.synced < mine {
		if s.syncing {
			s.scond.Wait()
			continue
		}
		s.syncing = true
		target := s.wanted // everyone who asked so far changed the directory before asking
		s.smu.Unlock()
		err := fsync.Dir(s.objects())
		s.smu.Lock()
		s.syncing, s.synced, s.lastSyncErr = false, target, err
		s.scond.Broadcast()
	}
	return s.lastSyncErr
}

func (s *Spool) objects() string         { return filepath.Join(s.Dir, "objects") }
func (s *Spool) tmp() string             { return filepath.Join(s.Dir, "tmp") }
func (s *Spool) path(key string) string  { return filepath.Join(s.objects(), key+".dcm") }
func (s *Spool) jpath(key string) string { return filepath.Join(s.objects(), key+".json") }

func (s *Spool) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// Free returns the bytes available on the spool's file system.
func (s *Spool) Free() (int64, error) {
	if s.FreeSpace != nil {
		return s.FreeSpace(s.Dir)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.Dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", s.Dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// BelowReserve reports whether the free space is below the reserve (or cannot be read).
func (s *Spool) BelowReserve() bool {
	free, err := s.Free()
	return err != nil || free < s.Reserve
}

// Put writes a Part 10 file from r into the spool durably and returns its entry. e gives the calling AE; the UIDs are
// read from the file's header. It fails with ErrFull below the reserve (also when the disk fills while writing) and
// with a *dicom.ParseError (or dicom.ErrNotDICOM) when r is not DICOM; nothing is left behind on failure.
func (s *Spool) Put(ctx context.Context, r io.Reader, e Entry) (Entry, error) {
	if s.BelowReserve() {
		return Entry{}, ErrFull
	}
	f, err := os.CreateTemp(s.tmp(), "put-*")
	if err != nil {
		return Entry{}, fullOr(err)
	}
	name := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(name)
		}
	}()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 256<<10)
	n, err := io.Copy(bw, ctxReader{ctx, r})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return Entry{}, fullOr(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Entry{}, err
	}
	opt := dicom.DefaultReadOptions
	opt.StopAtPixelData = true
	df, err := dicom.Parse(f, opt)
	if err != nil {
		return Entry{}, err
	}
	if err := f.Sync(); err != nil {
		return Entry{}, fullOr(err)
	}
	if err := f.Close(); err != nil {
		return Entry{}, fullOr(err)
	}
	e.Key = hex.EncodeToString(h.Sum(nil))
	e.StudyInstanceUID = df.DataSet.String(dicom.StudyInstanceUID)
	e.SeriesInstanceUID = df.DataSet.String(dicom.SeriesInstanceUID)
	e.SOPInstanceUID = df.DataSet.String(dicom.SOPInstanceUID)
	e.SOPClassUID = df.DataSet.String(dicom.SOPClassUID)
	e.Size = n
	if e.Received.IsZero() {
		e.Received = s.now()
	}
	s.kmu.Lock()
	if err := os.Rename(name, s.path(e.Key)); err != nil {
		s.kmu.Unlock()
		return Entry{}, err
	}
	ok = true
	// No sidecar yet: everything in it is in the file's own header (read again by scan after a restart), and one file
	// created per instance, not two, halves the inode allocations that ext4 without a journal spends most of a Put's
	// CPU on (recently_deleted, under the churn of files the uploader removes). Update writes one when there is
	// something of the uploader's to keep (attempts, errors), and Put does when the caller's AE title is not the
	// one the file names (the gateway's own SCP always writes it into the file's meta).
	// The same bytes sent again start afresh (a parked copy goes back into the queue): a sidecar left from the
	// earlier copy's attempts is replaced, or removed. Only a key the spool holds has one (Open indexes every file and
	// removes sidecars without theirs; remove takes the sidecar with the file), so a new instance costs no lookup.
	held := true
	s.indexed(func(m map[string]Entry) { _, held = m[e.Key] })
	if e.CallingAETitle != "" && e.CallingAETitle != df.Meta.String(dicom.SourceApplicationEntityTitle) {
		err = s.writeSidecar(e, false)
	} else if held {
		if rerr := os.Remove(s.jpath(e.Key)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = rerr
		}
	}
	if err == nil {
		s.indexed(func(m map[string]Entry) { m[e.Key] = e })
	}
	s.kmu.Unlock()
	if err != nil {
		return Entry{}, err
	}
	if err := s.syncObjects(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// Update rewrites an entry's sidecar (attempts, last error). It is atomic but not fsynced: losing an update to a
// crash only forgets a count.
func (s *Spool) Update(e Entry) error { return s.update(e, false) }

// update is Update; with durable the sidecar's bytes are flushed too (its name is made durable by the caller's
// syncObjects), for a change a person was told about (an operator's retry).
func (s *Spool) update(e Entry, durable bool) error {
	s.kmu.Lock()
	defer s.kmu.Unlock()
	if _, err := os.Stat(s.path(e.Key)); err != nil {
		return err // removed meanwhile: do not resurrect a sidecar
	}
	if err := s.writeSidecar(e, durable); err != nil {
		return err
	}
	s.indexed(func(m map[string]Entry) {
		if _, ok := m[e.Key]; ok {
			m[e.Key] = e
		}
	})
	return nil
}

// indexed changes the in-memory index, when there is one.
func (s *Spool) indexed(f func(map[string]Entry)) {
	s.imu.Lock()
	defer s.imu.Unlock()
	if s.index != nil {
		f(s.index)
	}
}

func (s *Spool) writeSidecar(e Entry, durable bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.tmp(), "json-*")
	if err != nil {
		return fullOr(err)
	}
	_, err = f.Write(b)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.jpath(e.Key))
	}
	if err != nil {
		os.Remove(f.Name())
		return fullOr(err)
	}
	return nil
}

// OpenFile opens a spooled instance's file.
func (s *Spool) OpenFile(key string) (*os.File, error) { return os.Open(s.path(key)) }

// Remove deletes a spooled instance, file first (so no file is ever without its sidecar), and makes it durable.
func (s *Spool) Remove(key string) error {
	if err := s.remove(key); err != nil {
		return err
	}
	return s.syncObjects()
}

// RemoveAll deletes spooled instances and makes it durable with one fsync of the folder.
func (s *Spool) RemoveAll(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if err := s.remove(k); err != nil {
			return err
		}
	}
	return s.syncObjects()
}

func (s *Spool) remove(key string) error {
	s.kmu.Lock()
	defer s.kmu.Unlock()
	return s.removeLocked(key)
}

// removeLocked is remove for a caller holding kmu.
func (s *Spool) removeLocked(key string) error {
	if err := os.Remove(s.path(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.indexed(func(m map[string]Entry) { delete(m, key) })
	if err := os.Remove(s.jpath(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// List returns the spooled instances, oldest first.
func (s *Spool) List() ([]Entry, error) {
	s.imu.Lock()
	if s.index == nil {
		s.imu.Unlock()
		return s.scan(false)
	}
	out := make([]Entry, 0, len(s.index))
	for _, e := range s.index {
		out = append(out, e)
	}
	s.imu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Received.Before(out[j].Received) })
	return out, nil
}

// scan reads the spooled instances from the folder, oldest first, reading the header of each file that has no
// sidecar (or one cut short). A file without a sidecar which is not readable DICOM (damaged on disk, or copied there
// by hand) is left out; with quarantine (Open, the spool's owner) it is moved to damaged/ and missing sidecars are
// written, else everything is left as it is (a read-only look, as `renkei gateway status`).
func (s *Spool) scan(quarantine bool) ([]Entry, error) {
	des, err := os.ReadDir(s.objects())
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var out []Entry
	for _, d := range des {
		key, ok := strings.CutSuffix(d.Name(), ".dcm")
		if !ok {
			continue
		}
		b, err := os.ReadFile(s.jpath(key))
		var e Entry
		if err == nil {
			err = json.Unmarshal(b, &e)
		}
		if err != nil || e.SOPInstanceUID == "" {
			// No sidecar, or one cut short: rebuilt from the file (unless the file went meanwhile).
			if e, err = s.rebuild(key, quarantine); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				if errors.Is(err, errUnreadable) {
					if quarantine {
						if err := s.quarantine(key); err != nil {
							return nil, err
						}
					}
					continue
				}
				return nil, err
			}
		}
		e.Key = key
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Received.Before(out[j].Received) })
	return out, nil
}

// damaged is the folder where Open moves spooled files that can no longer be read.
func (s *Spool) damaged() string { return filepath.Join(s.Dir, "damaged") }

// quarantine moves an unreadable file, and what is left of its sidecar, to damaged/.
func (s *Spool) quarantine(key string) error {
	if err := os.MkdirAll(s.damaged(), 0o700); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := os.Rename(s.path(key), filepath.Join(s.damaged(), key+".dcm")); err != nil {
		return fmt.Errorf("spool: move an unreadable file aside: %w", err)
	}
	os.Rename(s.jpath(key), filepath.Join(s.damaged(), key+".json"))
	return fsync.Dir(s.objects())
}

// Oldest returns the entry received first; ok is false when the spool is empty.
func (s *Spool) Oldest() (e Entry, ok bool, err error) {
	all, err := s.List()
	if err != nil || len(all) == 0 {
		return Entry{}, false, err
	}
	return all[0], true, nil
}

func fullOr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %v", ErrFull, err)
	}
	return err
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
