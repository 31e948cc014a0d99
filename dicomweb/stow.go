package dicomweb

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"renkei"
	"renkei/archive"
	"renkei/dicom"
)

// stow stores the parts of a multipart/related; type="application/dicom" body (PS3.18 10.5). Each part is streamed
// into the archive as it arrives; the response lists every instance as stored or failed with its reason.
func (h *Handler) stow(w http.ResponseWriter, r *http.Request) {
	study := r.PathValue("study")
	if study != "" && !dicom.ValidUID(study) {
		h.problem(w, r, renkei.Errorf("dicomweb.STOW", renkei.Invalid, "study UID %q in the URL is not a valid UID", study))
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" {
		WriteProblem(w, http.StatusUnsupportedMediaType, `STOW-RS takes a multipart/related; type="application/dicom" body (PS3.18 10.5)`)
		return
	}
	if t := params["type"]; t != "" && !strings.EqualFold(t, "application/dicom") {
		WriteProblem(w, http.StatusUnsupportedMediaType, fmt.Sprintf("parts of type %q are not accepted: send application/dicom parts", t))
		return
	}
	if params["boundary"] == "" {
		h.problem(w, r, renkei.Errorf("dicomweb.STOW", renkei.Invalid, "the multipart body has no boundary parameter in its Content-Type"))
		return
	}
	body, err := h.decodedBody(r)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	// mime/multipart reads through a 4 KiB buffer; a large one beneath it saves most of the system calls.
	mr := multipart.NewReader(bufio.NewReaderSize(body, 1<<20), params["boundary"])
	var results []*archive.StoreResult
	var reqErr error
	var commits sync.WaitGroup
	sem := make(chan struct{}, 16) // commits in flight per request
	defer commits.Wait()
	for n := 0; ; n++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if len(results) == 0 {
				reqErr = renkei.Errorf("dicomweb.STOW", renkei.Invalid, "the multipart body cannot be read: %v", err)
			} else {
				reqErr = renkei.Errorf("dicomweb.STOW", renkei.Invalid, "the multipart body ends badly after %d part(s): %v", len(results), err)
			}
			if d := (*decodeLimitError)(nil); errors.As(err, &d) {
				reqErr = d.err
			}
			break
		}
		if n >= h.MaxParts {
			part.Close()
			reqErr = renkei.Errorf("dicomweb.STOW", renkei.TooLarge, "the request has more than %d parts; send the instances in several requests", h.MaxParts)
			break
		}
		ct := part.Header.Get("Content-Type")
		pmt, _, _ := mime.ParseMediaType(ct)
		if ct != "" && pmt != "application/dicom" {
			results = append(results, &archive.StoreResult{Failure: archive.StatusCannotUnderstand,
				Err: renkei.Errorf("dicomweb.STOW", renkei.Invalid, "part %d is %s, not application/dicom", n+1, pmt)})
			part.Close()
			continue
		}
		// Receive this part now; commit it (fsync, index) in the background while the next part streams in.
		pending, res := h.Archive.Receive(r.Context(), part, archive.StoreRequest{Source: "STOW-RS", Study: study})
		part.Close()
		results = append(results, res)
		if pending == nil {
			continue
		}
		commits.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; commits.Done() }()
			pending.Commit(r.Context()) // completes res in place
		}()
	}
	commits.Wait()
	for n, res := range results {
		if res.Err != nil {
			var d *decodeLimitError
			if errors.As(res.Err, &d) {
				res.Err = d.err
			}
			h.Logger.Info("STOW-RS part refused", "part", n+1, "sop", res.SOPInstanceUID, "status", fmt.Sprintf("%04X", res.Failure), "err", res.Err)
		}
	}
	if reqErr != nil && len(results) == 0 {
		h.problem(w, r, reqErr)
		return
	}
	if len(results) == 0 {
		h.problem(w, r, renkei.Errorf("dicomweb.STOW", renkei.Invalid, "the request holds no DICOM part"))
		return
	}
	// PS3.18 10.5.3: 409 says that the request conflicts, which sending it again does not mend. When nothing was
	// stored only because the archive is unavailable (its index or blob store away for a moment), the answer is a
	// request-level 503, which senders retry.
	if err := allUnavailable(results); err != nil {
		h.problem(w, r, err)
		return
	}
	h.writeStowResponse(w, r, results, reqErr)
}

// allUnavailable returns the first failure's error when no instance was stored and every failure is of kind
// Unavailable, and nil otherwise.
func allUnavailable(results []*archive.StoreResult) error {
	var first error
	for _, res := range results {
		if res.Failure == 0 || renkei.ErrorKind(res.Err) != renkei.Unavailable {
			return nil
		}
		if first == nil {
			first = res.Err
		}
	}
	return first
}

// writeStowResponse answers per PS3.18 10.5.3: 200 when every instance was stored, 202 when some failed or carry
// warnings, 409 when none was stored.
func (h *Handler) writeStowResponse(w http.ResponseWriter, r *http.Request, results []*archive.StoreResult, reqErr error) {
	base := h.baseURL(r)
	stored, warned := 0, false
	var ok, failed [][]byte
	studies := map[string]bool{}
	for _, res := range results {
		var item []byte
		item = append(item, '{')
		item = appendMember(item, dicom.ReferencedSOPClassUID, "UI", res.SOPClassUID, false)
		item = appendMember(item, dicom.ReferencedSOPInstanceUID, "UI", res.SOPInstanceUID, true)
		if res.Failure != 0 {
			item = appendUS(item, dicom.FailureReason, res.Failure)
			item = appendMember(item, dicom.NewTag(0x0000, 0x0902), "LO", renkei.ErrorMessage(res.Err), true) // ErrorComment
			failed = append(failed, append(item, '}'))
			continue
		}
		stored++
		studies[res.StudyInstanceUID] = true
		url := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s", base, res.StudyInstanceUID, res.SeriesInstanceUID, res.SOPInstanceUID)
		item = appendMember(item, dicom.RetrieveURL, "UR", url, true)
		if len(res.Warnings) > 0 {
			warned = true
			item = appendUS(item, dicom.WarningReason, 0xB000) // coercion of data elements
		}
		ok = append(ok, append(item, '}'))
	}
	if reqErr != nil {
		warned = true
		w.Header().Add("Warning", fmt.Sprintf("299 renkei %q", renkei.ErrorMessage(reqErr)))
	}
	var out []byte
	out = append(out, '{')
	if len(studies) == 1 {
		for s := range studies {
			out = appendMember(out, dicom.RetrieveURL, "UR", base+"/studies/"+s, false)
			out = append(out, ',')
		}
	}
	out = appendSeq(out, dicom.FailedSOPSequence, failed)
	out = append(out, ',')
	out = appendSeq(out, dicom.ReferencedSOPSequence, ok)
	out = append(out, '}')
	status := http.StatusOK
	switch {
	case stored == 0:
		status = http.StatusConflict
	case len(failed) > 0 || warned:
		status = http.StatusAccepted
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	w.WriteHeader(status)
	w.Write(out)
}

func appendMember(dst []byte, t dicom.Tag, vr, v string, comma bool) []byte {
	if comma {
		dst = append(dst, ',')
	}
	return dicom.AppendElementJSON(dst, &dicom.Element{Tag: t, VR: vr, Value: []byte(v)}, utf8Text{}, &dicom.JSONOptions{}, "")
}

func appendUS(dst []byte, t dicom.Tag, v uint16) []byte {
	dst = append(dst, ',')
	return dicom.AppendElementJSON(dst, &dicom.Element{Tag: t, VR: "US", Value: binary.LittleEndian.AppendUint16(nil, v)}, utf8Text{}, &dicom.JSONOptions{}, "")
}

func appendSeq(dst []byte, t dicom.Tag, items [][]byte) []byte {
	dst = append(dst, fmt.Sprintf(`"%s":{"vr":"SQ"`, t.Hex())...)
	if len(items) > 0 {
		dst = append(dst, `,"Value":[`...)
		for i, it := range items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, it...)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// utf8Text decodes values that are already UTF-8 (what the index holds).
type utf8Text struct{}

func (utf8Text) Decode(v []byte, vr string) (string, bool) { return string(v), true }

// decodedBody undoes a Content-Encoding (gzip, deflate, zstd), refusing a body that expands more than MaxDecodedRatio times.
func (h *Handler) decodedBody(r *http.Request) (io.Reader, error) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	cr := &countingReader{r: r.Body}
	var dr io.Reader
	switch enc {
	case "", "identity":
		return r.Body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(cr)
		if err != nil {
			return nil, renkei.Errorf("dicomweb.STOW", renkei.Invalid, "the body is not valid gzip: %v", err)
		}
		dr = zr
	case "deflate":
		dr = flate.NewReader(cr)
	case "zstd":
		// A window of at most 8 MiB (what RFC 8878 asks HTTP decoders to accept) and one goroutine: a sender cannot
		// make renkei reserve more memory than that.
		zr, err := zstd.NewReader(cr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, renkei.Errorf("dicomweb.STOW", renkei.Invalid, "the body is not valid zstd: %v", err)
		}
		dr = zstdReader{zr}
	default:
		return nil, &renkei.Error{Op: "dicomweb.STOW", Kind: renkei.Invalid, Message: fmt.Sprintf("Content-Encoding %q is not supported; use gzip, deflate or zstd", enc)}
	}
	return &ratioReader{r: dr, in: cr, ratio: h.MaxDecodedRatio}, nil
}

// zstdReader frees its decoder when the body ends.
type zstdReader struct{ *zstd.Decoder }

func (z zstdReader) Read(p []byte) (int, error) {
	n, err := z.Decoder.Read(p)
	if err != nil {
		z.Decoder.Close()
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type decodeLimitError struct{ err error }

func (d *decodeLimitError) Error() string { return d.err.Error() }

// ratioReader stops a decompression bomb: the output may not exceed 1 MiB plus ratio times the input read so far.
type ratioReader struct {
	r     io.Reader
	in    *countingReader
	out   int64
	ratio int64
}

func (rr *ratioReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.out += int64(n)
	if rr.out > 1<<20+rr.ratio*rr.in.n {
		return n, &decodeLimitError{renkei.Errorf("dicomweb.STOW", renkei.TooLarge,
			"the compressed body expands more than %d times; this looks like a compression bomb and was refused", rr.ratio)}
	}
	return n, err
}
