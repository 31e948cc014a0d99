package archive

import (
	"bytes"
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"strconv"
	"strings"
	"sync"

	"renkei"
	"renkei/blob"
	"renkei/codec"
	"renkei/dicom"
	"renkei/render"
)

// Object is an opened stored instance: its index record, its bytes and its parsed header.
type Object struct {
	Rec  renkei.InstanceRecord
	Blob blob.Reader
	File *dicom.File
}

// headerKey names a parsed header: blobs never change, so a header parsed once stays right.
type headerKey struct {
	blob string
	full bool
	bulk int
}

// headerCache keeps recently parsed headers (element offsets, not pixel data), so that a viewer scrolling through the
// frames of one object, or asking for a study's metadata twice, does not parse the object every time.
type headerCache struct {
	mu    sync.Mutex
	max   int
	items map[headerKey]*list.Element
	order *list.List // front: most recent
}

type headerEntry struct {
	key headerKey
	f   *dicom.File
}

func (c *headerCache) get(k headerKey) (*dicom.File, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*headerEntry).f, true
	}
	return nil, false
}

func (c *headerCache) put(k headerKey, f *dicom.File) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.items == nil {
		c.items, c.order = map[headerKey]*list.Element{}, list.New()
		if c.max == 0 {
			c.max = 512
		}
	}
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.items[k] = c.order.PushFront(&headerEntry{k, f})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*headerEntry).key)
	}
}

// Close releases the object's blob.
func (o *Object) Close() error { return o.Blob.Close() }

// Open opens a stored instance. With full, the whole object is parsed (elements after the pixel data too); otherwise
// parsing stops at the pixel data. Values longer than bulk bytes are left in the blob.
func (s *Service) Open(ctx context.Context, rec renkei.InstanceRecord, full bool, bulk int) (*Object, error) {
	b, err := s.Blobs.Open(ctx, rec.BlobKey)
	if err != nil {
		return nil, err
	}
	key := headerKey{rec.BlobKey, full, bulk}
	if f, ok := s.headers.get(key); ok {
		return &Object{Rec: rec, Blob: b, File: f}, nil
	}
	opt := dicom.DefaultReadOptions
	opt.StopAtPixelData = !full
	opt.BulkThreshold = bulk
	if rec.TransferSyntaxUID == dicom.DeflatedExplicitVRLittleEndian {
		// Offsets inside a deflated stream cannot be read back at random: load everything (such objects are small).
		opt.BulkThreshold, opt.StopAtPixelData, opt.MaxHeaderBytes = 1<<31-1, false, 1<<31-1
	}
	f, err := dicom.Parse(b, opt)
	if err != nil {
		b.Close()
		return nil, &renkei.Error{Op: "archive.Open", Kind: renkei.Internal, Message: "the stored object cannot be read", Err: err}
	}
	if rec.TransferSyntaxUID != dicom.DeflatedExplicitVRLittleEndian {
		s.headers.put(key, f)
	}
	return &Object{Rec: rec, Blob: b, File: f}, nil
}

// CanConvert reports whether an object stored in transfer syntax from can be sent in transfer syntax to.
// renkei sends the stored bytes unchanged, or converts to Explicit VR Little Endian (decoding compressed pixel data).
func CanConvert(from, to string) bool {
	switch {
	case to == "*" || to == from:
		return true
	case to == dicom.ExplicitVRLittleEndian:
		return !dicom.IsEncapsulated(from) || codec.CanDecode(from)
	}
	return false
}

// WriteObject writes the instance as a Part 10 file in transfer syntax ts: "*" or the stored syntax sends the stored
// bytes unchanged; Explicit VR Little Endian converts.
func (s *Service) WriteObject(ctx context.Context, w io.Writer, rec renkei.InstanceRecord, ts string) error {
	if ts == "*" || ts == "" || ts == rec.TransferSyntaxUID {
		b, err := s.Blobs.Open(ctx, rec.BlobKey)
		if err != nil {
			return err
		}
		defer b.Close()
		_, err = io.Copy(w, b)
		return err
	}
	if !CanConvert(rec.TransferSyntaxUID, ts) {
		return renkei.Errorf("archive.WriteObject", renkei.Invalid, "instance %s is stored as %s and cannot be converted to %s", rec.SOPInstanceUID, rec.TransferSyntaxUID, ts)
	}
	o, err := s.Open(ctx, rec, true, 64<<10)
	if err != nil {
		return err
	}
	defer o.Close()
	return o.writeExplicitLE(w)
}

// image returns the pixel description of the object.
func (o *Object) image() codec.Image {
	ds := o.File.DataSet
	get := func(t dicom.Tag) int { v, _ := ds.Int(t); return v }
	img := codec.Image{
		Rows: get(dicom.Rows), Columns: get(dicom.Columns), SamplesPerPixel: get(dicom.SamplesPerPixel),
		BitsAllocated: get(dicom.BitsAllocated), BitsStored: get(dicom.BitsStored), HighBit: get(dicom.HighBit),
		PixelRepresentation: get(dicom.PixelRepresentation), PlanarConfiguration: get(dicom.PlanarConfiguration),
		NumberOfFrames: get(dicom.NumberOfFrames), PhotometricInterpretation: ds.String(dicom.PhotometricInterpretation),
	}
	if img.SamplesPerPixel == 0 {
		img.SamplesPerPixel = 1
	}
	if img.NumberOfFrames == 0 {
		img.NumberOfFrames = 1
	}
	if img.BitsStored == 0 {
		img.BitsStored = img.BitsAllocated
	}
	return img
}

// NumberOfFrames returns how many frames the object's pixel data holds (0 without pixel data).
func (o *Object) NumberOfFrames() int {
	if o.File.PixelData == nil {
		return 0
	}
	return o.image().NumberOfFrames
}

// Encapsulated reports whether the pixel data is compressed.
func (o *Object) Encapsulated() bool {
	return o.File.PixelData != nil && o.File.PixelData.Encapsulated()
}

func (o *Object) fragment(f dicom.Fragment) ([]byte, error) {
	if f.Data != nil {
		return f.Data, nil
	}
	b := make([]byte, f.Length)
	if _, err := o.Blob.ReadAt(b, f.Offset); err != nil {
		return nil, fmt.Errorf("read fragment: %w", err)
	}
	return b, nil
}

func (o *Object) value(e *dicom.Element) ([]byte, error) {
	if !e.Bulk {
		return e.Value, nil
	}
	return dicom.ReadValue(o.Blob, e)
}

// Frame returns frame n (1-based) as stored: the compressed bitstream for encapsulated pixel data, native little
// endian pixels otherwise.
func (o *Object) Frame(n int) ([]byte, error) {
	pd := o.File.PixelData
	img := o.image()
	if pd == nil {
		return nil, renkei.Errorf("archive.Frame", renkei.NotFound, "the instance has no pixel data")
	}
	if n < 1 || n > img.NumberOfFrames {
		return nil, renkei.Errorf("archive.Frame", renkei.NotFound, "frame %d does not exist: the instance has %d frame(s)", n, img.NumberOfFrames)
	}
	if !pd.Encapsulated() {
		size := int64(img.Rows) * int64(img.Columns) * int64(img.SamplesPerPixel) * int64(img.BitsAllocated) / 8
		if img.BitsAllocated == 1 || size <= 0 {
			if img.NumberOfFrames != 1 {
				return nil, renkei.Errorf("archive.Frame", renkei.Invalid, "frames of bit-packed pixel data cannot be cut out")
			}
			return o.value(pd)
		}
		off := int64(n-1) * size
		if off+size > int64(pd.Length) {
			return nil, renkei.Errorf("archive.Frame", renkei.Internal, "the pixel data is shorter than its %d frames", img.NumberOfFrames)
		}
		if !pd.Bulk {
			return pd.Value[off : off+size], nil
		}
		b := make([]byte, size)
		if _, err := o.Blob.ReadAt(b, pd.Offset+off); err != nil {
			return nil, fmt.Errorf("read frame: %w", err)
		}
		if pd.BigEndian && pd.VR == "OW" {
			dicom.SwapBytes(b, 2)
		}
		return b, nil
	}
	frags := pd.Fragments[1:]
	if len(frags) == 0 {
		return nil, renkei.Errorf("archive.Frame", renkei.Internal, "the encapsulated pixel data has no fragments")
	}
	bot, err := o.fragment(pd.Fragments[0])
	if err != nil {
		return nil, err
	}
	ext := o.File.DataSet.Get(dicom.ExtendedOffsetTable)
	switch {
	case img.NumberOfFrames == 1:
		return o.concat(frags)
	case ext == nil && len(bot) >= 4*img.NumberOfFrames:
		// PS3.5 A.4: offsets count from the first byte of the first fragment's item tag.
		start := uint32(binary.LittleEndian.Uint32(bot[4*(n-1):]))
		end := uint32(1<<32 - 1)
		if n < img.NumberOfFrames {
			end = binary.LittleEndian.Uint32(bot[4*n:])
		}
		base := frags[0].Offset - 8
		var sel []dicom.Fragment
		for _, f := range frags {
			pos := uint32(f.Offset - 8 - base)
			if pos >= start && pos < end {
				sel = append(sel, f)
			}
		}
		if len(sel) == 0 {
			return nil, renkei.Errorf("archive.Frame", renkei.Internal, "the Basic Offset Table points at no fragment for frame %d", n)
		}
		return o.concat(sel)
	case ext == nil && len(frags) == img.NumberOfFrames:
		return o.fragment(frags[n-1])
	}
	// Extended Offset Table, or fragments to split at JPEG markers: let the codec work it out on the whole set.
	items := make([][]byte, 0, len(pd.Fragments))
	for _, f := range pd.Fragments {
		b, err := o.fragment(f)
		if err != nil {
			return nil, err
		}
		items = append(items, b)
	}
	var offs, lens []uint64
	if ext != nil {
		ev, err := o.value(ext)
		if err != nil {
			return nil, err
		}
		offs = u64s(ev)
		if el := o.File.DataSet.Get(dicom.ExtendedOffsetTableLengths); el != nil {
			lv, err := o.value(el)
			if err != nil {
				return nil, err
			}
			lens = u64s(lv)
		}
	}
	frames, err := codec.Frames(items, offs, lens, img.NumberOfFrames, o.Rec.TransferSyntaxUID)
	if err != nil {
		return nil, &renkei.Error{Op: "archive.Frame", Kind: renkei.Internal, Message: "the compressed frames cannot be separated", Err: err}
	}
	return frames[n-1], nil
}

func u64s(b []byte) []uint64 {
	out := make([]uint64, len(b)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return out
}

func (o *Object) concat(frags []dicom.Fragment) ([]byte, error) {
	if len(frags) == 1 {
		return o.fragment(frags[0])
	}
	var buf bytes.Buffer
	for _, f := range frags {
		b, err := o.fragment(f)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// DecodedFrame returns frame n (1-based) as native little-endian pixels, decoding it if it is compressed, and the
// photometric interpretation of the result.
func (o *Object) DecodedFrame(n int) ([]byte, string, error) {
	b, err := o.Frame(n)
	if err != nil {
		return nil, "", err
	}
	img := o.image()
	if !o.Encapsulated() {
		return b, img.PhotometricInterpretation, nil
	}
	d, err := codec.Decode(o.Rec.TransferSyntaxUID, b, img)
	if err != nil {
		kind := renkei.Internal
		if errors.Is(err, codec.ErrUnsupported) {
			kind = renkei.Invalid
		}
		return nil, "", &renkei.Error{Op: "archive.DecodedFrame", Kind: kind, Message: "the compressed image cannot be decoded", Err: err}
	}
	return d.Pixels, d.PhotometricInterpretation, nil
}

// writeExplicitLE writes the object converted to Explicit VR Little Endian, decoding compressed pixel data frame by
// frame so that memory stays bounded whatever the object's size.
func (o *Object) writeExplicitLE(w io.Writer) error {
	meta := &dicom.DataSet{Elements: append([]*dicom.Element(nil), o.File.Meta.Elements...)}
	meta.SetString(dicom.TransferSyntaxUID, "UI", dicom.ExplicitVRLittleEndian)
	meta.SetString(dicom.ImplementationClassUID, "UI", dicom.RenkeiImplementationClassUID)
	meta.SetString(dicom.ImplementationVersionName, "SH", dicom.RenkeiImplementationVersion)
	ds := &dicom.DataSet{Elements: append([]*dicom.Element(nil), o.File.DataSet.Elements...)}
	var streamers map[dicom.Tag]dicom.Streamer
	if o.Encapsulated() {
		img := o.image()
		first, pi, err := o.DecodedFrame(1)
		if err != nil {
			return err
		}
		frameSize := len(first)
		total := int64(frameSize) * int64(img.NumberOfFrames)
		if total >= 1<<32-1 {
			return renkei.Errorf("archive.WriteObject", renkei.Invalid, "the decoded pixel data would exceed 4 GiB, the limit of an uncompressed DICOM object")
		}
		ds.Remove(dicom.ExtendedOffsetTable)
		ds.Remove(dicom.ExtendedOffsetTableLengths)
		ds.SetString(dicom.PhotometricInterpretation, "CS", pi)
		if img.SamplesPerPixel > 1 {
			ds.SetUint16(dicom.PlanarConfiguration, 0)
		}
		if isLossy(o.Rec.TransferSyntaxUID) && ds.Get(dicom.LossyImageCompression) == nil {
			ds.SetString(dicom.LossyImageCompression, "CS", "01")
		}
		vr := "OW"
		if img.BitsAllocated <= 8 {
			vr = "OB"
		}
		length := uint32(total + total%2)
		ds.Set(&dicom.Element{Tag: dicom.PixelData, VR: vr, Length: length, Bulk: true})
		streamers = map[dicom.Tag]dicom.Streamer{dicom.PixelData: func(w io.Writer) error {
			if _, err := w.Write(first); err != nil {
				return err
			}
			for n := 2; n <= img.NumberOfFrames; n++ {
				b, _, err := o.DecodedFrame(n)
				if err != nil {
					return err
				}
				if len(b) != frameSize {
					return renkei.Errorf("archive.WriteObject", renkei.Internal, "frame %d decodes to %d bytes, frame 1 to %d", n, len(b), frameSize)
				}
				if _, err := w.Write(b); err != nil {
					return err
				}
			}
			if total%2 == 1 {
				_, err := w.Write([]byte{0})
				return err
			}
			return nil
		}}
	}
	return dicom.WriteFile(w, meta, ds, o.Blob, streamers)
}

func isLossy(ts string) bool {
	switch ts {
	case dicom.JPEGBaseline8Bit, dicom.JPEGExtended12Bit, dicom.JPEG2000, dicom.JPEGLSNearLossless, "1.2.840.10008.1.2.4.203":
		return true
	}
	return false
}

// BulkData returns the value at a tag path ("7FE00010", or "00540016/0/00181072" into a sequence), converted to
// little endian. Encapsulated pixel data is returned as its frames.
func (o *Object) BulkData(path string) (value []byte, frames int, err error) {
	ds := o.File.DataSet
	parts := strings.Split(path, "/")
	var e *dicom.Element
	for i := 0; i < len(parts); i += 2 {
		t, perr := dicom.ParseTag(parts[i])
		if perr != nil {
			return nil, 0, renkei.Errorf("archive.BulkData", renkei.NotFound, "no bulk data at %q", path)
		}
		e = ds.Get(t)
		if e == nil {
			return nil, 0, renkei.Errorf("archive.BulkData", renkei.NotFound, "no bulk data at %q", path)
		}
		if i+1 < len(parts) {
			idx, perr := strconv.Atoi(parts[i+1])
			if perr != nil || idx < 0 || idx >= len(e.Items) {
				return nil, 0, renkei.Errorf("archive.BulkData", renkei.NotFound, "no bulk data at %q", path)
			}
			ds = e.Items[idx]
		}
	}
	if e.Encapsulated() {
		return nil, o.NumberOfFrames(), nil
	}
	v, err := o.value(e)
	return v, 0, err
}

// Rendered renders frame n (1-based) for a screen: decoded, normalised (interleaved, sign-extended, masked to
// BitsStored), with the header's rescale, windows and palette (see package render).
func (o *Object) Rendered(n int, opt render.Options) (image.Image, error) {
	px, photometric, err := o.DecodedFrame(n)
	if err != nil {
		return nil, err
	}
	img := o.image()
	ds := o.File.DataSet
	f := render.Frame{Rows: img.Rows, Columns: img.Columns, SamplesPerPixel: img.SamplesPerPixel, BitsAllocated: img.BitsAllocated,
		BitsStored: img.BitsStored, Signed: img.PixelRepresentation == 1, Photometric: photometric, Pixels: px,
		Slope: firstFloat(ds, dicom.NewTag(0x0028, 0x1053)), Intercept: firstFloat(ds, dicom.NewTag(0x0028, 0x1052)),
		WindowCenter: floats(ds, dicom.NewTag(0x0028, 0x1050)), WindowWidth: floats(ds, dicom.NewTag(0x0028, 0x1051))}
	if !o.Encapsulated() {
		f.Pixels = nativeToDecoded(px, img)
	}
	if photometric == "PALETTE COLOR" {
		if f.Palette, err = o.palette(); err != nil {
			return nil, err
		}
	}
	// The file's VOI LUTs (PS3.3 C.11.2). One that cannot be read is left out: the image still shows, by its window
	// or its range, rather than not at all.
	if luts, lerr := render.VOILUTs(ds, o.value); lerr == nil {
		f.VOILUTs = luts
	}
	out, err := render.Image(f, opt)
	if err != nil {
		kind := renkei.Internal
		if errors.Is(err, render.ErrUnsupported) {
			kind = renkei.Invalid
		}
		return nil, &renkei.Error{Op: "archive.Rendered", Kind: kind, Message: "this image cannot be rendered", Err: err}
	}
	return out, nil
}

// nativeToDecoded gives uncompressed pixels the form decoders produce: samples interleaved, signed samples
// sign-extended from BitsStored, unsigned ones masked to it (bits above may hold overlays).
func nativeToDecoded(px []byte, img codec.Image) []byte {
	n := img.Rows * img.Columns
	bytesPer := img.BitsAllocated / 8
	out := px
	if img.SamplesPerPixel == 3 && img.PlanarConfiguration == 1 && len(px) >= 3*n*bytesPer {
		out = make([]byte, 3*n*bytesPer)
		for i := 0; i < n; i++ {
			for s := 0; s < 3; s++ {
				copy(out[(3*i+s)*bytesPer:(3*i+s+1)*bytesPer], px[(s*n+i)*bytesPer:(s*n+i+1)*bytesPer])
			}
		}
	}
	if bytesPer != 2 || img.BitsStored <= 0 || img.BitsStored >= 16 || len(out) < 2 {
		return out
	}
	if len(out) == len(px) && &out[0] == &px[0] {
		out = append([]byte(nil), px...) // px may be the cached header's own bytes
	}
	shift := 16 - img.BitsStored
	mask := uint16(1)<<img.BitsStored - 1
	for i := 0; i+1 < len(out); i += 2 {
		v := binary.LittleEndian.Uint16(out[i:])
		if img.PixelRepresentation == 1 {
			v = uint16(int16(v<<shift) >> shift)
		} else {
			v &= mask
		}
		binary.LittleEndian.PutUint16(out[i:], v)
	}
	return out
}

// palette reads the PALETTE COLOR lookup tables (PS3.3 C.7.6.3.1.5).
func (o *Object) palette() (*render.Palette, error) {
	ds := o.File.DataSet
	desc := func(t dicom.Tag) []int {
		e := ds.Get(t)
		if e == nil || len(e.Value) < 6 {
			return nil
		}
		v := []int{int(binary.LittleEndian.Uint16(e.Value)), int(binary.LittleEndian.Uint16(e.Value[2:])), int(binary.LittleEndian.Uint16(e.Value[4:]))}
		if e.VR == "SS" {
			v[1] = int(int16(v[1]))
		}
		return v
	}
	d := desc(dicom.NewTag(0x0028, 0x1101))
	if d == nil {
		return nil, renkei.Errorf("archive.Rendered", renkei.Invalid, "a PALETTE COLOR image without its palette descriptor")
	}
	p := &render.Palette{First: d[1], Bits: d[2]}
	for i, dst := range []*[]uint16{&p.R, &p.G, &p.B} {
		e := ds.Get(dicom.NewTag(0x0028, uint16(0x1201+i)))
		if e == nil {
			return nil, renkei.Errorf("archive.Rendered", renkei.Invalid, "a PALETTE COLOR image without its lookup table data (segmented palettes are not rendered yet)")
		}
		b, err := o.value(e)
		if err != nil {
			return nil, err
		}
		if p.Bits == 8 && len(b) == d[0] || d[0] == 0 && len(b) == 65536 {
			// 8-bit entries packed one per byte (some writers do this despite the standard's 16-bit words).
			*dst = make([]uint16, len(b))
			for j := range b {
				(*dst)[j] = uint16(b[j])
			}
			continue
		}
		*dst = make([]uint16, len(b)/2)
		for j := range *dst {
			(*dst)[j] = binary.LittleEndian.Uint16(b[2*j:])
		}
	}
	return p, nil
}

func floats(ds *dicom.DataSet, t dicom.Tag) []float64 {
	var out []float64
	for _, s := range ds.Strings(t) {
		if v, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}

func firstFloat(ds *dicom.DataSet, t dicom.Tag) float64 {
	if v := floats(ds, t); len(v) > 0 {
		return v[0]
	}
	return 0
}
