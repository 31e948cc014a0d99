package dicomweb

import (
	"fmt"
	"io"

	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
	"sync"

	"renkei"
	"renkei/archive"
	"renkei/codec"
	"renkei/dicom"
	"renkei/dicom/charset"
)

// mediaRange is one entry of an Accept header.
type mediaRange struct {
	typ    string
	params map[string]string
	q      float64
}

// accepts parses the Accept header (or the accept query parameter, PS3.18 8.3.3.1), best first.
func accepts(r *http.Request) []mediaRange {
	h := r.URL.Query().Get("accept")
	if h == "" {
		h = strings.Join(r.Header.Values("Accept"), ",")
	}
	var out []mediaRange
	for _, part := range splitAccept(h) {
		t, params, err := mime.ParseMediaType(part)
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		out = append(out, mediaRange{typ: t, params: params, q: q})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].q > out[j].q })
	if len(out) == 0 {
		out = []mediaRange{{typ: "*/*", params: map[string]string{}, q: 1}}
	}
	return out
}

// splitAccept splits an Accept header at commas outside quoted strings.
func splitAccept(s string) []string {
	var out []string
	inQ, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQ = !inQ
		case ',':
			if !inQ {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if t := strings.TrimSpace(s[start:]); t != "" {
		out = append(out, t)
	}
	return out
}

// retrieveSyntax picks the transfer syntax for instance retrieval from the Accept header: the default is Explicit VR
// Little Endian (PS3.18 8.7.3.5.2); "*" sends the stored bytes. ok is false when nothing acceptable can be produced.
func retrieveSyntax(r *http.Request, recs []renkei.InstanceRecord) (string, bool) {
	for _, m := range accepts(r) {
		inner := m.params["type"]
		switch {
		case m.typ == "*/*" || m.typ == "multipart/*":
			return dicom.ExplicitVRLittleEndian, true
		case m.typ == "multipart/related" && (inner == "" || inner == "application/dicom"),
			m.typ == "application/dicom":
			ts := m.params["transfer-syntax"]
			if ts == "" {
				ts = dicom.ExplicitVRLittleEndian
			}
			ok := true
			for _, rec := range recs {
				if !archive.CanConvert(rec.TransferSyntaxUID, ts) {
					ok = false
					break
				}
			}
			if ok {
				return ts, true
			}
		}
	}
	return "", false
}

func (h *Handler) retrieve(w http.ResponseWriter, r *http.Request) {
	recs, err := h.Archive.Instances(r.Context(), r.PathValue("study"), r.PathValue("series"), r.PathValue("instance"))
	if err != nil {
		h.problem(w, r, err)
		return
	}
	ts, ok := retrieveSyntax(r, recs)
	if !ok {
		WriteProblem(w, http.StatusNotAcceptable, "the requested transfer syntax cannot be produced for these instances; ask for transfer-syntax=* to get them as stored, or for Explicit VR Little Endian (1.2.840.10008.1.2.1)")
		return
	}
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", fmt.Sprintf(`multipart/related; type="application/dicom"; boundary=%s`, mw.Boundary()))
	if h.sendStored(w, r, recs, ts, mw.Boundary()) {
		return
	}
	for _, rec := range recs {
		partTS := ts
		if ts == "*" {
			partTS = rec.TransferSyntaxUID
		}
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom; transfer-syntax=" + partTS}})
		if err != nil {
			return // the client went away
		}
		if err := h.Archive.WriteObject(r.Context(), pw, rec, ts); err != nil {
			h.Logger.Error("WADO-RS retrieve failed mid-stream", "instance", rec.SOPInstanceUID, "err", err)
			panic(http.ErrAbortHandler) // the status is sent: breaking the connection is the only honest signal left
		}
	}
	mw.Close()
}

// sendStored answers with the stored bytes of every instance when no conversion is needed. The sizes are known, so
// the response has a Content-Length and the kernel copies each blob to the socket (sendfile) without passing it
// through user space. It reports false, having written nothing, when some instance needs converting.
func (h *Handler) sendStored(w http.ResponseWriter, r *http.Request, recs []renkei.InstanceRecord, ts, boundary string) bool {
	heads := make([]string, len(recs))
	total := int64(len("--" + boundary + "--\r\n"))
	for i, rec := range recs {
		if ts != "*" && ts != rec.TransferSyntaxUID {
			return false
		}
		heads[i] = "--" + boundary + "\r\nContent-Type: application/dicom; transfer-syntax=" + rec.TransferSyntaxUID + "\r\n\r\n"
		total += int64(len(heads[i])) + rec.Size + 2
	}
	w.Header().Set("Content-Length", strconv.FormatInt(total, 10))
	for i, rec := range recs {
		b, err := h.Archive.Blobs.Open(r.Context(), rec.BlobKey)
		if err == nil && b.Size() != rec.Size {
			b.Close()
			err = fmt.Errorf("blob %s is %d bytes, the index says %d", rec.BlobKey, b.Size(), rec.Size)
		}
		if err != nil {
			if i == 0 {
				w.Header().Del("Content-Length")
				h.problem(w, r, err)
				return true
			}
			h.Logger.Error("WADO-RS retrieve failed mid-stream", "instance", rec.SOPInstanceUID, "err", err)
			panic(http.ErrAbortHandler)
		}
		_, err = io.WriteString(w, heads[i])
		if err == nil {
			_, err = io.Copy(w, b)
		}
		b.Close()
		if err == nil {
			_, err = io.WriteString(w, "\r\n")
		}
		if err != nil {
			return true // the client went away
		}
	}
	io.WriteString(w, "--"+boundary+"--\r\n")
	return true
}

// metadata answers the DICOM JSON of every instance (PS3.18 10.4.1.1.2, Annex F); large values by BulkDataURI.
func (h *Handler) metadata(w http.ResponseWriter, r *http.Request) {
	recs, err := h.Archive.Instances(r.Context(), r.PathValue("study"), r.PathValue("series"), r.PathValue("instance"))
	if err != nil {
		h.problem(w, r, err)
		return
	}
	base := h.baseURL(r)
	out := make([][]byte, len(recs))
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range recs {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			rec := recs[i]
			o, err := h.Archive.Open(r.Context(), rec, false, 1024)
			if err != nil {
				errs[i] = err
				return
			}
			defer o.Close()
			prefix := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/bulkdata/", base, rec.Series.Study.StudyInstanceUID, rec.Series.SeriesInstanceUID, rec.SOPInstanceUID)
			fallback := rec.Charset // the sender's, as at ingest (QIDO-RS shows what it decoded)
			if fallback == "" {
				fallback = h.Archive.FallbackCharset
			}
			out[i] = dicom.AppendJSON(nil, o.File.DataSet, &dicom.JSONOptions{
				Decoder:     func(terms []string) dicom.TextDecoder { return charset.New(terms, fallback) },
				BulkDataURI: func(path string) string { return prefix + path },
				InlineLimit: 1024,
			})
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			h.problem(w, r, err)
			return
		}
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	buf := []byte{'['}
	for i, o := range out {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, o...)
	}
	buf = append(buf, ']')
	w.Write(buf)
}

// frameChoice decides how frames are sent: decoded to native pixels (application/octet-stream) or as stored.
func frameChoice(r *http.Request, storedTS string) (native bool, ok bool) {
	stored := codec.MediaType(storedTS)
	uncompressed := !dicom.IsEncapsulated(storedTS)
	for _, m := range accepts(r) {
		inner := m.params["type"]
		ts := m.params["transfer-syntax"]
		if m.typ == "multipart/related" && inner == "" {
			inner = "application/octet-stream"
		}
		if m.typ != "multipart/related" && m.typ != "*/*" {
			inner = m.typ
		}
		switch {
		case m.typ == "*/*" || inner == "*/*":
			if ts == "*" {
				return uncompressed, true
			}
			return true, uncompressed || codec.CanDecode(storedTS)
		case inner == "application/octet-stream":
			if ts == "*" || uncompressed {
				return uncompressed, true
			}
			if (ts == "" || ts == dicom.ExplicitVRLittleEndian) && codec.CanDecode(storedTS) {
				return true, true
			}
		case inner == stored && (ts == "" || ts == "*" || ts == storedTS):
			return false, true
		}
	}
	return false, false
}

func (h *Handler) frames(w http.ResponseWriter, r *http.Request) {
	var nums []int
	for _, s := range strings.Split(r.PathValue("frames"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			h.problem(w, r, renkei.Errorf("dicomweb.Frames", renkei.Invalid, "frame numbers are positive integers separated by commas, not %q", r.PathValue("frames")))
			return
		}
		nums = append(nums, n)
	}
	recs, err := h.Archive.Instances(r.Context(), r.PathValue("study"), r.PathValue("series"), r.PathValue("instance"))
	if err != nil {
		h.problem(w, r, err)
		return
	}
	rec := recs[0]
	native, ok := frameChoice(r, rec.TransferSyntaxUID)
	if !ok {
		WriteProblem(w, http.StatusNotAcceptable, fmt.Sprintf("the frames are stored as %s (%s); ask for that media type, or for application/octet-stream to get them decoded", codec.MediaType(rec.TransferSyntaxUID), rec.TransferSyntaxUID))
		return
	}
	o, err := h.Archive.Open(r.Context(), rec, false, 1024)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	defer o.Close()
	if o.File.PixelData == nil {
		h.problem(w, r, renkei.Errorf("dicomweb.Frames", renkei.NotFound, "the instance has no pixel data"))
		return
	}
	// Produce every frame before answering, so that a bad frame number is a clean 404 and not a broken stream.
	parts := make([][]byte, len(nums))
	for i, n := range nums {
		if native {
			parts[i], _, err = o.DecodedFrame(n)
		} else {
			parts[i], err = o.Frame(n)
		}
		if err != nil {
			h.problem(w, r, err)
			return
		}
	}
	ct, partTS := codec.MediaType(rec.TransferSyntaxUID), rec.TransferSyntaxUID
	if native || !dicom.IsEncapsulated(rec.TransferSyntaxUID) {
		ct, partTS = "application/octet-stream", dicom.ExplicitVRLittleEndian
	}
	writeParts(w, ct, partTS, parts)
}

func writeParts(w http.ResponseWriter, ct, ts string, parts [][]byte) {
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", fmt.Sprintf(`multipart/related; type="%s"; boundary=%s`, ct, mw.Boundary()))
	for _, p := range parts {
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {ct + "; transfer-syntax=" + ts}})
		if err != nil {
			return
		}
		if _, err := pw.Write(p); err != nil {
			return
		}
	}
	mw.Close()
}

func (h *Handler) bulkdata(w http.ResponseWriter, r *http.Request) {
	recs, err := h.Archive.Instances(r.Context(), r.PathValue("study"), r.PathValue("series"), r.PathValue("instance"))
	if err != nil {
		h.problem(w, r, err)
		return
	}
	o, err := h.Archive.Open(r.Context(), recs[0], true, 1024)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	defer o.Close()
	v, frames, err := o.BulkData(r.PathValue("path"))
	if err != nil {
		h.problem(w, r, err)
		return
	}
	if frames > 0 {
		parts := make([][]byte, frames)
		for i := range parts {
			if parts[i], err = o.Frame(i + 1); err != nil {
				h.problem(w, r, err)
				return
			}
		}
		writeParts(w, codec.MediaType(recs[0].TransferSyntaxUID), recs[0].TransferSyntaxUID, parts)
		return
	}
	writeParts(w, "application/octet-stream", dicom.ExplicitVRLittleEndian, [][]byte{v})
}

// wadoURI serves PS3.18 Chapter 9 (WADO-URI) requests for application/dicom, as many Japanese systems still send.
func (h *Handler) wadoURI(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("requestType") != "WADO" {
		h.problem(w, r, renkei.Errorf("dicomweb.WADO-URI", renkei.Invalid, "requestType must be WADO"))
		return
	}
	study, series, object := q.Get("studyUID"), q.Get("seriesUID"), q.Get("objectUID")
	if study == "" || series == "" || object == "" {
		h.problem(w, r, renkei.Errorf("dicomweb.WADO-URI", renkei.Invalid, "studyUID, seriesUID and objectUID are all required"))
		return
	}
	ct := q.Get("contentType")
	if ct == "" {
		ct = "image/jpeg" // PS3.18 9.1.2.1: the default
	}
	if !strings.Contains(ct, "application/dicom") {
		WriteProblem(w, http.StatusNotAcceptable, fmt.Sprintf("contentType %q is not available yet; use contentType=application/dicom", ct))
		return
	}
	recs, err := h.Archive.Instances(r.Context(), study, series, object)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	ts := q.Get("transferSyntax")
	if ts == "" {
		ts = dicom.ExplicitVRLittleEndian
	}
	if !archive.CanConvert(recs[0].TransferSyntaxUID, ts) {
		WriteProblem(w, http.StatusNotAcceptable, fmt.Sprintf("the object is stored as %s and cannot be sent as %s", recs[0].TransferSyntaxUID, ts))
		return
	}
	w.Header().Set("Content-Type", "application/dicom")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.dcm"`, object))
	if err := h.Archive.WriteObject(r.Context(), w, recs[0], ts); err != nil {
		h.Logger.Error("WADO-URI failed mid-stream", "instance", object, "err", err)
		panic(http.ErrAbortHandler)
	}
}
