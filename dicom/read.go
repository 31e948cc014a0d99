package dicom

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ReadOptions bounds what Parse accepts and keeps. The zero value is not useful; start from DefaultReadOptions.
type ReadOptions struct {
	// BulkThreshold: values longer than this many bytes are not loaded but skipped on the stream and marked Bulk, with
	// their Offset and Length. Encapsulated fragments longer than it are skipped too.
	BulkThreshold int
	// MaxDepth limits the nesting of sequences (PS3.5 7.5); deeper nesting is refused.
	MaxDepth int
	// MaxHeaderBytes limits the memory a parse keeps: the values loaded plus elementCost for each element, item and
	// fragment, so that a stream of tiny elements (or a deflated one that inflates to them) is bounded too.
	MaxHeaderBytes int
	// MaxInflated limits the size of a deflated data set once inflated (a defence against deflate bombs).
	MaxInflated int64
	// StopAtPixelData stops after the header of the top-level Pixel Data element without reading its value.
	StopAtPixelData bool
}

// DefaultReadOptions suit the archive's ingest: headers in memory, pixel data and other large values streamed past.
var DefaultReadOptions = ReadOptions{BulkThreshold: 16 << 10, MaxDepth: 16, MaxHeaderBytes: 64 << 20, MaxInflated: 8 << 30}

// File is a parsed DICOM Part 10 file (PS3.10 7.1).
type File struct {
	Preamble          [128]byte
	Meta              *DataSet // group 0002, always explicit VR little endian
	DataSet           *DataSet
	TransferSyntaxUID string
	// DataSetOffset is where the data set starts in the file (after the meta information).
	DataSetOffset int64
	// Deflated is true when the data set is deflated: Element offsets then count inflated bytes.
	Deflated bool
	// PixelData is the top-level Pixel Data element, also present in DataSet; with StopAtPixelData its value was not read.
	PixelData *Element
}

// ParseError is returned for data that is not valid DICOM. It says where and why, citing the standard.
type ParseError struct {
	Offset int64
	Tag    Tag
	Msg    string
}

func (e *ParseError) Error() string {
	if e.Tag != 0 {
		return fmt.Sprintf("DICOM parse error at byte %d, element %s: %s", e.Offset, e.Tag, e.Msg)
	}
	return fmt.Sprintf("DICOM parse error at byte %d: %s", e.Offset, e.Msg)
}

// ErrInflateLimit is returned when a deflated data set inflates past ReadOptions.MaxInflated (a deflate bomb).
var ErrInflateLimit = errors.New("the deflated data set inflates past the allowed size (a compression bomb?)")

// ErrNotDICOM is returned when the stream does not start with a 128-byte preamble and "DICM" (PS3.10 7.1).
var ErrNotDICOM = errors.New("not a DICOM Part 10 file: the 128-byte preamble is not followed by \"DICM\" (PS3.10 7.1)")

// Parse reads a Part 10 file from r. It reads exactly as far as it needs: the whole stream unless StopAtPixelData.
func Parse(r io.Reader, opt ReadOptions) (*File, error) {
	f := &File{}
	br := bufio.NewReaderSize(r, 64<<10)
	if _, err := io.ReadFull(br, f.Preamble[:]); err != nil {
		return nil, ErrNotDICOM
	}
	var magic [4]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil || string(magic[:]) != "DICM" {
		return nil, ErrNotDICOM
	}
	p := &parser{br: br, pos: 132, opt: opt, bo: binary.LittleEndian}
	if sk, ok := r.(io.Seeker); ok {
		p.seeker, p.under = sk, r
	}
	meta, err := p.readMeta()
	if err != nil {
		return nil, err
	}
	f.Meta = meta
	f.TransferSyntaxUID = meta.String(TransferSyntaxUID)
	f.DataSetOffset = p.pos
	switch f.TransferSyntaxUID {
	case "":
		return nil, &ParseError{Offset: p.pos, Tag: TransferSyntaxUID, Msg: "the File Meta Information has no Transfer Syntax UID (PS3.10 7.1)"}
	case ImplicitVRLittleEndian:
		p.implicit = true
	case ExplicitVRBigEndian:
		p.bo = binary.BigEndian
	case DeflatedExplicitVRLittleEndian:
		f.Deflated = true
		p.seeker = nil
		fr := flate.NewReader(br)
		defer fr.Close()
		lim := opt.MaxInflated
		if lim <= 0 {
			lim = DefaultReadOptions.MaxInflated
		}
		p.br = bufio.NewReaderSize(&limitedInflate{r: fr, n: lim}, 64<<10)
		p.pos = 0
	}
	if !ValidUID(f.TransferSyntaxUID) {
		return nil, &ParseError{Offset: f.DataSetOffset, Tag: TransferSyntaxUID, Msg: fmt.Sprintf("transfer syntax %q is not a valid UID", f.TransferSyntaxUID)}
	}
	p.encapsulatedOK = IsEncapsulated(f.TransferSyntaxUID)
	ds, err := p.readDataSet(-1, 0, true)
	if err != nil {
		return nil, err
	}
	f.DataSet = ds
	f.PixelData = p.pixel
	return f, nil
}

// ParseDataSet reads a bare data set (no preamble or meta) in the given transfer syntax, as carried in DIMSE messages.
func ParseDataSet(r io.Reader, transferSyntaxUID string, opt ReadOptions) (*DataSet, error) {
	p := &parser{br: bufio.NewReaderSize(r, 64<<10), opt: opt, bo: binary.LittleEndian}
	switch transferSyntaxUID {
	case ImplicitVRLittleEndian:
		p.implicit = true
	case ExplicitVRBigEndian:
		p.bo = binary.BigEndian
	case DeflatedExplicitVRLittleEndian:
		fr := flate.NewReader(p.br)
		defer fr.Close()
		p.br = bufio.NewReaderSize(&limitedInflate{r: fr, n: opt.MaxInflated}, 64<<10)
	}
	p.encapsulatedOK = IsEncapsulated(transferSyntaxUID)
	return p.readDataSet(-1, 0, true)
}

type limitedInflate struct {
	r io.Reader
	n int64
}

func (l *limitedInflate) Read(b []byte) (int, error) {
	if l.n <= 0 {
		return 0, ErrInflateLimit
	}
	if int64(len(b)) > l.n {
		b = b[:l.n]
	}
	n, err := l.r.Read(b)
	l.n -= int64(n)
	return n, err
}

type parser struct {
	br             *bufio.Reader
	pos            int64
	opt            ReadOptions
	bo             binary.ByteOrder
	implicit       bool
	encapsulatedOK bool
	loaded         int
	pixel          *Element
	stop           bool
	seeker         io.Seeker // when the source can seek, large values are skipped without reading them
	under          io.Reader
}

// elementCost is what each element, item and fragment is charged against MaxHeaderBytes besides its value: about half
// of what it takes in memory, which keeps MaxHeaderBytes a bound on memory within a small factor while letting very
// large structured reports and RT structure sets through.
const elementCost = 64

// charge counts n more bytes against MaxHeaderBytes.
func (p *parser) charge(t Tag, n int) error {
	if p.loaded+n > p.opt.MaxHeaderBytes {
		return p.errf(t, "the header is larger than the %d bytes allowed", p.opt.MaxHeaderBytes)
	}
	p.loaded += n
	return nil
}

func (p *parser) errf(t Tag, format string, args ...any) error {
	return &ParseError{Offset: p.pos, Tag: t, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) truncated(t Tag, need int64) error {
	return p.errf(t, "the data ends early: %d more bytes were announced (truncated file, or a length past the end)", need)
}

func (p *parser) read(b []byte) error {
	n, err := io.ReadFull(p.br, b)
	p.pos += int64(n)
	return err
}

// readValue reads an n-byte value. A large one is read in chunks, so that a length announced past the end of a
// short stream costs no more memory than the stream holds.
func (p *parser) readValue(n int) ([]byte, error) {
	if n <= 64<<10 {
		b := make([]byte, n)
		return b, p.read(b)
	}
	var buf bytes.Buffer
	m, err := io.CopyN(&buf, p.br, int64(n))
	p.pos += m
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return buf.Bytes(), err
}

func (p *parser) skip(t Tag, n int64) error {
	if b := int64(p.br.Buffered()); p.seeker != nil && n > b+(256<<10) {
		p.br.Discard(int(b))
		cur, err := p.seeker.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		// Seeking past the end succeeds, and the next read then sees a clean end of file: without this check a
		// file cut inside a large value (pixel data) would parse as complete.
		end, err := p.seeker.Seek(0, io.SeekEnd)
		if err != nil {
			return err
		}
		if target := cur + n - b; target > end {
			p.pos += b + end - cur
			return p.truncated(t, target-end)
		} else if _, err := p.seeker.Seek(target, io.SeekStart); err != nil {
			return err
		}
		p.br.Reset(p.under)
		p.pos += n
		return nil
	}
	m, err := p.br.Discard(int(min(n, 1<<62)))
	if int64(m) < n && err == nil {
		// Discard takes an int; values never exceed 4 GiB so this does not happen on 64-bit.
		err = io.ErrUnexpectedEOF
	}
	p.pos += int64(m)
	if err != nil {
		if isEOF(err) {
			return p.truncated(t, n-int64(m))
		}
		return err
	}
	return nil
}

// eof reports err as a truncation when the data ended, and as itself otherwise (a read error, a deflate limit).
func (p *parser) eof(t Tag, need int64, err error) error {
	if isEOF(err) {
		return p.truncated(t, need)
	}
	return err
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }

// readMeta reads group 0002. It is always explicit VR little endian (PS3.10 7.1), whatever follows.
func (p *parser) readMeta() (*DataSet, error) {
	// The meta information is always kept in memory (the transfer syntax is read from it, WriteFile copies it),
	// whatever BulkThreshold says; MaxHeaderBytes still bounds it.
	bulk := p.opt.BulkThreshold
	p.opt.BulkThreshold = p.opt.MaxHeaderBytes
	defer func() { p.opt.BulkThreshold = bulk }()
	ds := &DataSet{}
	for {
		b, err := p.br.Peek(2)
		if err != nil || binary.LittleEndian.Uint16(b) != 0x0002 {
			break
		}
		e, err := p.readElement(0)
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, p.errf(0, "unexpected delimiter in the File Meta Information")
		}
		ds.Elements = append(ds.Elements, e)
	}
	if len(ds.Elements) == 0 {
		return nil, p.errf(0, "the File Meta Information (group 0002) is missing (PS3.10 7.1)")
	}
	return ds, nil
}

// readDataSet reads elements until length bytes are consumed (length < 0: until EOF at top level or an item
// delimiter inside an undefined-length item).
func (p *parser) readDataSet(length int64, depth int, top bool) (*DataSet, error) {
	ds := &DataSet{}
	end := p.pos + length
	for {
		if length >= 0 && p.pos >= end {
			if p.pos > end {
				return nil, p.errf(0, "an element runs past the end of its item")
			}
			return p.resolveVRs(ds), nil
		}
		if top && length < 0 {
			if _, err := p.br.Peek(1); err != nil {
				if isEOF(err) {
					return p.resolveVRs(ds), nil
				}
				return nil, err
			}
		}
		e, err := p.readElement(depth)
		if err != nil {
			return nil, err
		}
		if e == nil { // item delimitation
			if length >= 0 || top {
				return nil, p.errf(ItemDelimitationItem, "item delimitation outside an undefined-length item")
			}
			return p.resolveVRs(ds), nil
		}
		ds.Elements = append(ds.Elements, e)
		if top && p.stop {
			return p.resolveVRs(ds), nil
		}
	}
}

// pixelValueTags are the attributes whose VR is US or SS as Pixel Representation (0028,0103) says (PS3.6 "US or SS").
var pixelValueTags = map[Tag]bool{
	0x00280104: true, 0x00280105: true, // Smallest/Largest Valid Pixel Value (retired)
	0x00280106: true, 0x00280107: true, // Smallest/Largest Image Pixel Value
	0x00280108: true, 0x00280109: true, // Smallest/Largest Pixel Value in Series
	0x00280110: true, 0x00280111: true, // Smallest/Largest Image Pixel Value in Plane (retired)
	0x00280120: true, 0x00280121: true, // Pixel Padding Value, Pixel Padding Range Limit
}

// resolveVRs gives the pixel value attributes of an Implicit VR data set, which VR reads as US, the VR SS when the
// data set's pixels are signed (PS3.5 Annex A.1 leaves it to the Pixel Representation), so that they keep their value
// when the data set is written in Explicit VR or as JSON.
func (p *parser) resolveVRs(ds *DataSet) *DataSet {
	if !p.implicit {
		return ds
	}
	if pr, ok := ds.Int(PixelRepresentation); !ok || pr != 1 {
		return ds
	}
	for _, e := range ds.Elements {
		if pixelValueTags[e.Tag] && e.VR == "US" {
			e.VR = "SS"
		}
	}
	return ds
}

func (p *parser) readTag() (Tag, error) {
	var b [4]byte
	if err := p.read(b[:]); err != nil {
		return 0, err
	}
	return NewTag(p.bo.Uint16(b[0:]), p.bo.Uint16(b[2:])), nil
}

// readElement reads one element; it returns nil, nil for an Item Delimitation Item.
func (p *parser) readElement(depth int) (*Element, error) {
	start := p.pos
	t, err := p.readTag()
	if err != nil {
		if isEOF(err) {
			return nil, &ParseError{Offset: start, Msg: "the data ends in the middle of an element header (truncated file)"}
		}
		return nil, err
	}
	if t == ItemDelimitationItem {
		var l [4]byte
		if err := p.read(l[:]); err != nil {
			return nil, p.truncated(t, 4)
		}
		return nil, nil
	}
	if t.Group() == 0xFFFE {
		return nil, p.errf(t, "unexpected item tag outside a sequence")
	}
	if err := p.charge(t, elementCost); err != nil {
		return nil, err
	}
	e := &Element{Tag: t}
	bo := p.bo
	if t.Group() == 0x0002 {
		bo = binary.LittleEndian
	}
	implicit := p.implicit && t.Group() != 0x0002
	if implicit {
		var l [4]byte
		if err := p.read(l[:]); err != nil {
			return nil, p.truncated(t, 4)
		}
		e.Length = bo.Uint32(l[:])
		e.VR = VR(t)
		if t == PixelData || e.VR == "OB or OW" {
			e.VR = "OW"
		}
		if e.Length == UndefinedLength && t != PixelData {
			// PS3.5 7.5.1 / A.1: only a sequence can have undefined length here; an attribute the dictionary does
			// not know (UN, private) is read as one, a known attribute of another VR is refused below.
			if e.VR == "UN" {
				e.VR = "SQ"
			}
		}
	} else {
		var h [4]byte
		if err := p.read(h[:]); err != nil {
			return nil, p.truncated(t, 4)
		}
		vr := string(h[:2])
		if h[0] < 'A' || h[0] > 'Z' || h[1] < 'A' || h[1] > 'Z' {
			return nil, &ParseError{Offset: start, Tag: t, Msg: fmt.Sprintf("invalid VR %q in explicit VR encoding (PS3.5 7.1.2)", vr)}
		}
		e.VR = vr
		if hasLongLength(vr) {
			var l [4]byte
			if err := p.read(l[:]); err != nil {
				return nil, p.truncated(t, 4)
			}
			e.Length = bo.Uint32(l[:])
		} else {
			e.Length = uint32(bo.Uint16(h[2:]))
		}
	}
	e.Offset = p.pos
	if e.VR == "UN" && e.Length != UndefinedLength && !implicit {
		// PS3.5 6.2.2: a sender that did not know the attribute sent UN; we know it, so read it with its real VR.
		// A sequence sent as UN is encoded in Implicit VR Little Endian inside.
		if dv := VR(t); dv == "SQ" {
			e.VR = "SQ"
			return e, p.readItems(e, depth+1, true)
		} else if len(dv) == 2 && dv != "UN" && t.Group() != 0x7FE0 {
			e.VR = dv
		}
	}
	if e.Length == UndefinedLength {
		switch {
		case e.VR == "SQ":
			return e, p.readItems(e, depth+1, false)
		case e.VR == "UN":
			// PS3.5 6.2.2: UN with undefined length holds a sequence encoded in implicit VR little endian.
			e.VR = "SQ"
			return e, p.readItems(e, depth+1, true)
		case (t == PixelData || t == FloatPixelData || t == DoubleFloatPixelData) && (e.VR == "OB" || e.VR == "OW") && p.encapsulatedOK:
			if err := p.readFragments(e); err != nil {
				return nil, err
			}
			if depth == 0 && t == PixelData {
				p.pixel = e
			}
			return e, nil
		default:
			return nil, &ParseError{Offset: start, Tag: t, Msg: fmt.Sprintf("undefined length (0xFFFFFFFF) is not allowed for VR %s (PS3.5 7.1.1); only sequences and encapsulated pixel data may have it", e.VR)}
		}
	}
	if e.VR == "SQ" {
		return e, p.readItems(e, depth+1, false)
	}
	if depth == 0 && t == PixelData {
		p.pixel = e
		if p.opt.StopAtPixelData {
			e.Bulk = true
			e.BigEndian = bo == binary.BigEndian && wordSize(e.VR) > 1
			p.stop = true
			return e, nil
		}
	}
	if int(e.Length) > p.opt.BulkThreshold || e.Length > 1<<31 {
		e.Bulk = true
		e.BigEndian = bo == binary.BigEndian && wordSize(e.VR) > 1
		return e, p.skip(t, int64(e.Length))
	}
	if err := p.charge(t, int(e.Length)); err != nil {
		return nil, err
	}
	if e.Value, err = p.readValue(int(e.Length)); err != nil {
		return nil, p.eof(t, int64(e.Length), err)
	}
	if bo == binary.BigEndian {
		SwapBytes(e.Value, wordSize(e.VR))
	}
	return e, nil
}

// readItems reads the items of a sequence (PS3.5 7.5), of defined or undefined length.
func (p *parser) readItems(e *Element, depth int, implicitLE bool) error {
	if depth > p.opt.MaxDepth {
		return p.errf(e.Tag, "sequences are nested deeper than %d levels", p.opt.MaxDepth)
	}
	if implicitLE {
		saveImp, saveBO := p.implicit, p.bo
		p.implicit, p.bo = true, binary.LittleEndian
		defer func() { p.implicit, p.bo = saveImp, saveBO }()
	}
	e.Items = []*DataSet{}
	end := p.pos + int64(e.Length)
	for {
		if e.Length != UndefinedLength && p.pos >= end {
			if p.pos > end {
				return p.errf(e.Tag, "an item runs past the end of its sequence")
			}
			return nil
		}
		t, err := p.readTag()
		if err != nil {
			return p.eof(e.Tag, 8, err)
		}
		var l [4]byte
		if err := p.read(l[:]); err != nil {
			return p.eof(e.Tag, 4, err)
		}
		length := p.bo.Uint32(l[:])
		switch t {
		case SequenceDelimitationItem:
			if e.Length != UndefinedLength {
				return p.errf(e.Tag, "sequence delimiter in a sequence of defined length")
			}
			return nil
		case Item:
			if err := p.charge(e.Tag, elementCost); err != nil {
				return err
			}
			var item *DataSet
			if length == UndefinedLength {
				item, err = p.readDataSet(-1, depth, false)
			} else {
				item, err = p.readDataSet(int64(length), depth, false)
			}
			if err != nil {
				return err
			}
			e.Items = append(e.Items, item)
		default:
			return p.errf(e.Tag, "expected an item (FFFE,E000) in the sequence, found %s (PS3.5 7.5)", t)
		}
	}
}

// readFragments reads the items of encapsulated pixel data (PS3.5 A.4).
func (p *parser) readFragments(e *Element) error {
	e.Fragments = []Fragment{}
	for {
		t, err := p.readTag()
		if err != nil {
			return p.eof(e.Tag, 8, err)
		}
		var l [4]byte
		if err := p.read(l[:]); err != nil {
			return p.eof(e.Tag, 4, err)
		}
		length := p.bo.Uint32(l[:])
		switch t {
		case SequenceDelimitationItem:
			if len(e.Fragments) == 0 {
				return p.errf(e.Tag, "encapsulated pixel data has no Basic Offset Table item (PS3.5 A.4)")
			}
			return nil
		case Item:
			if length == UndefinedLength {
				return p.errf(e.Tag, "a pixel data fragment has undefined length (PS3.5 A.4 requires explicit lengths)")
			}
			if err := p.charge(e.Tag, elementCost); err != nil {
				return err
			}
			fr := Fragment{Offset: p.pos, Length: length}
			if int(length) <= p.opt.BulkThreshold || len(e.Fragments) == 0 && int(length) <= p.opt.MaxHeaderBytes-p.loaded {
				p.loaded += int(length)
				if fr.Data, err = p.readValue(int(length)); err != nil {
					return p.eof(e.Tag, int64(length), err)
				}
			} else if err := p.skip(e.Tag, int64(length)); err != nil {
				return err
			}
			e.Fragments = append(e.Fragments, fr)
		default:
			return p.errf(e.Tag, "expected a fragment item (FFFE,E000) in encapsulated pixel data, found %s (PS3.5 A.4)", t)
		}
	}
}

// ReadValue loads a Bulk element's value from r, which must read the same stream the element was parsed from
// (ra reads file offsets; for deflated files re-parse instead). The value is converted to little endian.
func ReadValue(ra io.ReaderAt, e *Element) ([]byte, error) {
	b := make([]byte, e.Length)
	if _, err := ra.ReadAt(b, e.Offset); err != nil && !(errors.Is(err, io.EOF) && len(b) == 0) {
		return nil, fmt.Errorf("read value of %s: %w", e.Tag, err)
	}
	if e.BigEndian {
		SwapBytes(b, wordSize(e.VR))
	}
	return b, nil
}

// Equal reports whether two loaded values are identical (for tests and duplicate checks).
func (e *Element) Equal(o *Element) bool {
	return e.Tag == o.Tag && e.VR == o.VR && bytes.Equal(e.Value, o.Value)
}
