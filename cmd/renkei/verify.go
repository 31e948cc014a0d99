package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"renkei"
	"renkei/blob"
	"renkei/blob/disk"
	"renkei/blob/s3"
	"renkei/sqlstore"
)

const verifyUsage = `Usage:
  renkei admin verify --data DIR [--db postgres://…] [--blobs s3://…] [--quick] [--remove-orphans] [--grace 24h] [--rebuild-grants]

verify checks that the index and the blobs agree, while renkei serve runs: every blob the index refers to (images,
consent forms, documents, letters, reports) is there and its bytes still have the SHA-256 that names them; blobs
that nothing refers to (what a crash between a blob and its index transaction leaves, never acknowledged) are
listed, and with --remove-orphans removed once older than --grace (renkei serve also removes them after an hour).
It also lists instances whose text could not be decoded (kept as received, so a name may show garbled): their
sender wants a --charset in the AE registry (renkei admin ae add … --charset CP932).
It checks that the index's table of what the shares grant (which the study lists read) agrees with the shares;
--rebuild-grants rebuilds it from them, safe beside a running server.
--quick checks presence and size only, not the SHA-256. It exits 1 when a blob is missing or damaged: restore it
from a backup (renkei admin restore, or the bucket's versions).
`

func adminVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("renkei admin verify", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, verifyUsage); fl.PrintDefaults() }
	data := fl.String("data", "./renkei-data", "the data folder (index.db and blobs/ unless --db and --blobs say otherwise)")
	dbURL := fl.String("db", "", indexUsage)
	blobsURL := fl.String("blobs", "", "the blob store: empty for DATA/blobs, or s3://BUCKET?endpoint=HOST:PORT")
	quick := fl.Bool("quick", false, "check that each blob is there with a plausible size, without reading it")
	remove := fl.Bool("remove-orphans", false, "remove blobs nothing refers to once older than --grace")
	grace := fl.Duration("grace", 24*time.Hour, "how old an unreferenced blob must be before --remove-orphans removes it")
	rebuild := fl.Bool("rebuild-grants", false, "rebuild the table of what the shares grant from the shares")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if err := envFlags(fl); err != nil {
		return err
	}
	if *grace < time.Hour {
		return fmt.Errorf("--grace %v: at least 1h, so that a blob whose instance is being indexed right now is not taken for an orphan", *grace)
	}
	db, err := openIndex(ctx, *dbURL, *data)
	if err != nil {
		return err
	}
	defer db.Close()
	var store blob.Store
	if *blobsURL == "" {
		// Not disk.Open: that would clear the temporary files of a running server's uploads.
		store = &disk.Store{Root: filepath.Join(*data, "blobs")}
	} else {
		cfg, err := s3.ParseURL(*blobsURL)
		if err != nil {
			return fmt.Errorf("--blobs: %w", err)
		}
		// No TempDir: nothing is written, and a running node's temporary files stay.
		if store, err = s3.Open(ctx, cfg); err != nil {
			return fmt.Errorf("--blobs: %w", err)
		}
	}
	// The grants first: quick, and an operator who asked for a rebuild wants it whatever the blobs say.
	n, err := db.CheckGrants(ctx, *rebuild)
	switch {
	case err != nil:
		return err
	case *rebuild:
		fmt.Fprintln(stdout, "shares' grants: rebuilt from the shares")
	case n > 0:
		fmt.Fprintf(stdout, "shares' grants: %d rows out of step with the shares, so study lists may miss or show studies (renkei admin verify --rebuild-grants repairs it)\n", n)
	default:
		fmt.Fprintln(stdout, "shares' grants: agree with the shares")
	}
	if err := verifyBlobs(ctx, db, store, *quick, *remove, *grace, stdout); err != nil {
		return err
	}
	if n > 0 && !*rebuild {
		return fmt.Errorf("the table of what the shares grant is out of step with the shares (%d rows): run renkei admin verify --rebuild-grants", n)
	}
	return nil
}

// verifyBlobs walks the index's blob keys and then the store's, and reports what does not agree.
func verifyBlobs(ctx context.Context, db *sqlstore.DB, store blob.Store, quick, remove bool, grace time.Duration, stdout io.Writer) error {
	start := time.Now()
	var (
		checked, bytes int64
		bad            []string
	)
	buf := make([]byte, 1<<20)
	after := ""
	for {
		keys, err := db.BlobKeys(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, k := range keys {
			r, err := store.Open(ctx, k)
			if renkei.ErrorKind(err) == renkei.NotFound {
				bad = append(bad, "missing: "+k)
				continue
			}
			if err != nil {
				return fmt.Errorf("blob %s: %w", k, err)
			}
			if quick {
				if r.Size() <= 0 {
					bad = append(bad, "empty: "+k)
				}
				bytes += r.Size()
			} else {
				h := sha256.New()
				n, err := io.CopyBuffer(h, r, buf)
				if err != nil {
					r.Close()
					return fmt.Errorf("blob %s: %w", k, err)
				}
				if hex.EncodeToString(h.Sum(nil)) != k {
					bad = append(bad, "damaged (its SHA-256 is not its name): "+k)
				}
				bytes += n
			}
			r.Close()
			checked++
		}
		if len(keys) < 1000 {
			break
		}
		after = keys[len(keys)-1]
	}
	what := "read and their SHA-256 checked"
	if quick {
		what = "found (--quick: sizes only)"
	}
	fmt.Fprintf(stdout, "blobs the index refers to: %d, %s, %s\n", checked, bytesText(bytes), what)

	var orphans, removed int
	if l, ok := store.(blob.Lister); ok {
		cutoff := time.Now().Add(-grace)
		err := l.List(ctx, func(key string, written time.Time) error {
			used, err := db.BlobInUse(ctx, key)
			if err != nil || used {
				return err
			}
			orphans++
			old := written.Before(cutoff)
			fmt.Fprintf(stdout, "not referred to: %s (written %s)\n", key, written.Local().Format(time.DateTime))
			if remove && old {
				if err := store.Delete(ctx, key); err != nil {
					return err
				}
				removed++
			}
			return nil
		})
		if err != nil {
			return err
		}
		switch {
		case orphans == 0:
			fmt.Fprintln(stdout, "blobs nothing refers to: none")
		case remove:
			fmt.Fprintf(stdout, "blobs nothing refers to: %d, %d removed (older than %v)\n", orphans, removed, grace)
		default:
			fmt.Fprintf(stdout, "blobs nothing refers to: %d (renkei admin verify --remove-orphans removes those older than --grace)\n", orphans)
		}
	}
	// Not a fault of the archive, but what an operator can act on: text that could not be decoded (kept as received,
	// so a name may show garbled) comes from senders that need a --charset in the AE registry.
	flagged, total, err := db.FlaggedText(ctx, 20)
	if err != nil {
		return err
	}
	if total > 0 {
		fmt.Fprintf(stdout, "instances with text that could not be decoded (kept as received; register the sender with --charset): %d\n", total)
		for _, f := range flagged {
			fmt.Fprintf(stdout, "  study %s instance %s from %s\n", f.Study, f.Instance, f.Source)
		}
	}
	for _, b := range bad {
		fmt.Fprintln(stdout, b)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d blob(s) the index refers to are missing or damaged (listed above): restore them from a backup", len(bad))
	}
	fmt.Fprintf(stdout, "index and blobs agree (%s)\n", time.Since(start).Round(time.Millisecond))
	return nil
}
