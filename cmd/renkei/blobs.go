package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"renkei/blob"
	"renkei/blob/disk"
	"renkei/blob/s3"
)

// blobsUsage is the --blobs flag's help.
const blobsUsage = "where the DICOM objects are stored: empty for the folder blobs/ in --data, or " +
	"s3://BUCKET?endpoint=HOST:PORT&region=R&secure=false&prefix=P for a bucket of an S3-compatible object store " +
	"(the bucket must exist). S3 credentials come only from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY " +
	"(and AWS_SESSION_TOKEN) or an AWS credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile AWS_PROFILE), never from the command line"

// openBlobs opens the blob store --blobs names: the disk store in data/blobs by default (its fan-out folders made in
// the background), or an S3 bucket, checked at start (credentials, bucket, write and delete) so that a wrong setting
// stops the server with a sentence rather than failing the first upload.
func openBlobs(ctx context.Context, where, data string, logger *slog.Logger) (blob.Store, error) {
	if where == "" {
		blobs, err := disk.Open(filepath.Join(data, "blobs"))
		if err != nil {
			return nil, err
		}
		go func() {
			if err := blobs.Prepare(ctx); err != nil && ctx.Err() == nil {
				logger.Warn("blob folders", "err", err)
			}
		}()
		return blobs, nil
	}
	if !strings.HasPrefix(where, "s3://") {
		return nil, fmt.Errorf("--blobs %q: give an s3://BUCKET?endpoint=HOST:PORT URL, or nothing for the data folder", where)
	}
	cfg, err := s3.ParseURL(where)
	if err != nil {
		return nil, fmt.Errorf("--blobs: %w", err)
	}
	// Blobs larger than memory allows are received here before their upload: on the node's own disk, cleaned at start.
	cfg.TempDir = filepath.Join(data, "s3-tmp")
	s, err := s3.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("--blobs: %w", err)
	}
	logger.Info("blobs in S3", "bucket", cfg.Bucket, "endpoint", cfg.Endpoint, "prefix", cfg.Prefix)
	go func() {
		// Parts of large uploads that a killed node never completed: invisible, but they take space.
		n, err := s.AbortStaleUploads(ctx, 24*time.Hour)
		if err != nil && ctx.Err() == nil {
			logger.Warn("abort stale S3 uploads", "err", err)
		} else if n > 0 {
			logger.Info("aborted stale S3 multipart uploads", "uploads", n)
		}
	}()
	return s, nil
}
