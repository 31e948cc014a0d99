package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"renkei/internal/dicomtest"
	"renkei/internal/s3test"
)

// TestServeBlobsS3 runs `renkei serve --blobs s3://…` against a real versitygw, with credentials from the AWS
// environment variables as the README says: instances sent over STOW-RS land in the bucket as ab/cd/<sha256>
// objects (seen in versitygw's own folder), come back over WADO-RS byte for byte, and single frames of a multi-frame
// object are cut out of the object by ranged reads. A missing bucket or a wrong key stops the server at start with a
// sentence that says so.
func TestServeBlobsS3(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	token := provisionToken(t, data)
	srv.Setenv(t, filepath.Join(dir, "no-such-file"))
	blobs := srv.BlobsURL(bucket, "region-a")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--data", data, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn", "--blobs", blobs}, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no start-up line (%v): %s", err, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`http://(\S+)/dicomweb`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("start-up line does not give the address: %q", line)
	}
	base := "http://" + m[1] + "/dicomweb"
	client := &http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: time.Minute}

	gen := t.TempDir()
	study := dicomtest.UID("s3/study")
	files := map[string][]byte{} // SOP Instance UID → bytes sent
	opts := []dicomtest.CTOptions{
		{SOPInstanceUID: dicomtest.UID("s3/ct"), Rows: 256, Cols: 256, Seed: 1, InstanceNumber: 1},
		{SOPInstanceUID: dicomtest.UID("s3/mf"), Rows: 256, Cols: 256, Frames: 40, Seed: 2, InstanceNumber: 2},
	}
	var sent [][]byte
	for i, o := range opts {
		o.StudyInstanceUID, o.SeriesInstanceUID, o.PatientID = study, dicomtest.UID(fmt.Sprintf("s3/series/%d", i)), "S3TEST"
		path := filepath.Join(gen, fmt.Sprintf("%d.dcm", i))
		write := dicomtest.CT
		if o.Frames > 1 {
			write = dicomtest.MultiFrame
		}
		if err := write(path, o); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[o.SOPInstanceUID] = b
		sent = append(sent, b)
	}
	if err := stow(client, base+"/studies", sent...); err != nil {
		t.Fatal(err)
	}

	for i, o := range opts {
		sent := files[o.SOPInstanceUID]
		// In the bucket, under the prefix, as versitygw's posix backend keeps it: one file per object.
		sum := sha256.Sum256(sent)
		key := hex.EncodeToString(sum[:])
		stored, err := os.ReadFile(filepath.Join(srv.Dir, bucket, "region-a", key[:2], key[2:4], key))
		if err != nil {
			t.Fatalf("instance %d is not in the bucket as region-a/%s/%s/%s: %v", i, key[:2], key[2:4], key, err)
		}
		if !bytes.Equal(stored, sent) {
			t.Errorf("instance %d: the object holds %d bytes that differ from the %d sent", i, len(stored), len(sent))
		}
		// WADO-RS gives back exactly the bytes sent.
		url := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s", base, study, dicomtest.UID(fmt.Sprintf("s3/series/%d", i)), o.SOPInstanceUID)
		parts := getParts(t, client, url, `multipart/related; type="application/dicom"; transfer-syntax=*`)
		if len(parts) != 1 || !bytes.Equal(parts[0], sent) {
			t.Errorf("instance %d: WADO-RS returned %d parts, not the %d bytes sent", i, len(parts), len(sent))
		}
	}
	// Single frames of the multi-frame object: its pixel data is the last element, 40 frames of 256×256×2 bytes.
	mf := files[dicomtest.UID("s3/mf")]
	frameLen := 256 * 256 * 2
	pixels := mf[len(mf)-40*frameLen:]
	for _, n := range []int{1, 17, 40} {
		url := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/frames/%d", base, study, dicomtest.UID("s3/series/1"), dicomtest.UID("s3/mf"), n)
		parts := getParts(t, client, url, `multipart/related; type="application/octet-stream"; transfer-syntax=*`)
		if want := pixels[(n-1)*frameLen : n*frameLen]; len(parts) != 1 || !bytes.Equal(parts[0], want) {
			t.Errorf("frame %d: %d parts, not the frame's %d bytes", n, len(parts), frameLen)
		}
	}
	// Metadata: the header parsed from the object's first bytes, its pixel data left in the bucket.
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/studies/%s/metadata", base, study), nil)
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), dicomtest.UID("s3/mf")) || !strings.Contains(string(b), "BulkDataURI") {
		t.Errorf("study metadata: %s: %.300s", resp.Status, b)
	}
	if _, err := os.Stat(filepath.Join(data, "blobs")); !os.IsNotExist(err) {
		t.Errorf("with --blobs s3://… the data folder has a blobs/ folder too (%v)", err)
	}
	// renkei admin verify reads every object back from the bucket and finds the region whole; an object put there by
	// something else is listed as referred to by nothing.
	var vout, verr bytes.Buffer
	if code := Main(context.Background(), []string{"admin", "verify", "--data", data, "--blobs", blobs}, &vout, &verr); code != 0 ||
		!strings.Contains(vout.String(), "index and blobs agree") || !strings.Contains(vout.String(), "blobs nothing refers to: none") {
		t.Errorf("admin verify on S3: exit %d\n%s%s", code, vout.String(), verr.String())
	}
	stray := []byte("not an instance")
	sum := sha256.Sum256(stray)
	strayKey := hex.EncodeToString(sum[:])
	if _, err := srv.Client().PutObject(context.Background(), bucket, "region-a/"+strayKey[:2]+"/"+strayKey[2:4]+"/"+strayKey, bytes.NewReader(stray), int64(len(stray)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	vout.Reset()
	if code := Main(context.Background(), []string{"admin", "verify", "--data", data, "--blobs", blobs}, &vout, &verr); code != 0 ||
		!strings.Contains(vout.String(), "not referred to: "+strayKey) {
		t.Errorf("admin verify on S3 with a stray object: exit %d\n%s%s", code, vout.String(), verr.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}

	// Wrong settings stop the server at start, saying what is wrong.
	for _, tc := range []struct {
		name, blobs, secret, want string
	}{
		{"missing bucket", fmt.Sprintf("s3://no-such-bucket?endpoint=%s&secure=false", srv.Endpoint), srv.SecretKey, `bucket "no-such-bucket" at ` + srv.Endpoint + " does not exist"},
		{"wrong secret key", blobs, "not-the-secret-key", "refused the secret key (AWS_SECRET_ACCESS_KEY)"},
		{"key in the URL", fmt.Sprintf("s3://%s:%s@%s?endpoint=%s", srv.AccessKey, srv.SecretKey, bucket, srv.Endpoint), srv.SecretKey, "put no credentials in the s3:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_SECRET_ACCESS_KEY", tc.secret)
			var out, errb bytes.Buffer
			code := Main(context.Background(), []string{"serve", "--data", data, "--http", "127.0.0.1:0", "--dimse", "off", "--blobs", tc.blobs}, &out, &errb)
			if code != 1 || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("serve exited %d saying %q; want 1 and %q", code, errb.String(), tc.want)
			}
			if strings.Contains(out.String(), "renkei is running") {
				t.Error("serve said it was running")
			}
		})
	}
}

// getParts GETs a DICOMweb multipart/related answer and returns its parts.
func getParts(t *testing.T, c *http.Client, url, accept string) [][]byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", accept)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	var parts [][]byte
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, b)
	}
}

// TestServeHelpBlobs: --help says where S3 credentials come from, and that it is never the command line.
func TestServeHelpBlobs(t *testing.T) {
	var out, errb bytes.Buffer
	Main(context.Background(), []string{"serve", "--help"}, &out, &errb)
	for _, want := range []string{"-blobs", "s3://BUCKET?endpoint=HOST:PORT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "never from the command line"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("serve --help does not mention %s", want)
		}
	}
}
