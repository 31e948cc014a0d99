package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"renkei/internal/dicomtest"
)

// TestOperations: what a region's IT staff point their monitoring at. /readyz says whether the node can serve (and
// why not, when the data disk is gone); /metrics gives Prometheus the ingest counts, request latencies by kind and
// the index's queue, to the loopback and the allowed networks only (anyone else gets 404, as for a page that does
// not exist).
func TestOperations(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	token := provisionToken(t, data)
	base, stop := serveForTest(t, "serve", "--data", data, "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn",
		"--trusted-proxies", "127.0.0.1", "--metrics-allow", "198.51.100.0/24")
	defer stop()
	client := &http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: time.Minute}
	get := func(path string, header ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := get("/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz: %d %q, want 200 ready", code, body)
	}

	// Three CT instances by STOW-RS, one of them twice, and a QIDO-RS search.
	var files [][]byte
	for i := range 3 {
		files = append(files, ctBytes(t, filepath.Join(dir, fmt.Sprintf("ct%d.dcm", i)), dicomtest.CTOptions{PatientID: "OPS1", StudyInstanceUID: dicomtest.UID("ops/study"),
			SeriesInstanceUID: dicomtest.UID("ops/series"), SOPInstanceUID: dicomtest.UID(fmt.Sprint("ops/sop/", i)), Rows: 64, Cols: 64, InstanceNumber: i + 1}))
	}
	if err := stow(client, base+"/dicomweb/studies", files...); err != nil {
		t.Fatal(err)
	}
	if err := stow(client, base+"/dicomweb/studies", files[0]); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(base + "/dicomweb/studies?PatientID=OPS1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	code, text := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics from the loopback: %d", code)
	}
	value := func(series string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("/metrics has no %s", series)
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	if v := value(`renkei_instances_total{outcome="stored",transport="stow"}`); v != 3 {
		t.Errorf("instances stored by STOW-RS: %v, want 3", v)
	}
	if v := value(`renkei_instances_total{outcome="duplicate",transport="stow"}`); v != 1 {
		t.Errorf("duplicates by STOW-RS: %v, want 1", v)
	}
	if v := value(`renkei_instance_bytes_total{transport="stow"}`); v != float64(len(files[0])+len(files[1])+len(files[2])) {
		t.Errorf("bytes stored: %v, want %d", v, len(files[0])+len(files[1])+len(files[2]))
	}
	if v := value(`renkei_http_request_duration_seconds_count{code="200",method="POST",route="stow"}`); v != 2 {
		t.Errorf("STOW-RS requests timed: %v, want 2", v)
	}
	if v := value(`renkei_http_request_duration_seconds_count{code="200",method="GET",route="qido"}`); v != 1 {
		t.Errorf("QIDO-RS requests timed: %v, want 1", v)
	}
	if v := value(`renkei_http_request_duration_seconds_count{code="200",method="GET",route="GET /readyz"}`); v != 1 {
		t.Errorf("/readyz requests timed: %v, want 1", v)
	}
	if v := value(`renkei_index_queue_depth`); v != 0 {
		t.Errorf("index queue at rest: %v, want 0", v)
	}
	if strings.Contains(text, "ops/sop") || strings.Contains(text, dicomtest.UID("ops/study")) {
		t.Errorf("/metrics names a UID: labels must be bounded")
	}

	// Through the trusted proxy: a client on an allowed network may scrape, another sees nothing.
	if code, _ := get("/metrics", "X-Forwarded-For", "198.51.100.7"); code != http.StatusOK {
		t.Errorf("/metrics from an allowed network: %d, want 200", code)
	}
	if code, body := get("/metrics", "X-Forwarded-For", "203.0.113.9"); code != http.StatusNotFound || strings.Contains(body, "renkei_") {
		t.Errorf("/metrics from elsewhere: %d, want 404 and nothing of the metrics", code)
	}

	// The data disk goes away (unmounted, or its folder removed): the node says it is not ready, and why.
	blobs := filepath.Join(data, "blobs")
	if err := os.Rename(blobs, blobs+".away"); err != nil {
		t.Fatal(err)
	}
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "blob store") {
		t.Errorf("/readyz without the blob folder: %d %s, want 503 naming the blob store", code, body)
	}
	// The reason names the region's own paths and hosts: a client elsewhere hears only "not ready".
	code, body = get("/readyz", "X-Forwarded-For", "203.0.113.9")
	if code != http.StatusServiceUnavailable || strings.Contains(body, "blob") || strings.Contains(body, data) {
		t.Errorf("/readyz from elsewhere: %d %s, want 503 without the reason", code, body)
	}
	if err := os.Rename(blobs+".away", blobs); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with the folder back: %d, want 200", code)
	}
}
