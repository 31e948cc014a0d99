package dicomweb

import (
	"image"
	"image/jpeg"
	"image/png"
	"net/http"
	"strconv"
	"strings"

	"renkei"
	"renkei/render"
)

// renderOptions reads PS3.18 8.3.5.1 rendering parameters: window=center,width[,function], viewport=vw,vh and
// quality=1–100 (JPEG).
func renderOptions(r *http.Request, defViewport int) (render.Options, int, error) {
	const op = "dicomweb.Rendered"
	q := r.URL.Query()
	var o render.Options
	if w := q.Get("window"); w != "" {
		p := strings.Split(w, ",")
		c, err1 := strconv.ParseFloat(strings.TrimSpace(p[0]), 64)
		var width float64
		var err2 error = errBadWindow
		if len(p) > 1 {
			width, err2 = strconv.ParseFloat(strings.TrimSpace(p[1]), 64)
		}
		if err1 != nil || err2 != nil || width <= 0 {
			return o, 0, renkei.Errorf(op, renkei.Invalid, "window must be center,width with a positive width, not %q", w)
		}
		if len(p) > 2 && !strings.EqualFold(strings.TrimSpace(p[2]), "linear") {
			return o, 0, renkei.Errorf(op, renkei.Invalid, "only the linear VOI function is rendered, not %q", p[2])
		}
		o.Center, o.Width = c, width
	}
	o.Viewport = image.Pt(defViewport, defViewport)
	if v := q.Get("viewport"); v != "" {
		p := strings.Split(v, ",")
		w, err1 := strconv.Atoi(strings.TrimSpace(p[0]))
		h := w
		var err2 error
		if len(p) > 1 {
			h, err2 = strconv.Atoi(strings.TrimSpace(p[1]))
		}
		if err1 != nil || err2 != nil || w <= 0 || h <= 0 || w > 8192 || h > 8192 {
			return o, 0, renkei.Errorf(op, renkei.Invalid, "viewport must be width,height in pixels (up to 8192), not %q", v)
		}
		o.Viewport = image.Pt(w, h)
	}
	quality := 90
	if s := q.Get("quality"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return o, 0, renkei.Errorf(op, renkei.Invalid, "quality must be 1 to 100, not %q", s)
		}
		quality = n
	}
	return o, quality, nil
}

var errBadWindow = renkei.Errorf("dicomweb.Rendered", renkei.Invalid, "window needs a width")

// rendered answers an instance's frame as image/jpeg (the PS3.18 default) or image/png (when accepted first), with
// the file's window unless window= says otherwise.
func (h *Handler) rendered(w http.ResponseWriter, r *http.Request) {
	h.renderedAt(w, r, 0)
}

// thumbnail is rendered at a small size, of the instance, or of the middle instance of a series or study.
func (h *Handler) thumbnail(w http.ResponseWriter, r *http.Request) {
	h.renderedAt(w, r, 128)
}

func (h *Handler) renderedAt(w http.ResponseWriter, r *http.Request, viewport int) {
	opt, quality, err := renderOptions(r, viewport)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	frame := 1
	if f := r.PathValue("frame"); f != "" {
		if frame, err = strconv.Atoi(f); err != nil || frame < 1 || strings.Contains(f, ",") {
			h.problem(w, r, renkei.Errorf("dicomweb.Rendered", renkei.Invalid, "one frame number is rendered at a time, not %q", f))
			return
		}
	}
	recs, err := h.Archive.Instances(r.Context(), r.PathValue("study"), r.PathValue("series"), r.PathValue("instance"))
	if err != nil {
		h.problem(w, r, err)
		return
	}
	rec := recs[len(recs)/2] // a series' or study's thumbnail shows its middle image
	o, err := h.Archive.Open(r.Context(), rec, false, 1<<20)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	defer o.Close()
	img, err := o.Rendered(frame, opt)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	asPNG := strings.Contains(r.Header.Get("Accept"), "image/png") &&
		(!strings.Contains(r.Header.Get("Accept"), "image/jpeg") || strings.Index(r.Header.Get("Accept"), "image/png") < strings.Index(r.Header.Get("Accept"), "image/jpeg"))
	w.Header().Set("Cache-Control", "private, max-age=3600")
	if asPNG {
		w.Header().Set("Content-Type", "image/png")
		png.Encode(w, img)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	jpeg.Encode(w, img, &jpeg.Options{Quality: quality})
}
