// Package metrics exposes what the region's IT staff watch from Prometheus: the ingest rate (instances and bytes
// stored, by transport and outcome), the latency and errors of HTTP requests (by route: QIDO-RS, WADO-RS, STOW-RS,
// the web app's API), queue depths, and the Go runtime and process figures. Labels are bounded: routes are the
// server's route patterns or DICOMweb's request kinds, never a path with UIDs in it.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one process's registry. Its methods are safe for concurrent use.
type Metrics struct {
	Registry *prometheus.Registry

	requests *prometheus.HistogramVec
	stored   *prometheus.CounterVec
	bytes    *prometheus.CounterVec
}

// New makes a registry with the Go runtime's and the process's collectors.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "renkei_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route (a route pattern, or a DICOMweb request kind), method and status code.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route", "method", "code"})
	m.stored = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "renkei_instances_total",
		Help: "DICOM instances received, by transport (stow, dimse, upload, other) and outcome (stored, duplicate, refused).",
	}, []string{"transport", "outcome"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "renkei_instance_bytes_total",
		Help: "Bytes of the DICOM instances stored (new ones only), by transport.",
	}, []string{"transport"})
	m.Registry.MustRegister(m.requests, m.stored, m.bytes)
	return m
}

// Handler serves the registry in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Gauge registers a value read when scraped (a queue's depth).
func (m *Metrics) Gauge(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Counter registers a count kept elsewhere, read when scraped (a counter that only grows).
func (m *Metrics) Counter(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Stored counts one received instance. source is the archive's ("STOW-RS", "C-STORE from CT1", "upload"…); size
// counts only for a newly stored one.
func (m *Metrics) Stored(source, outcome string, size int64) {
	t := Transport(source)
	m.stored.WithLabelValues(t, outcome).Inc()
	if outcome == "stored" && size > 0 {
		m.bytes.WithLabelValues(t).Add(float64(size))
	}
}

// Transport names the way an instance came in, from the archive's source text.
func Transport(source string) string {
	switch {
	case strings.HasPrefix(source, "STOW-RS"):
		return "stow"
	case strings.HasPrefix(source, "C-STORE"), strings.HasPrefix(source, "C-MOVE"), strings.HasPrefix(source, "C-GET"):
		return "dimse"
	case strings.Contains(strings.ToLower(source), "upload"), strings.Contains(strings.ToLower(source), "dicomdir"):
		return "upload"
	}
	return "other"
}

// Request records one answered HTTP request. route is the request's route pattern ("" when none matched); DICOMweb
// requests are named by their kind instead (see DICOMweb).
func (m *Metrics) Request(r *http.Request, route string, status int, took time.Duration) {
	if strings.HasPrefix(r.URL.Path, "/dicomweb/") || r.URL.Path == "/dicomweb" {
		route = DICOMweb(r.Method, r.URL.Path, r.URL.Query().Get("requestType") != "")
	}
	if route == "" {
		route = "unmatched"
	}
	if status == 0 {
		status = http.StatusOK
	}
	m.requests.WithLabelValues(route, method(r.Method), strconv.Itoa(status)).Observe(took.Seconds())
}

// method keeps the label's values to the methods the server answers.
func method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// DICOMweb names the kind of a DICOMweb request from its method and path: qido, stow, wado, wado-metadata,
// wado-frames, wado-bulkdata, wado-rendered, wado-uri, delete, other.
func DICOMweb(method, path string, wadoURI bool) string {
	rest := strings.Trim(strings.TrimPrefix(path, "/dicomweb"), "/")
	parts := strings.Split(rest, "/")
	last := parts[len(parts)-1]
	switch {
	case last == "wado" || wadoURI:
		return "wado-uri"
	case method == http.MethodPost:
		return "stow"
	case method == http.MethodDelete:
		return "delete"
	case method == http.MethodOptions:
		return "preflight"
	case method != http.MethodGet && method != http.MethodHead:
		return "other"
	case last == "studies" || last == "series" || last == "instances":
		return "qido"
	case last == "metadata":
		return "wado-metadata"
	case last == "rendered" || last == "thumbnail":
		return "wado-rendered"
	case len(parts) >= 2 && parts[len(parts)-2] == "frames":
		return "wado-frames"
	case strings.Contains(rest, "/bulkdata"):
		return "wado-bulkdata"
	case len(parts) >= 2:
		return "wado"
	}
	return "other"
}
