// Package dicomweb serves DICOMweb (PS3.18): STOW-RS, QIDO-RS, WADO-RS and WADO-URI over the archive service, with
// CORS for viewers served from other origins. Errors are problem+json (RFC 9457), mapped from renkei error kinds here
// and nowhere else.
package dicomweb

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"renkei"
	"renkei/archive"
)

// Handler serves DICOMweb under Prefix (e.g. "/dicomweb").
type Handler struct {
	Archive *archive.Service
	Logger  *slog.Logger
	Prefix  string
	// AllowedOrigins lists the origins (scheme://host[:port]) whose scripts may call DICOMweb; "*" allows any.
	AllowedOrigins []string
	// MaxParts bounds the parts of one STOW-RS request; MaxDecodedRatio bounds how much a Content-Encoding may
	// expand the body (a defence against compression bombs).
	MaxParts        int
	MaxDecodedRatio int64

	mux    *http.ServeMux
	routes []string
}

// New builds the handler and its routes.
func New(a *archive.Service, logger *slog.Logger, prefix string) *Handler {
	if logger == nil {
		logger = slog.Default()
	}
	h := &Handler{Archive: a, Logger: logger, Prefix: strings.TrimSuffix(prefix, "/"), MaxParts: 10000, MaxDecodedRatio: 200}
	h.mux = http.NewServeMux()
	m := routeRecorder{h}
	p := h.Prefix
	m.HandleFunc("POST "+p+"/studies", h.stow)
	m.HandleFunc("POST "+p+"/studies/{study}", h.stow)

	m.HandleFunc("GET "+p+"/studies", h.qido(renkei.StudyLevel))
	m.HandleFunc("GET "+p+"/series", h.qido(renkei.SeriesLevel))
	m.HandleFunc("GET "+p+"/instances", h.qido(renkei.InstanceLevel))
	m.HandleFunc("GET "+p+"/studies/{study}/series", h.qido(renkei.SeriesLevel))
	m.HandleFunc("GET "+p+"/studies/{study}/instances", h.qido(renkei.InstanceLevel))
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}/instances", h.qido(renkei.InstanceLevel))

	m.HandleFunc("GET "+p+"/studies/{study}", exporting(h.retrieve))
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}", exporting(h.retrieve))
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}/instances/{instance}", exporting(h.retrieve))
	m.HandleFunc("GET "+p+"/studies/{study}/metadata", reading(h.metadata))
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}/metadata", reading(h.metadata))
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}/instances/{instance}/metadata", reading(h.metadata))
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", reading(h.frames))
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}/instances/{instance}/bulkdata/{path...}", reading(h.bulkdata))
	m.HandleFunc("GET "+p+"/wado", exporting(h.wadoURI))
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}/instances/{instance}/rendered", reading(h.rendered))
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered", reading(h.rendered))
	// A thumbnail is part of listing a study (recorded as the query that showed it), not a look at its images.
	m.HandleFunc("GET "+p+"/studies/{study}/thumbnail", h.thumbnail)
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}/thumbnail", h.thumbnail)
	m.HandleFunc("GET "+p+"/studies/{study}/series/{series}/instances/{instance}/thumbnail", h.thumbnail)

	m.HandleFunc("DELETE "+p+"/studies/{study}", h.delete)
	m.HandleFunc("DELETE "+p+"/studies/{study}/series/{series}", h.delete)
	m.HandleFunc("DELETE "+p+"/studies/{study}/series/{series}/instances/{instance}", h.delete)

	m.HandleFunc("GET /api/trash", h.trashList)
	m.HandleFunc("POST /api/trash/studies/{study}/restore", h.restore)
	m.HandleFunc("DELETE /api/trash/studies/{study}", h.purgeNow)
	m.HandleFunc("POST /api/trash/studies/{study}/series/{series}/restore", h.restore)
	m.HandleFunc("POST /api/trash/studies/{study}/series/{series}/instances/{instance}/restore", h.restore)
	return h
}

// routeRecorder registers routes and remembers their patterns.
type routeRecorder struct{ h *Handler }

func (m routeRecorder) HandleFunc(pattern string, f http.HandlerFunc) {
	m.h.routes = append(m.h.routes, pattern)
	m.h.mux.HandleFunc(pattern, f)
}

// reading marks a handler's archive reads as looking at the data (renkei.ActionRead), not listing it.
func reading(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f(w, r.WithContext(renkei.WithAction(r.Context(), renkei.ActionRead)))
	}
}

// exporting marks a handler's archive reads as sending whole objects out (renkei.ActionExport): the monitoring rules
// count downloads apart from looks in the viewer.
func exporting(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f(w, r.WithContext(renkei.WithAction(r.Context(), renkei.ActionExport)))
	}
}

// Routes lists the registered route patterns.
func (h *Handler) Routes() []string { return slices.Clone(h.routes) }

// ServeHTTP applies CORS, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && h.originAllowed(origin) {
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Add("Vary", "Origin")
		hd.Set("Access-Control-Expose-Headers", "Warning, Content-Location, Content-Type, Content-Length")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hd.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			hd.Set("Access-Control-Allow-Headers", "Accept, Authorization, Content-Type, Content-Encoding")
			hd.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	} else if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.problem(w, r, renkei.Errorf("dicomweb", renkei.Forbidden, "origin %q is not allowed to use DICOMweb here", origin))
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) originAllowed(origin string) bool {
	return slices.Contains(h.AllowedOrigins, "*") || slices.Contains(h.AllowedOrigins, origin)
}

// problem writes err as problem+json (RFC 9457). Internal details go to the log, not to the client. The detail is
// English unless the client asks for Japanese (a browser set to Japanese does; DICOMweb clients do not).
func (h *Handler) problem(w http.ResponseWriter, r *http.Request, err error) {
	status := HTTPStatus(err)
	detail := renkei.ErrorMessageIn(err, renkei.AcceptLanguage(r.Header.Get("Accept-Language")))
	if status >= 500 {
		h.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		h.Logger.Info("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	WriteProblem(w, status, detail)
}

// WriteProblem writes an RFC 9457 problem document.
func WriteProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
}

// HTTPStatus maps a renkei error kind to an HTTP status.
func HTTPStatus(err error) int {
	switch renkei.ErrorKind(err) {
	case renkei.Invalid:
		return http.StatusBadRequest
	case renkei.NotFound:
		return http.StatusNotFound
	case renkei.Conflict:
		return http.StatusConflict
	case renkei.Unauthorized:
		return http.StatusUnauthorized
	case renkei.Forbidden:
		return http.StatusForbidden
	case renkei.Unavailable:
		return http.StatusServiceUnavailable
	case renkei.TooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// baseURL is the absolute URL of the DICOMweb root as the client reached it.
func (h *Handler) baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host + h.Prefix
}
