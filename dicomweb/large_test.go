package dicomweb_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"renkei/internal/dicomtest"
)

// heapWatch samples the process's heap until stopped and reports the peak, in bytes.
func heapWatch() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// TestLargeMultiFrameStreams stores and retrieves a big multi-frame object and checks that the server streams it: the
// heap never holds more than a small fraction of the object. The default is 256 MB so CI stays quick;
// RENKEI_LARGE_MB=2048 runs the 2 GB case.
func TestLargeMultiFrameStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a large file")
	}
	mb := 256
	if v := os.Getenv("RENKEI_LARGE_MB"); v != "" {
		mb, _ = strconv.Atoi(v)
	}
	frames := mb * 2 // 512×512×2 bytes = 0.5 MB a frame
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "big.dcm")
	study, series, sop := dicomtest.UID("large-study"), dicomtest.UID("large-series"), dicomtest.UID("large-sop")
	if err := dicomtest.MultiFrame(path, dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: sop,
		PatientID: "BIG", Rows: 512, Cols: 512, Frames: frames, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	h := sha256.New()
	io.Copy(h, f)
	want := h.Sum(nil)
	runtime.GC()
	stop := heapWatch()

	// STOW-RS, streamed from the file through a pipe: neither side holds the object.
	f.Seek(0, io.SeekStart)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		_, err := io.Copy(w, f)
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, _ := http.NewRequest("POST", e.url+"/studies", pr)
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("STOW-RS of a %d MB object: %d %s", st.Size()>>20, resp.StatusCode, body)
	}
	storePeak := stop()

	// WADO-RS, stored bytes and the default syntax (the object is Explicit VR LE already, so both stream).
	for _, accept := range []string{`multipart/related; type="application/dicom"; transfer-syntax=*`, ""} {
		runtime.GC()
		stop = heapWatch()
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/studies/%s/series/%s/instances/%s", e.url, study, series, sop), nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		mr := multipart.NewReader(resp.Body, params["boundary"])
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, p)
		resp.Body.Close()
		if err != nil || n != st.Size() || !bytes.Equal(h.Sum(nil), want) {
			t.Fatalf("retrieve (%q) returned %d of %d bytes, or different bytes (err %v)", accept, n, st.Size(), err)
		}
		if peak := stop(); peak > storePeak {
			storePeak = peak
		}
	}

	// One frame from the middle is cut out of the file without reading the rest.
	mid := frames / 2
	status, ct, b := e.get(fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/frames/%d", e.url, study, series, sop, mid), "")
	if status != 200 {
		t.Fatalf("frame %d: %d %s", mid, status, b)
	}
	got, _ := parts(t, ct, b)
	frameSize := int64(512 * 512 * 2)
	wantFrame := make([]byte, frameSize)
	f.ReadAt(wantFrame, st.Size()-int64(frames-mid+1)*frameSize)
	if len(got) != 1 || !bytes.Equal(got[0], wantFrame) {
		t.Errorf("frame %d differs from the file's bytes", mid)
	}

	limit := uint64(300 << 20)
	if frac := uint64(st.Size()) / 4; frac < limit {
		limit = frac
	}
	t.Logf("object %d MB, peak heap %d MB", st.Size()>>20, storePeak>>20)
	if storePeak > limit {
		t.Errorf("peak heap %d MB while moving a %d MB object; it must stream (limit %d MB)", storePeak>>20, st.Size()>>20, limit>>20)
	}
}
