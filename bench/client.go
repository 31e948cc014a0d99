package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

var client = &http.Client{
	Transport: tokenTransport{&http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}},
	Timeout:   10 * time.Minute,
}

// tokens holds the API token of each renkei server by host:port; requests to it carry the token, as a DICOMweb
// client of a real deployment would.
var tokens sync.Map

type tokenTransport struct{ next http.RoundTripper }

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok, ok := tokens.Load(r.URL.Host); ok {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	return t.next.RoundTrip(r)
}

// stow sends files in requests of perReq instances from clients concurrent clients (PS3.18 10.5). The request
// bodies are built before the clock starts, so that what is timed is the server's ingest and not the client reading
// files and assembling multipart bodies on the same two cores.
func stow(s *server, files []file, clients, perReq int) (rate, error) {
	var reqs []stowRequest
	var total int64
	for i := 0; i < len(files); i += perReq {
		r, err := buildSTOW(files[i:min(i+perReq, len(files))])
		if err != nil {
			return rate{}, err
		}
		reqs = append(reqs, r)
		total += r.n
	}
	ch := make(chan stowRequest)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range ch {
				err := stowOne(s, r)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, r := range reqs {
		ch <- r
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return rate{}, firstErr
	}
	return rate{Files: len(files), Bytes: total, Seconds: time.Since(start).Seconds()}, nil
}

// stowRequest is one STOW-RS request body, ready to send.
type stowRequest struct {
	body        []byte
	contentType string
	n           int64 // bytes of DICOM in it
}

func buildSTOW(files []file) (stowRequest, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	var n int64
	for _, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			return stowRequest{}, err
		}
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		if err != nil {
			return stowRequest{}, err
		}
		pw.Write(b)
		n += int64(len(b))
	}
	mw.Close()
	return stowRequest{body: body.Bytes(), contentType: `multipart/related; type="application/dicom"; boundary=` + mw.Boundary(), n: n}, nil
}

func stowOne(s *server, r stowRequest) error {
	req, _ := http.NewRequest("POST", s.Base+"/studies", bytes.NewReader(r.body))
	req.Header.Set("Content-Type", r.contentType)
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s STOW-RS: %w", s.Name, err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s STOW-RS: %s: %.400s", s.Name, resp.Status, out)
	}
	return nil
}

// latencies holds request times.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// get fetches url with an Accept header and returns the body size and, for JSON arrays, the element count.
func get(u, accept string, decodeArray bool) (n int64, items int, status int, err error) {
	req, _ := http.NewRequest("GET", u, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	if decodeArray {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, 0, resp.StatusCode, err
		}
		if resp.StatusCode == 200 {
			var arr []json.RawMessage
			if len(b) > 0 {
				if err := json.Unmarshal(b, &arr); err != nil {
					return int64(len(b)), 0, resp.StatusCode, fmt.Errorf("%s: not a JSON array: %v", u, err)
				}
			}
			items = len(arr)
		}
		return int64(len(b)), items, resp.StatusCode, nil
	}
	n, err = io.Copy(io.Discard, resp.Body)
	return n, 0, resp.StatusCode, err
}

// timed is the result of repeating one request.
type timed struct {
	Lat   latencies
	Items int   // JSON array length of the last answer
	Bytes int64 // body size of the last answer
}

func (t timed) p50() float64 { return ms(t.Lat.pct(50)) }
func (t timed) p95() float64 { return ms(t.Lat.pct(95)) }

// repeat sends the same GET n times (after warm-up ones) from one client and records each latency.
func repeat(u, accept string, isArray bool, warm, n int) (timed, error) {
	var t timed
	for i := range warm + n {
		start := time.Now()
		size, items, status, err := get(u, accept, isArray)
		d := time.Since(start)
		if err != nil {
			return t, err
		}
		if status != 200 && !(status == 204 && isArray) {
			return t, fmt.Errorf("GET %s: status %d", u, status)
		}
		if i >= warm {
			t.Lat = append(t.Lat, d)
		}
		t.Items, t.Bytes = items, size
	}
	return t, nil
}

// qidoURL builds a study-level QIDO-RS URL.
func qidoURL(s *server, key, value string, extra ...string) string {
	q := url.Values{key: {value}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	// '*' stays literal: Orthanc does not take an escaped %2A as a wildcard.
	return s.Base + "/studies?" + strings.ReplaceAll(q.Encode(), "%2A", "*")
}

// qidoSet is the QIDO-RS measurements on one server.
type qidoSet struct {
	Studies    int // studies the server held
	ByID       timed
	ByName     timed
	ByKanji    timed
	Broad      timed // a broad name prefix, first page (limit=100)
	BroadQuery string
}

func measureQIDO(s *server, studies, warm, n int, broad string) (qidoSet, error) {
	q := qidoSet{Studies: studies}
	var err error
	p := benchPatients[0]
	if q.ByID, err = repeat(qidoURL(s, "PatientID", p.ID), "application/dicom+json", true, warm, n); err != nil {
		return q, err
	}
	if q.ByName, err = repeat(qidoURL(s, "PatientName", "Yamada*"), "application/dicom+json", true, warm, n); err != nil {
		return q, err
	}
	if q.ByKanji, err = repeat(qidoURL(s, "PatientName", "山田*"), "application/dicom+json", true, warm, n); err != nil {
		return q, err
	}
	if broad != "" {
		q.BroadQuery = "PatientName=" + broad + "&limit=100"
		if q.Broad, err = repeat(qidoURL(s, "PatientName", broad, "limit", "100"), "application/dicom+json", true, warm, n); err != nil {
			return q, err
		}
	}
	logf("%s QIDO (%d studies): PatientID p50 %.1f p95 %.1f ms (%d hits); Yamada* p50 %.1f p95 %.1f ms (%d hits); 山田* p95 %.1f ms (%d hits)",
		s.Name, studies, q.ByID.p50(), q.ByID.p95(), q.ByID.Items, q.ByName.p50(), q.ByName.p95(), q.ByName.Items, q.ByKanji.p95(), q.ByKanji.Items)
	if broad != "" {
		logf("%s QIDO %s: p50 %.1f p95 %.1f ms (%d hits)", s.Name, q.BroadQuery, q.Broad.p50(), q.Broad.p95(), q.Broad.Items)
	}
	return q, nil
}

// retrieveAccept is the Accept header for whole-study retrieval as stored.
const retrieveAccept = `multipart/related; type="application/dicom"; transfer-syntax=*`

// measureRetrieve fetches a whole study reps times and returns the median rate.
func measureRetrieve(s *server, study string, files int, reps int) (rate, string, error) {
	u := s.Base + "/studies/" + study
	accept := retrieveAccept
	if _, _, status, err := get(u+"/series", "application/dicom+json", false); err != nil || status != 200 {
		return rate{}, "", fmt.Errorf("%s: study %s not found (%d, %v)", s.Name, study, status, err)
	}
	var rates []rate
	for range reps {
		start := time.Now()
		n, _, status, err := get(u, accept, false)
		d := time.Since(start)
		if err != nil {
			return rate{}, "", err
		}
		if status == 400 || status == 406 {
			// A server that cannot send "as stored" gets the default (Explicit VR Little Endian, which these files are).
			accept = `multipart/related; type="application/dicom"`
			continue
		}
		if status != 200 {
			return rate{}, "", fmt.Errorf("%s retrieve: status %d", s.Name, status)
		}
		rates = append(rates, rate{Files: files, Bytes: n, Seconds: d.Seconds()})
	}
	if len(rates) == 0 {
		return rate{}, "", fmt.Errorf("%s retrieve: no successful run", s.Name)
	}
	slices.SortFunc(rates, func(a, b rate) int {
		if a.mbPerSec() < b.mbPerSec() {
			return -1
		}
		return 1
	})
	return rates[len(rates)/2], accept, nil
}

// measureFrames fetches n random single frames of the multi-frame instance, or as many as fit in budget (at least 20).
func measureFrames(s *server, f file, warm, n int, budget time.Duration) (timed, error) {
	base := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/frames/", s.Base, f.StudyUID, f.SeriesUID, f.SOPInstanceUID)
	r := rand.New(rand.NewPCG(1, 2))
	var t timed
	t0 := time.Now()
	for i := range warm + n {
		if len(t.Lat) >= 20 && time.Since(t0) > budget {
			break
		}
		fr := 1 + r.IntN(f.Frames)
		start := time.Now()
		size, _, status, err := get(fmt.Sprintf("%s%d", base, fr), `multipart/related; type="application/octet-stream"`, false)
		d := time.Since(start)
		if err != nil {
			return t, err
		}
		if status != 200 || size < 512*512*2 {
			return t, fmt.Errorf("%s frame %d: status %d, %d bytes", s.Name, fr, status, size)
		}
		if i >= warm {
			t.Lat = append(t.Lat, d)
		}
		t.Bytes = size
	}
	return t, nil
}
