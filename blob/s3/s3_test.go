package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/minio/minio-go/v7"

	"renkei"
	"renkei/blob"
	"renkei/blob/blobtest"
	"renkei/blob/s3"
	"renkei/internal/s3test"
)

// server is one versitygw for the package's tests; each test takes a bucket or a prefix of its own.
var server struct {
	once sync.Once
	*s3test.Server
}

func startServer(t testing.TB) *s3test.Server {
	server.once.Do(func() { server.Server = s3test.Start(&keepAlive{t}) })
	if server.Server == nil {
		s3test.Start(t) // skips or fails with the reason
	}
	return server.Server
}

// keepAlive lets the first test start the server for all of them: its cleanups run when the package ends, not when
// that test does. Skips and failures still reach the test.
type keepAlive struct{ testing.TB }

func (k *keepAlive) Cleanup(f func()) { cleanups = append(cleanups, f) }

var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	os.Exit(code)
}

// config returns a store configuration for a new bucket, with small memory and multipart limits so that the suite's
// sizes cross them.
func config(t testing.TB, srv *s3test.Server) s3.Config {
	return s3.Config{
		Bucket: srv.Bucket(t), Endpoint: srv.Endpoint, Secure: false, Region: "us-east-1",
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
		TempDir: t.TempDir(), MemoryLimit: 64 << 10, MultipartAbove: 8 << 20,
	}
}

func TestConformance(t *testing.T) {
	srv := startServer(t)
	cfg := config(t, srv)
	var n atomic.Int32
	blobtest.Run(t, func(t *testing.T) blob.Store {
		c := cfg
		c.Prefix = "suite" + string(rune('a'+n.Add(1))) // a prefix per subtest: List must see only its own
		c.TempDir = t.TempDir()
		s, err := s3.Open(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Nothing of a blob being received stays on the local disk once it is committed or aborted.
			if left, _ := filepath.Glob(filepath.Join(c.TempDir, "*")); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
		return s
	})
}

// TestLayout checks where a blob lands: Prefix + ab/cd/<sha256> in the bucket, which versitygw keeps as that file
// under its folder, holding exactly the bytes.
func TestLayout(t *testing.T) {
	srv := startServer(t)
	cfg := config(t, srv)
	cfg.Prefix = "region-a"
	s, err := s3.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := blobtest.Bytes(5000, 1)
	key, _ := blobtest.Put(t, s, data)
	want := "region-a/" + key[:2] + "/" + key[2:4] + "/" + key
	if got := s.Object(key); got != want {
		t.Errorf("Object(%s) = %s, want %s", key, got, want)
	}
	b, err := os.ReadFile(filepath.Join(srv.Dir, cfg.Bucket, want))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != key {
		t.Errorf("the file versitygw holds has SHA-256 %x, want %s", sum, key)
	}
	// The server keeps the SHA-256 it checked, where a HEAD shows it (Commit compares it on duplicates).
	info, err := srv.Client().StatObject(context.Background(), cfg.Bucket, want, minio.StatObjectOptions{Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum, _ := hex.DecodeString(key); info.ChecksumSHA256 != base64.StdEncoding.EncodeToString(sum) {
		t.Errorf("x-amz-checksum-sha256 = %q, want the key in base64", info.ChecksumSHA256)
	}
	// The start-up probe left nothing behind.
	var names []string
	for o := range srv.Client().ListObjectsIter(context.Background(), cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		names = append(names, o.Key)
	}
	if diff := cmp.Diff([]string{want}, names); diff != "" {
		t.Errorf("objects in the bucket (-want +got):\n%s", diff)
	}
}

// counter counts the requests a store makes, by method.
type counter struct {
	mu sync.Mutex
	n  map[string]int
	rt http.RoundTripper
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[r.Method]++
	c.mu.Unlock()
	return c.rt.RoundTrip(r)
}

func (c *counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// TestRequests pins the cost of each operation in requests, which is what a remote object store charges in time and
// money: a new blob is one PUT that only creates (If-None-Match: *), its answer carrying the SHA-256 the server
// kept; a duplicate is that PUT refused (412) and one HEAD (or, written before RefreshAfter, a new upload); opening a
// blob and reading its header is one GET, and a whole retrieval one more.
func TestRequests(t *testing.T) {
	srv := startServer(t)
	cfg := config(t, srv)
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		t.Fatal(err)
	}
	c := &counter{n: map[string]int{}, rt: tr}
	cfg.Transport = c
	s, err := s3.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.take()
	ctx := context.Background()
	data := blobtest.Bytes(300<<10, 2)
	key, _ := blobtest.Put(t, s, data)
	if diff := cmp.Diff(map[string]int{"PUT": 1}, c.take()); diff != "" {
		t.Errorf("a new blob (-want +got):\n%s", diff)
	}
	blobtest.Put(t, s, data)
	if diff := cmp.Diff(map[string]int{"PUT": 1, "HEAD": 1}, c.take()); diff != "" {
		t.Errorf("a duplicate (-want +got):\n%s", diff)
	}
	// A duplicate of an old blob is uploaded again, so that its written time protects it from the orphan sweep.
	old := cfg
	old.RefreshAfter = time.Nanosecond
	so, err := s3.Open(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	c.take()
	blobtest.Put(t, so, data)
	if diff := cmp.Diff(map[string]int{"PUT": 2, "HEAD": 1}, c.take()); diff != "" {
		t.Errorf("a duplicate of an old blob (-want +got):\n%s", diff)
	}
	r, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 132)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"GET": 1}, c.take()); diff != "" {
		t.Errorf("Open and the first 132 bytes (-want +got):\n%s", diff)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"GET": 1}, c.take()); diff != "" {
		t.Errorf("reading the rest with io.Copy (-want +got):\n%s", diff)
	}
	r.Close()
}

// TestDamagedObjectReplaced: an object that holds other bytes than its name says (damaged, or put there by
// something else) is found by the HEAD that follows the refused conditional PUT, and replaced with the blob.
func TestDamagedObjectReplaced(t *testing.T) {
	srv := startServer(t)
	cfg := config(t, srv)
	s, err := s3.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := blobtest.Bytes(200<<10, 7)
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:])
	wrong := blobtest.Bytes(200<<10, 8)
	if _, err := srv.Client().PutObject(ctx, cfg.Bucket, s.Object(key), bytes.NewReader(wrong), int64(len(wrong)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := blobtest.Put(t, s, data); got != key {
		t.Fatalf("key %s, want %s", got, key)
	}
	r, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	back, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) {
		t.Errorf("the object still holds other bytes than its key's after Commit")
	}
}

// TestServerChecksKey shows the server checking the bytes against the key: a PUT signed with another SHA-256 than
// its body's is refused, and nothing is stored. This is what makes a blob whose bytes are not its key impossible.
func TestServerChecksKey(t *testing.T) {
	srv := startServer(t)
	bucket := srv.Bucket(t)
	core := minio.Core{Client: srv.Client()}
	body := []byte("the bytes sent")
	other := blobtest.Key([]byte("the bytes meant"))
	opts := minio.PutObjectOptions{DisableContentSha256: true}
	_, err := core.PutObject(context.Background(), bucket, "x", bytes.NewReader(body), int64(len(body)), "", other, opts)
	if code := minio.ToErrorResponse(err).Code; code != "XAmzContentSHA256Mismatch" {
		t.Fatalf("PUT with a wrong SHA-256: %v (code %q), want XAmzContentSHA256Mismatch", err, code)
	}
	if _, err := srv.Client().StatObject(context.Background(), bucket, "x", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Errorf("after the refused PUT: %v, want NoSuchKey", err)
	}
}

// TestOpenRemovesTempFiles: bytes of blobs being received when the process died are removed at the next start.
func TestOpenRemovesTempFiles(t *testing.T) {
	srv := startServer(t)
	cfg := config(t, srv)
	left := filepath.Join(cfg.TempDir, "s3put-123")
	if err := os.WriteFile(left, []byte("half a blob"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Open(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("%s is still there after Open: %v", left, err)
	}
}

// TestOpenRefuses: a store that could not work says why at start, not at the first upload.
func TestOpenRefuses(t *testing.T) {
	srv := startServer(t)
	good := config(t, srv)
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "none"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, "none"))
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ACCESS_KEY", "AWS_SECRET_KEY"} {
		t.Setenv(v, "")
	}
	for _, tc := range []struct {
		name string
		edit func(c *s3.Config)
		want string
	}{
		{"missing bucket", func(c *s3.Config) { c.Bucket = "no-such-bucket" }, `bucket "no-such-bucket" at ` + srv.Endpoint + " does not exist"},
		{"unknown access key", func(c *s3.Config) { c.AccessKeyID = "nobody" }, "does not know the access key"},
		{"wrong secret", func(c *s3.Config) { c.SecretAccessKey = "wrong-secret-0123456789" }, "refused the secret key"},
		{"no credentials", func(c *s3.Config) { c.AccessKeyID, c.SecretAccessKey = "", "" }, "no S3 credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			_, err := s3.Open(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	// The shared credentials file, profile by AWS_PROFILE.
	creds := filepath.Join(home, "credentials")
	os.WriteFile(creds, []byte("[default]\naws_access_key_id = nobody\naws_secret_access_key = x\n\n[renkei]\naws_access_key_id = "+srv.AccessKey+"\naws_secret_access_key = "+srv.SecretKey+"\n"), 0o600)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	t.Setenv("AWS_PROFILE", "renkei")
	c := good
	c.AccessKeyID, c.SecretAccessKey = "", ""
	if _, err := s3.Open(context.Background(), c); err != nil {
		t.Errorf("Open with the credentials file's profile: %v", err)
	}
	// And the environment.
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "none"))
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	if _, err := s3.Open(context.Background(), c); err != nil {
		t.Errorf("Open with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: %v", err)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want s3.Config
		err  string
	}{
		{"s3://images", s3.Config{Bucket: "images", Endpoint: "s3.amazonaws.com", Secure: true}, ""},
		{"s3://images?endpoint=127.0.0.1:7070&region=ap-northeast-1&secure=false&prefix=renkei",
			s3.Config{Bucket: "images", Endpoint: "127.0.0.1:7070", Region: "ap-northeast-1", Prefix: "renkei/"}, ""},
		{"s3://images/region-a/?endpoint=s3.example.jp", s3.Config{Bucket: "images", Endpoint: "s3.example.jp", Secure: true, Prefix: "region-a/"}, ""},
		{"s3://key:secret@images", s3.Config{}, "no credentials"},
		{"s3://images?secret_key=x", s3.Config{}, "no credentials"},
		{"s3://images?secure=maybe", s3.Config{}, "true or false"},
		{"s3://images?endpont=x", s3.Config{}, `unknown parameter "endpont"`},
		{"http://images", s3.Config{}, "is not an s3://"},
	} {
		got, err := s3.ParseURL(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error saying %q", tc.url, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.url, diff)
		}
	}
}

// failing makes every PUT whose body goes past limit bytes fail there, as a connection cut in the middle of an
// upload does (minio-go retries; every retry is cut too).
type failing struct {
	rt    http.RoundTripper
	limit int64
}

func (f *failing) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && r.Body != nil && r.ContentLength > f.limit {
		r = r.Clone(r.Context())
		r.Body = &cutBody{ReadCloser: r.Body, left: f.limit}
	}
	return f.rt.RoundTrip(r)
}

type cutBody struct {
	io.ReadCloser
	left int64
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("connection cut by the test")
	}
	n, err := c.ReadCloser.Read(p[:min(int64(len(p)), c.left)])
	c.left -= int64(n)
	return n, err
}

// TestFailedUploadLeavesNothing: an upload cut in the middle, single PUT or multipart, fails Commit and leaves no
// object, no incomplete upload and no temporary file; a multipart upload that a killed node left behind is aborted
// by AbortStaleUploads.
func TestFailedUploadLeavesNothing(t *testing.T) {
	srv := startServer(t)
	cfg := config(t, srv)
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Transport = &failing{rt: tr, limit: 200 << 10}
	ctx := context.Background()
	s, err := s3.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1 << 20, 20 << 20} { // one PUT; parts of 16 MiB (MultipartAbove is 8 MiB here)
		data := blobtest.Bytes(size, 77)
		w, _ := s.Create(ctx)
		w.Write(data)
		if _, _, err := w.Commit(ctx); err == nil {
			t.Fatalf("%d bytes: Commit succeeded through a cut connection", size)
		}
		if _, err := s.Open(ctx, blobtest.Key(data)); renkei.ErrorKind(err) != renkei.NotFound {
			t.Errorf("%d bytes: after the failed upload Open says %v, want NotFound", size, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(cfg.TempDir, "*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	incomplete := func() []string {
		var keys []string
		for u := range srv.Client().ListIncompleteUploads(ctx, cfg.Bucket, "", true) {
			if u.Err != nil {
				t.Fatal(u.Err)
			}
			keys = append(keys, u.Key)
		}
		return keys
	}
	if keys := incomplete(); len(keys) > 0 {
		t.Errorf("incomplete uploads left by a failed Commit: %v", keys)
	}
	// A node killed during a multipart upload leaves it started.
	core := minio.Core{Client: srv.Client()}
	name := s.Object(blobtest.Key([]byte("killed")))
	if _, err := core.NewMultipartUpload(ctx, cfg.Bucket, name, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.AbortStaleUploads(ctx, time.Hour); err != nil || n != 0 {
		t.Errorf("AbortStaleUploads(1h) of a new upload: %d, %v; want 0", n, err)
	}
	time.Sleep(1100 * time.Millisecond) // S3 times are whole seconds
	if n, err := s.AbortStaleUploads(ctx, time.Second); err != nil || n != 1 {
		t.Errorf("AbortStaleUploads: %d, %v; want 1", n, err)
	}
	if keys := incomplete(); len(keys) > 0 {
		t.Errorf("incomplete uploads after AbortStaleUploads: %v", keys)
	}
}
