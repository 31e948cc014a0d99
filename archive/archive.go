// Package archive is the one ingest/query/retrieve service behind every transport: STOW-RS and C-STORE store through
// Store, QIDO-RS and C-FIND search through Query, WADO-RS, WADO-URI, C-MOVE and C-GET read through Retrieve.
//
// Ingest order (shared/DESIGN.md): parse the header while the bytes stream into the blob store → check the required
// attributes → commit the blob (fsync, rename) under its SHA-256 → one index transaction → answer. A crash at any
// moment loses nothing that was acknowledged and leaves nothing half visible.
package archive

import (
	"context"
	"log/slog"
	"time"

	"renkei"
	"renkei/blob"
)

// Index is the archive's view of the SQL index (implemented by sqlstore.DB).
type Index interface {
	Insert(ctx context.Context, inst *renkei.Instance) (renkei.StoreOutcome, string, error)
	Matchable(level renkei.QueryLevel, keyword string) bool
	QueryStudies(ctx context.Context, q *renkei.Query) ([]renkei.StudyRecord, error)
	QuerySeries(ctx context.Context, q *renkei.Query) ([]renkei.SeriesRecord, error)
	QueryInstances(ctx context.Context, q *renkei.Query) ([]renkei.InstanceRecord, error)
	QueryPatients(ctx context.Context, q *renkei.PatientQuery) ([]renkei.PatientRecord, error)
	Trash(ctx context.Context, req renkei.TrashRequest) (int, error)
	// Purge returns the blob keys nothing refers to any more, also with an error when part of the trash stayed.
	Purge(ctx context.Context, cutoff time.Time) ([]string, error)
	BlobInUse(ctx context.Context, key string) (bool, error)
}

// Service stores, finds and retrieves DICOM instances.
type Service struct {
	Index  Index
	Blobs  blob.Store
	Logger *slog.Logger
	Now    func() time.Time

	// DefaultIssuer is the IssuerOfPatientID given to objects that carry none and whose sender has no issuer of its own.
	DefaultIssuer string
	// FallbackCharset is the character set assumed when an object declares none or its declared one does not decode
	// (e.g. "CP932" for regions whose older modalities send undeclared Shift_JIS).
	FallbackCharset string
	// TrashPeriod is how long deleted objects stay restorable before they are purged.
	TrashPeriod time.Duration
	// Stored, when set, is told of every new instance once its index transaction has committed (live updates).
	Stored func(inst *renkei.Instance)
	// Observe, when set, is told of every object received, whatever became of it (metrics): its source, the outcome
	// ("stored", "duplicate" or "refused") and, when stored, its size.
	Observe func(source, outcome string, size int64)

	headers headerCache
}

// New returns a service with defaults for the optional fields.
func New(index Index, blobs blob.Store, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.Default()
	}
	return &Service{Index: index, Blobs: blobs, Logger: logger, Now: time.Now, TrashPeriod: 30 * 24 * time.Hour}
}

// Delete moves a study, a series or an instance to the trash. It stays restorable for TrashPeriod.
func (s *Service) Delete(ctx context.Context, study, series, instance string) (int, error) {
	n, err := s.Index.Trash(ctx, renkei.TrashRequest{Study: study, Series: series, Instance: instance})
	if err == nil {
		s.Logger.Info("moved to trash", "study", study, "series", series, "instance", instance, "instances", n)
	}
	return n, err
}

// PurgeNow removes a study that is wholly in the trash from the index at once (it is no longer restorable); its
// blobs go with the next sweep of blobs nothing refers to.
func (s *Service) PurgeNow(ctx context.Context, study string) (int, error) {
	n, err := s.Index.Trash(ctx, renkei.TrashRequest{Study: study, Purge: true})
	if err == nil {
		s.Logger.Info("purged from trash at once", "study", study, "instances", n)
	}
	return n, err
}

// Restore brings a study, series or instance back from the trash.
func (s *Service) Restore(ctx context.Context, study, series, instance string) (int, error) {
	n, err := s.Index.Trash(ctx, renkei.TrashRequest{Study: study, Series: series, Instance: instance, Restore: true})
	if err == nil {
		s.Logger.Info("restored from trash", "study", study, "series", series, "instance", instance, "instances", n)
	}
	return n, err
}

// Purge removes what has been in the trash longer than TrashPeriod, and the blobs nothing refers to any more. When
// part of the trash could not be purged, the blobs of the rest are deleted all the same and the index's error is
// returned. It returns how many blobs it deleted.
func (s *Service) Purge(ctx context.Context) (int, error) {
	keys, err := s.Index.Purge(ctx, s.Now().Add(-s.TrashPeriod))
	n := 0
	for _, k := range keys {
		// The same bytes may have been stored again since the index let go of the blob (a modality sending a purged
		// study again): the new instance, already acknowledged, keeps it. (An ingest whose blob is written but whose
		// index row is not yet committed can still lose it here; the orphan sweep, which checks the written time,
		// has no such window.)
		used, uerr := s.Index.BlobInUse(ctx, k)
		if uerr != nil {
			s.Logger.Error("purge blob", "key", k, "err", uerr)
			continue
		}
		if used {
			continue
		}
		if err := s.Blobs.Delete(ctx, k); err != nil {
			s.Logger.Error("purge blob", "key", k, "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		s.Logger.Info("purged trash", "blobs", n)
	}
	return n, err
}

// SweepOrphans deletes blobs that no instance refers to and that were written before the cutoff: what a crash between
// a blob's commit and its index transaction leaves behind (never acknowledged, so nothing is lost). The cutoff must be
// well before any ingest still in flight. It returns how many blobs it removed.
func (s *Service) SweepOrphans(ctx context.Context, cutoff time.Time) (int, error) {
	l, ok := s.Blobs.(blob.Lister)
	if !ok {
		return 0, nil
	}
	n := 0
	err := l.List(ctx, func(key string, written time.Time) error {
		if written.After(cutoff) {
			return nil
		}
		used, err := s.Index.BlobInUse(ctx, key)
		if err != nil || used {
			return err
		}
		if err := s.Blobs.Delete(ctx, key); err != nil {
			return err
		}
		n++
		return nil
	})
	if n > 0 {
		s.Logger.Info("removed blobs no instance refers to", "blobs", n)
	}
	return n, err
}

// RunPurger purges the trash every interval until ctx ends.
func (s *Service) RunPurger(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Purge(ctx); err != nil && ctx.Err() == nil {
			s.Logger.Error("purge trash", "err", err)
		}
		if _, err := s.SweepOrphans(ctx, s.Now().Add(-time.Hour)); err != nil && ctx.Err() == nil {
			s.Logger.Error("sweep orphan blobs", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
