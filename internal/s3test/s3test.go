// Package s3test runs a real S3-compatible server for tests: versitygw (github.com/versity/versitygw, Apache-2.0)
// serving a temporary folder on a loopback port, as scripts/setup installs it. Not a fake: the tests talk S3 over
// HTTP to the same server code that runs in production deployments of versitygw.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Version is the versitygw release the tests run; scripts/setup installs the same one.
const Version = "v1.8.0"

// Server is a running versitygw.
type Server struct {
	Endpoint  string // 127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Dir       string // the posix root: bucket B is the folder Dir/B, object a/b/c the file Dir/B/a/b/c

	cmd    *exec.Cmd
	stdout *bytes.Buffer
	client *minio.Client
}

// Binary finds versitygw: $RENKEI_VERSITYGW, the PATH, or $(go env GOPATH)/bin where scripts/setup installs it.
func Binary() (string, error) {
	if p := os.Getenv("RENKEI_VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("versitygw not found: run scripts/setup (it runs: GOBIN=$(go env GOPATH)/bin go install github.com/versity/versitygw/cmd/versitygw@%s)", Version)
}

// Start runs versitygw on a free loopback port with a new folder, until the test ends. Without the binary the test
// is skipped, except on CI (CI set), where scripts/setup must have installed it and its absence fails the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
	// Not tb.TempDir: a server may outlive the test that started it (a package's tests share one).
	dir, err := os.MkdirTemp("", "versitygw-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{AccessKey: "renkeitest", SecretKey: "renkeitest-secret-0123456789", Dir: dir, stdout: &bytes.Buffer{}}
	// A port the kernel just handed out and took back; versitygw binds it a moment later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.Endpoint = ln.Addr().String()
	ln.Close()
	s.cmd = exec.Command(bin, "--port", s.Endpoint, "--quiet", "--keep-alive", "posix", s.Dir)
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stdout
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("start versitygw: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	tb.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Endpoint, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			exited <- err
			tb.Fatalf("versitygw exited at start (%v):\n%s", err, s.stdout.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("versitygw does not listen on %s after 30 s:\n%s", s.Endpoint, s.stdout.String())
		}
	}
	s.client, err = minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

var bucketSeq struct {
	sync.Mutex
	n int
}

// Bucket makes a new, empty bucket and returns its name.
func (s *Server) Bucket(tb testing.TB) string {
	tb.Helper()
	bucketSeq.Lock()
	bucketSeq.n++
	name := fmt.Sprintf("renkei-test-%d", bucketSeq.n)
	bucketSeq.Unlock()
	if err := s.client.MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		tb.Fatalf("make bucket %s: %v", name, err)
	}
	return name
}

// Client is a client with the server's root credentials, for looking at what a test stored.
func (s *Server) Client() *minio.Client { return s.client }

// BlobsURL is the --blobs URL of bucket on this server (prefix may be empty).
func (s *Server) BlobsURL(bucket, prefix string) string {
	u := fmt.Sprintf("s3://%s?endpoint=%s&region=us-east-1&secure=false", bucket, s.Endpoint)
	if prefix != "" {
		u += "&prefix=" + prefix
	}
	return u
}

// Env is the AWS environment a renkei process reads the server's credentials from, as the README tells operators
// to give them: keys in the environment, no credentials file (none is a path that does not exist), no profile.
func (s *Server) Env(noFile string) []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_SHARED_CREDENTIALS_FILE=" + noFile, "AWS_PROFILE="}
}

// Setenv sets Env in the test's own environment, for renkei run in the test's process.
func (s *Server) Setenv(tb testing.TB, noFile string) {
	for _, kv := range s.Env(noFile) {
		k, v, _ := strings.Cut(kv, "=")
		tb.Setenv(k, v)
	}
}
