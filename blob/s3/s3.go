// Package s3 keeps blobs in a bucket of an S3-compatible object store (AWS S3, MinIO, Ceph RGW, versitygw, …), so
// that several `renkei serve` nodes share one store.
//
// The contract is blob.Store's, as the disk store keeps it: keys are the lowercase hex SHA-256 of the bytes, a blob
// is durable once Commit returns, a duplicate costs one HEAD request, and no failure leaves part of a blob visible.
// The bytes are received into memory (small blobs) or a local temporary file while they are hashed, so that the key
// is known before anything is sent; Commit then uploads them with one PUT, which S3 makes visible atomically and only
// whole, or with a multipart upload for large blobs, which is equally invisible until it completes. A single PUT
// carries the SHA-256 as its signed payload hash, so the server itself refuses bytes that are not the key's.
package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"renkei"
	"renkei/blob"
)

// Config says where the blobs live. It comes from a URL (ParseURL); credentials never do.
type Config struct {
	Bucket   string
	Endpoint string // host:port of the S3 API (default s3.amazonaws.com)
	Region   string // empty: the client asks the server
	Secure   bool   // HTTPS (default true)
	Prefix   string // object names start with it, e.g. "renkei/"; empty or ending in "/"

	// AccessKeyID, SecretAccessKey and SessionToken are for tests and embedding. Empty: the standard AWS chain,
	// the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), then the shared credentials
	// file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile AWS_PROFILE or "default").
	AccessKeyID, SecretAccessKey, SessionToken string

	// TempDir holds the bytes of blobs being received that do not fit in memory (default: the system's).
	TempDir string
	// MemoryLimit is how many bytes of a blob are kept in memory before it spills to TempDir (default 2 MiB).
	MemoryLimit int
	// MultipartAbove is the size above which a blob is uploaded in parts (default 64 MiB, at most 5 GiB).
	MultipartAbove int64
	// Transport carries the requests (default: minio-go's); tests count them with it.
	Transport http.RoundTripper
	// RefreshAfter is the age beyond which a duplicate is uploaded again rather than only found (default 10
	// minutes), so that its written time is new: the orphan sweep (archive.SweepOrphans) removes blobs that no
	// instance uses and that were written before its cutoff (an hour ago), and must not remove an old orphan that a
	// new instance is about to refer to.
	RefreshAfter time.Duration
}

// ParseURL reads s3://BUCKET[/PREFIX]?endpoint=HOST:PORT&region=R&secure=false&prefix=P.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return Config{}, fmt.Errorf("%q is not an s3://BUCKET?endpoint=HOST:PORT URL", raw)
	}
	if u.User != nil {
		return Config{}, errors.New("put no credentials in the s3:// URL: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or an AWS credentials file")
	}
	c := Config{Bucket: u.Host, Endpoint: "s3.amazonaws.com", Secure: true, Prefix: strings.Trim(u.Path, "/")}
	q := u.Query()
	for k, v := range q {
		switch k {
		case "endpoint":
			c.Endpoint = v[0]
		case "region":
			c.Region = v[0]
		case "prefix":
			c.Prefix = strings.Trim(v[0], "/")
		case "secure":
			if c.Secure, err = strconv.ParseBool(v[0]); err != nil {
				return Config{}, fmt.Errorf("secure=%q must be true or false", v[0])
			}
		case "access_key", "secret_key", "accessKey", "secretKey", "session_token":
			return Config{}, fmt.Errorf("put no credentials in the s3:// URL (%s): use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or an AWS credentials file", k)
		default:
			return Config{}, fmt.Errorf("unknown parameter %q in the s3:// URL (known: endpoint, region, secure, prefix)", k)
		}
	}
	if c.Prefix != "" {
		c.Prefix += "/"
	}
	return c, nil
}

// Store keeps each blob in the object Prefix + "ab/cd/<sha256>". Its methods are safe for concurrent use.
type Store struct {
	cfg    Config
	client *minio.Client
	core   minio.Core
	pool   sync.Pool // memory buffers of cfg.MemoryLimit bytes

	noConditional atomic.Bool // the server refused a conditional PUT (If-None-Match) as not implemented
}

// New makes a store without contacting the server. Open checks the bucket as well.
func New(cfg Config) (*Store, error) {
	if cfg.MemoryLimit <= 0 {
		cfg.MemoryLimit = 2 << 20
	}
	if cfg.MultipartAbove <= 0 {
		cfg.MultipartAbove = 64 << 20
	}
	cfg.MultipartAbove = min(cfg.MultipartAbove, 5<<30) // the largest single PUT S3 accepts
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	if cfg.RefreshAfter <= 0 {
		cfg.RefreshAfter = 10 * time.Minute
	}
	if cfg.Prefix != "" && !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}})
	if cfg.AccessKeyID != "" {
		creds = credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{Creds: creds, Secure: cfg.Secure, Region: cfg.Region, Transport: cfg.Transport, MaxRetries: 5})
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %q: %w", cfg.Endpoint, err)
	}
	s := &Store{cfg: cfg, client: client, core: minio.Core{Client: client}}
	s.pool.New = func() any { b := make([]byte, 0, cfg.MemoryLimit); return &b }
	return s, nil
}

// Open makes the store and checks, before anything is accepted, that credentials are there, that the bucket exists
// and that they may write to it (a small probe object is written and removed). Temporary files that a crash left in
// TempDir are removed, so give each store a TempDir of its own.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.TempDir != "" {
		if err := os.MkdirAll(cfg.TempDir, 0o750); err != nil {
			return nil, fmt.Errorf("S3 blob store: %w", err)
		}
		if old, err := filepath.Glob(filepath.Join(cfg.TempDir, "s3put-*")); err == nil {
			for _, f := range old {
				os.Remove(f)
			}
		}
	}
	where := fmt.Sprintf("bucket %q at %s", s.cfg.Bucket, s.cfg.Endpoint)
	v, err := s.client.GetCreds()
	if err != nil || v.AccessKeyID == "" || v.SignerType.IsAnonymous() {
		return nil, fmt.Errorf("no S3 credentials for %s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a profile of an AWS credentials file with AWS_PROFILE (and AWS_SHARED_CREDENTIALS_FILE)", where)
	}
	// A listing rather than HEAD bucket: its refusals carry a reason (a HEAD answer has no body to say which).
	lctx, cancel := context.WithCancel(ctx)
	for o := range s.client.ListObjectsIter(lctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix, MaxKeys: 1}) {
		err = o.Err
		break
	}
	cancel()
	if minio.ToErrorResponse(err).Code == "NoSuchBucket" {
		return nil, fmt.Errorf("%s does not exist: create it first (renkei does not create buckets, so that a typing mistake does not make a new, empty archive)", where)
	}
	if err != nil {
		return nil, explain(where, err)
	}
	var r [8]byte
	rand.Read(r[:])
	probe := s.cfg.Prefix + "renkei-probe/" + hex.EncodeToString(r[:])
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, probe, strings.NewReader("renkei"), 6, minio.PutObjectOptions{}); err != nil {
		return nil, fmt.Errorf("cannot write to %s: %w", where, explain(where, err))
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, probe, minio.RemoveObjectOptions{}); err != nil {
		return nil, fmt.Errorf("cannot delete from %s (renkei removes blobs no instance uses): %w", where, explain(where, err))
	}
	return s, nil
}

// explain turns the server's refusals an operator meets at start into sentences.
func explain(where string, err error) error {
	switch minio.ToErrorResponse(err).Code {
	case "InvalidAccessKeyId", "XAdminUserNotFound": // the second is versitygw's word for it
		return fmt.Errorf("the S3 server does not know the access key (AWS_ACCESS_KEY_ID) for %s: %w", where, err)
	case "SignatureDoesNotMatch":
		return fmt.Errorf("the S3 server refused the secret key (AWS_SECRET_ACCESS_KEY) for %s: %w", where, err)
	case "AccessDenied", "Forbidden":
		return fmt.Errorf("access denied to %s: check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and that they may read and write the bucket: %w", where, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// Bucket returns the bucket the store writes to.
func (s *Store) Bucket() string { return s.cfg.Bucket }

// Object returns the object name of a key: Prefix + "ab/cd/" + key. The two levels of 256 spread the objects over
// prefixes, which S3 partitions by, and over folders for servers that store objects as files.
func (s *Store) Object(key string) string {
	return s.cfg.Prefix + key[0:2] + "/" + key[2:4] + "/" + key
}

func validKey(op, key string) error {
	if len(key) != 64 {
		return renkei.Errorf(op, renkei.Invalid, "invalid blob key %q", key)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return renkei.Errorf(op, renkei.Invalid, "invalid blob key %q", key)
		}
	}
	return nil
}

func unavailable(op, msg string, err error) error {
	return &renkei.Error{Op: op, Kind: renkei.Unavailable, Message: msg, Err: err}
}

func isNotFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NotFound"
}

// Create implements blob.Store.
func (s *Store) Create(ctx context.Context) (blob.Writer, error) {
	return &writer{s: s, h: sha256.New(), mem: s.pool.Get().(*[]byte)}, nil
}

// writer holds the bytes of one blob until Commit knows their key: in mem while they fit, then in a temporary file
// (mem then buffers the file's writes).
type writer struct {
	s    *Store
	h    hash.Hash
	n    int64
	mem  *[]byte
	f    *os.File
	done bool
	err  error
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("blob already committed or aborted")
	}
	if w.err != nil {
		return 0, w.err
	}
	w.h.Write(p)
	w.n += int64(len(p))
	b := *w.mem
	for rest := p; len(rest) > 0; {
		if len(b) == cap(b) {
			if err := w.spill(b); err != nil {
				w.err = err
				return 0, err
			}
			b = b[:0]
		}
		c := copy(b[len(b):cap(b)], rest)
		b = b[:len(b)+c]
		rest = rest[c:]
	}
	*w.mem = b
	return len(p), nil
}

// spill writes the buffered bytes to the temporary file, creating it the first time.
func (w *writer) spill(b []byte) error {
	if w.f == nil {
		f, err := os.CreateTemp(w.s.cfg.TempDir, "s3put-*")
		if err != nil {
			return unavailable("blob.Create", "the image store cannot be written", err)
		}
		w.f = f
	}
	if _, err := w.f.Write(b); err != nil {
		return unavailable("blob.Create", "the image store cannot be written", err)
	}
	return nil
}

// release gives back the buffer and removes the temporary file.
func (w *writer) release() {
	if w.mem != nil {
		*w.mem = (*w.mem)[:0]
		w.s.pool.Put(w.mem)
		w.mem = nil
	}
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}

func (w *writer) Commit(ctx context.Context) (string, int64, error) {
	if w.done {
		return "", 0, errors.New("blob already committed or aborted")
	}
	w.done = true
	defer w.release()
	if w.err != nil {
		return "", 0, w.err
	}
	sum := w.h.Sum(nil)
	key := hex.EncodeToString(sum)
	s, name := w.s, w.s.Object(key)
	fail := func(err error) (string, int64, error) {
		var re *renkei.Error
		if errors.As(err, &re) {
			return "", 0, err // already says what went wrong (the server did not keep the bytes)
		}
		return "", 0, unavailable("blob.Commit", "the image store cannot be written", fmt.Errorf("object %s: %w", name, err))
	}
	var body io.ReadSeeker
	if w.f == nil {
		body = bytes.NewReader(*w.mem)
	} else {
		if err := w.spill(*w.mem); err != nil {
			return "", 0, err
		}
		body = io.NewSectionReader(w.f, 0, w.n)
	}
	if w.n <= s.cfg.MultipartAbove && !s.noConditional.Load() {
		// A new blob is one request: a PUT that only creates (If-None-Match: *). The payload hash the request is
		// signed with is the key itself, so the server refuses the bytes unless they are the key's
		// (XAmzContentSHA256Mismatch); the SHA-256 it answers with (x-amz-checksum-sha256, which it also keeps
		// with the object) confirms what it kept. An object already there is answered 412 and checked below.
		err := w.put(ctx, body, sum, key, true)
		switch code := minio.ToErrorResponse(err).Code; {
		case err == nil:
			return key, w.n, nil
		case code == "PreconditionFailed":
		case code == "NotImplemented":
			s.noConditional.Store(true) // a server without conditional writes: look before putting, from now on
		default:
			return fail(err)
		}
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return fail(err)
		}
	}
	// A duplicate costs a HEAD: an object under this name was put whole, by a PUT the server checked against this
	// same SHA-256 (or by a completed multipart upload of the same size). One that is not what this key should hold
	// (damaged, or written by something else) is replaced, and so is an old one (see RefreshAfter).
	if info, err := s.client.StatObject(ctx, s.cfg.Bucket, name, minio.StatObjectOptions{Checksum: true}); err == nil {
		// An object of one PUT without a checksum was not written by this store: its bytes are not known to be
		// the key's, and it is replaced (a multipart object's checksum, if any, is of its parts: its size is checked).
		checked := info.ChecksumSHA256 != "" || w.n > s.cfg.MultipartAbove
		if checked && verify(info, w.n, sum) == nil && time.Since(info.LastModified) < s.cfg.RefreshAfter {
			return key, w.n, nil
		}
	} else if !isNotFound(err) {
		return fail(err)
	}
	if w.n <= s.cfg.MultipartAbove {
		if err := w.put(ctx, body, sum, key, false); err != nil {
			return fail(err)
		}
		return key, w.n, nil
	}
	// Parts in parallel; minio-go aborts the upload if a part fails, and S3 shows nothing until it completes.
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, name, body, w.n, opts); err != nil {
		return fail(err)
	}
	if err := w.check(ctx, sum); err != nil {
		return "", 0, err
	}
	return key, w.n, nil
}

// put uploads the blob in one PUT (only if no object has its name, with ifNone) and checks what the server kept.
func (w *writer) put(ctx context.Context, body io.Reader, sum []byte, key string, ifNone bool) error {
	s, name := w.s, w.s.Object(key)
	opts := minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		DisableContentSha256: true,
		UserMetadata:         map[string]string{"x-amz-checksum-sha256": base64.StdEncoding.EncodeToString(sum)},
	}
	if ifNone {
		opts.SetMatchETagExcept("*")
	}
	info, err := s.core.PutObject(ctx, s.cfg.Bucket, name, body, w.n, "", key, opts)
	if err != nil {
		return err // the caller tells a 412 from a failure
	}
	if c := info.ChecksumSHA256; c != "" {
		if c == base64.StdEncoding.EncodeToString(sum) {
			return nil
		}
		s.client.RemoveObject(context.WithoutCancel(ctx), s.cfg.Bucket, name, minio.RemoveObjectOptions{})
		return &renkei.Error{Op: "blob.Commit", Kind: renkei.Unavailable, Message: "the image store did not keep the object intact",
			Err: fmt.Errorf("object %s: the server's SHA-256 %s is not the key's", name, c)}
	}
	return w.check(ctx, sum) // a server that does not answer with the checksum: ask it
}

// check asks the server what it holds under the blob's name and removes it if it is not the blob.
func (w *writer) check(ctx context.Context, sum []byte) error {
	s, name := w.s, w.s.Object(hex.EncodeToString(sum))
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, name, minio.StatObjectOptions{Checksum: true})
	if err != nil {
		return unavailable("blob.Commit", "the image store cannot be written", fmt.Errorf("object %s: check after upload: %w", name, err))
	}
	if err := verify(info, w.n, sum); err != nil {
		s.client.RemoveObject(context.WithoutCancel(ctx), s.cfg.Bucket, name, minio.RemoveObjectOptions{})
		return &renkei.Error{Op: "blob.Commit", Kind: renkei.Unavailable, Message: "the image store did not keep the object intact", Err: fmt.Errorf("object %s: %w", name, err)}
	}
	return nil
}

// verify checks what the server says it holds: the size, and the SHA-256 where it reports one for the whole object
// (a multipart object's checksum, when there is one, is of its parts: "…-N").
func verify(info minio.ObjectInfo, size int64, sum []byte) error {
	if info.Size != size {
		return fmt.Errorf("the server holds %d bytes, %d were written", info.Size, size)
	}
	if c := info.ChecksumSHA256; c != "" && !strings.Contains(c, "-") && c != base64.StdEncoding.EncodeToString(sum) {
		return fmt.Errorf("the server's SHA-256 %s is not the key's", c)
	}
	return nil
}

func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.release()
	return nil
}

// Ready checks that the bucket answers (a readiness check).
func (s *Store) Ready(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("bucket %s at %s: %w", s.cfg.Bucket, s.cfg.Endpoint, err)
	}
	if !ok {
		return fmt.Errorf("bucket %s at %s does not exist", s.cfg.Bucket, s.cfg.Endpoint)
	}
	return nil
}

// headSize is how much of a blob Open fetches with the request that finds it: enough for the File Meta Information
// and the header of most objects, which is what every retrieval reads first.
const headSize = 64 << 10

// Open implements blob.Store. One ranged GET both finds the object (its size is in Content-Range) and fetches its
// first 64 KiB; further reads are ranged GETs of what is asked, with read-ahead that grows while reads are
// sequential.
func (s *Store) Open(ctx context.Context, key string) (blob.Reader, error) {
	if err := validKey("blob.Open", key); err != nil {
		return nil, err
	}
	r := &reader{s: s, ctx: ctx, name: s.Object(key)}
	body, _, h, err := s.core.GetObject(ctx, s.cfg.Bucket, r.name, rangeOpts(0, headSize))
	if err != nil {
		if isNotFound(err) {
			return nil, &renkei.Error{Op: "blob.Open", Kind: renkei.NotFound, Message: "the stored object is missing", Err: err}
		}
		if minio.ToErrorResponse(err).Code == "InvalidRange" {
			return s.openEmpty(ctx, r)
		}
		return nil, unavailable("blob.Open", "the image store cannot be read", err)
	}
	defer body.Close()
	r.size, err = totalSize(h)
	if err == nil {
		r.block, err = io.ReadAll(io.LimitReader(body, headSize))
		finish(body)
	}
	if err != nil {
		return nil, unavailable("blob.Open", "the image store cannot be read", fmt.Errorf("object %s: %w", r.name, err))
	}
	r.lastEnd = int64(len(r.block))
	return r, nil
}

// openEmpty handles the one object a range cannot be asked of: an empty one.
func (s *Store) openEmpty(ctx context.Context, r *reader) (blob.Reader, error) {
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, r.name, minio.StatObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return nil, &renkei.Error{Op: "blob.Open", Kind: renkei.NotFound, Message: "the stored object is missing", Err: err}
		}
		return nil, unavailable("blob.Open", "the image store cannot be read", err)
	}
	r.size = info.Size
	return r, nil
}

func rangeOpts(off, n int64) minio.GetObjectOptions {
	var o minio.GetObjectOptions
	switch {
	case n < 0 && off == 0: // the whole object
	case n < 0:
		o.SetRange(off, 0) // from off to the end
	default:
		o.SetRange(off, off+n-1)
	}
	return o
}

// totalSize reads the object's size from a ranged GET's answer: Content-Range "bytes 0-65535/1234567", or
// Content-Length when the server sent the whole object.
func totalSize(h http.Header) (int64, error) {
	if cr := h.Get("Content-Range"); cr != "" {
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			if n, err := strconv.ParseInt(cr[i+1:], 10, 64); err == nil {
				return n, nil
			}
		}
		return 0, fmt.Errorf("unreadable Content-Range %q", cr)
	}
	n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("no Content-Range or Content-Length in the answer")
	}
	return n, nil
}

// The read-ahead of a reader: a read that starts where the previous fetch ended doubles the next fetch, up to
// maxAhead; any other read fetches at least minAhead.
const (
	minAhead = 64 << 10
	maxAhead = 8 << 20
)

type reader struct {
	s    *Store
	ctx  context.Context
	name string
	size int64

	mu       sync.Mutex
	off      int64  // for Read and Seek
	block    []byte // the last bytes fetched, from blockOff
	blockOff int64
	lastEnd  int64 // where the last fetch ended
	ahead    int64 // the size of the last fetch made by sequential reads
	closed   bool
}

func (r *reader) Size() int64 { return r.size }

func (r *reader) Close() error {
	r.mu.Lock()
	r.closed, r.block = true, nil
	r.mu.Unlock()
	return nil
}

func (r *reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	off := r.off
	r.mu.Unlock()
	n, err := r.ReadAt(p, off)
	r.mu.Lock()
	r.off = off + int64(n)
	r.mu.Unlock()
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.off = offset
	return offset, nil
}

// ReadAt implements io.ReaderAt: from the last block fetched when it holds the bytes, else with one ranged GET.
// Concurrent calls are safe.
func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("read at negative offset")
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return n, errors.New("read of a closed blob")
		}
		if pos >= r.blockOff && pos < r.blockOff+int64(len(r.block)) {
			n += copy(p[n:], r.block[pos-r.blockOff:])
			r.mu.Unlock()
			continue
		}
		want := int64(len(p) - n)
		ahead := int64(minAhead)
		if pos == r.lastEnd {
			ahead = min(max(2*r.ahead, minAhead), maxAhead)
		}
		r.mu.Unlock()
		fetch := min(max(want, ahead), r.size-pos)
		b, err := r.fetch(pos, fetch)
		if err != nil {
			return n, err
		}
		r.mu.Lock()
		if !r.closed {
			r.block, r.blockOff, r.lastEnd = b, pos, pos+int64(len(b))
			if fetch > want {
				r.ahead = fetch
			}
		}
		r.mu.Unlock()
		n += copy(p[n:], b)
	}
	return n, nil
}

// fetch GETs n bytes at off.
func (r *reader) fetch(off, n int64) ([]byte, error) {
	body, _, _, err := r.s.core.GetObject(r.ctx, r.s.cfg.Bucket, r.name, rangeOpts(off, n))
	if err != nil {
		return nil, r.readErr(err)
	}
	defer body.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, r.readErr(err)
	}
	finish(body)
	return b, nil
}

// finish reads a body that has given all the bytes asked for up to its end, so that the connection goes back to the
// pool: net/http closes the connection of a body closed before its EOF was seen, and a new TCP connection per ranged
// read tripled its cost here. A server that sends more than asked (a range ignored) loses its connection instead.
func finish(body io.Reader) {
	var b [1]byte
	body.Read(b[:])
}

func (r *reader) readErr(err error) error {
	if isNotFound(err) {
		return &renkei.Error{Op: "blob.Read", Kind: renkei.NotFound, Message: "the stored object is missing", Err: err}
	}
	return unavailable("blob.Read", "the image store cannot be read", fmt.Errorf("object %s: %w", r.name, err))
}

// WriteTo sends the rest of the blob to w with one GET from the read position to the end, which is how a whole
// object is retrieved (io.Copy).
func (r *reader) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	off := r.off
	var head []byte
	if off >= r.blockOff && off < r.blockOff+int64(len(r.block)) {
		head = r.block[off-r.blockOff:]
	}
	r.mu.Unlock()
	var total int64
	if len(head) > 0 {
		n, err := w.Write(head)
		total += int64(n)
		r.advance(int64(n))
		if err != nil {
			return total, err
		}
	}
	if pos := off + total; pos < r.size {
		body, _, _, err := r.s.core.GetObject(r.ctx, r.s.cfg.Bucket, r.name, rangeOpts(pos, -1))
		if err != nil {
			return total, r.readErr(err)
		}
		defer body.Close()
		n, err := io.Copy(w, io.LimitReader(body, r.size-pos))
		finish(body)
		total += n
		r.advance(n)
		if err != nil {
			return total, err
		}
		if n < r.size-pos {
			return total, r.readErr(io.ErrUnexpectedEOF)
		}
	}
	return total, nil
}

func (r *reader) advance(n int64) {
	r.mu.Lock()
	r.off += n
	r.mu.Unlock()
}

// AbortStaleUploads aborts the multipart uploads under the prefix that were started more than olderThan ago and
// never completed: what a node killed in the middle of a large upload leaves. They were never visible as objects,
// but their parts take space. No upload takes a day, so a day is a safe age; a bucket lifecycle rule
// (AbortIncompleteMultipartUpload) does the same where the store has one. It returns how many it aborted.
func (s *Store) AbortStaleUploads(ctx context.Context, olderThan time.Duration) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	for u := range s.client.ListIncompleteUploads(ctx, s.cfg.Bucket, s.cfg.Prefix, true) {
		if u.Err != nil {
			return n, fmt.Errorf("list incomplete uploads: %w", u.Err)
		}
		if time.Since(u.Initiated) < olderThan {
			continue
		}
		if err := s.core.AbortMultipartUpload(ctx, s.cfg.Bucket, u.Key, u.UploadID); err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
			return n, fmt.Errorf("abort the incomplete upload of %s: %w", u.Key, err)
		}
		n++
	}
	return n, nil
}

// Delete implements blob.Store. S3 answers a DELETE of a missing object with success, as the contract wants.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := validKey("blob.Delete", key); err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.Object(key), minio.RemoveObjectOptions{}); err != nil {
		return unavailable("blob.Delete", "the image store cannot be written", err)
	}
	return nil
}

// List implements blob.Lister: every object under Prefix named like a blob, with its last-modified time.
func (s *Store) List(ctx context.Context, fn func(key string, written time.Time) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing when fn ends it early
	for obj := range s.client.ListObjectsIter(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix, Recursive: true}) {
		if obj.Err != nil {
			return unavailable("blob.List", "the image store cannot be read", obj.Err)
		}
		key := obj.Key[len(s.cfg.Prefix):]
		if i := strings.LastIndexByte(key, '/'); i >= 0 {
			key = key[i+1:]
		}
		if validKey("", key) != nil || s.Object(key) != obj.Key {
			continue // not a blob (the start-up probe, or something else in the bucket)
		}
		if err := fn(key, obj.LastModified); err != nil {
			return err
		}
	}
	return ctx.Err()
}
