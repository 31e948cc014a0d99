package dicomsvc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"renkei/dicom"
)

// The dicom package writes only Explicit VR Little Endian, and dimse.EncodeDataSet needs every value in memory. A
// peer that accepts only Implicit VR Little Endian (the one syntax every DICOM application must accept, PS3.5 10.1)
// gets the Explicit VR Little Endian stream re-encoded on the fly, element by element, so that memory stays bounded
// whatever the object's size.

// containerFrame is a sequence or item of the input whose end is tracked: defined lengths in Explicit VR become
// undefined lengths with delimiters in the output, because element headers change size between the two encodings.
type containerFrame struct {
	end  int64 // input offset where it ends; -1 for undefined length (ends at its delimitation item)
	item bool
}

// implicitWriter converts one Explicit VR Little Endian data set.
type implicitWriter struct {
	r     *bufio.Reader
	w     *bufio.Writer
	off   int64 // bytes of input consumed
	stack []containerFrame
	hdr   [12]byte
}

// toImplicit reads a data set in Explicit VR Little Endian (PS3.5 A.2) and writes it in Implicit VR Little Endian
// (PS3.5 A.1): each header becomes tag and 32-bit length, values are copied unchanged (both are little endian),
// sequences and items get undefined lengths and delimiters, group lengths are dropped (retired, and wrong after
// re-encoding). Encapsulated pixel data cannot be written in Implicit VR (PS3.5 A.4) and is an error.
func toImplicit(dst io.Writer, src io.Reader) error {
	iw := &implicitWriter{r: bufio.NewReaderSize(src, 64<<10), w: bufio.NewWriterSize(dst, 64<<10)}
	if err := iw.run(); err != nil {
		return err
	}
	return iw.w.Flush()
}

func (iw *implicitWriter) read(n int) ([]byte, error) {
	b := iw.hdr[:n]
	if _, err := io.ReadFull(iw.r, b); err != nil {
		return nil, err
	}
	iw.off += int64(n)
	return b, nil
}

func (iw *implicitWriter) header(t dicom.Tag, length uint32) {
	var b [8]byte
	binary.LittleEndian.PutUint16(b[0:], t.Group())
	binary.LittleEndian.PutUint16(b[2:], t.Element())
	binary.LittleEndian.PutUint32(b[4:], length)
	iw.w.Write(b[:])
}

// closeFrames ends the defined-length containers the input has reached the end of.
func (iw *implicitWriter) closeFrames() error {
	for n := len(iw.stack); n > 0; n = len(iw.stack) {
		f := iw.stack[n-1]
		if f.end < 0 || iw.off < f.end {
			return nil
		}
		if iw.off > f.end {
			return errors.New("an element runs past the end of its sequence or item")
		}
		if f.item {
			iw.header(dicom.ItemDelimitationItem, 0)
		} else {
			iw.header(dicom.SequenceDelimitationItem, 0)
		}
		iw.stack = iw.stack[:n-1]
	}
	return nil
}

func (iw *implicitWriter) push(length uint32, item bool) {
	end := int64(-1)
	if length != dicom.UndefinedLength {
		end = iw.off + int64(length)
	}
	iw.stack = append(iw.stack, containerFrame{end: end, item: item})
}

func (iw *implicitWriter) pop(item bool) error {
	n := len(iw.stack)
	if n == 0 || iw.stack[n-1].item != item || iw.stack[n-1].end >= 0 {
		return errors.New("a delimitation item does not close an open sequence or item")
	}
	iw.stack = iw.stack[:n-1]
	return nil
}

func (iw *implicitWriter) run() error {
	for {
		if err := iw.closeFrames(); err != nil {
			return err
		}
		b, err := iw.read(4)
		if err != nil {
			if errors.Is(err, io.EOF) && len(iw.stack) == 0 {
				return nil
			}
			return fmt.Errorf("read data set: %w", noEOF(err))
		}
		t := dicom.NewTag(binary.LittleEndian.Uint16(b[0:]), binary.LittleEndian.Uint16(b[2:]))
		if t.Group() == 0xFFFE {
			b, err := iw.read(4)
			if err != nil {
				return fmt.Errorf("read data set: %w", noEOF(err))
			}
			length := binary.LittleEndian.Uint32(b)
			switch t {
			case dicom.Item:
				iw.header(dicom.Item, dicom.UndefinedLength)
				iw.push(length, true)
			case dicom.ItemDelimitationItem:
				iw.header(t, 0)
				if err := iw.pop(true); err != nil {
					return err
				}
			case dicom.SequenceDelimitationItem:
				iw.header(t, 0)
				if err := iw.pop(false); err != nil {
					return err
				}
			default:
				return fmt.Errorf("unexpected %s in the data set", t)
			}
			continue
		}
		b, err = iw.read(4)
		if err != nil {
			return fmt.Errorf("read data set: %w", noEOF(err))
		}
		vr := string(b[0:2])
		var length uint32
		if longLength(vr) {
			lb, err := iw.read(4)
			if err != nil {
				return fmt.Errorf("read data set: %w", noEOF(err))
			}
			length = binary.LittleEndian.Uint32(lb)
		} else {
			length = uint32(binary.LittleEndian.Uint16(b[2:4]))
		}
		switch {
		case vr == "SQ":
			iw.header(t, dicom.UndefinedLength)
			iw.push(length, false)
		case length == dicom.UndefinedLength && vr == "UN":
			// PS3.5 6.2.2: a UN value of undefined length is a sequence already encoded in Implicit VR Little Endian.
			iw.header(t, dicom.UndefinedLength)
			if err := iw.copyImplicitSequence(0); err != nil {
				return err
			}
		case length == dicom.UndefinedLength:
			return fmt.Errorf("%s is encapsulated, which Implicit VR Little Endian cannot carry (PS3.5 A.4)", t)
		case t.Element() == 0:
			if _, err := io.CopyN(io.Discard, iw.r, int64(length)); err != nil {
				return fmt.Errorf("read data set: %w", noEOF(err))
			}
			iw.off += int64(length)
		default:
			iw.header(t, length)
			if _, err := io.CopyN(iw.w, iw.r, int64(length)); err != nil {
				return fmt.Errorf("copy %s: %w", t, noEOF(err))
			}
			iw.off += int64(length)
		}
	}
}

// copyImplicitSequence copies the items of an Implicit VR sequence of undefined length, through its delimitation
// item, finding its end by following the nested undefined lengths.
func (iw *implicitWriter) copyImplicitSequence(depth int) error {
	if depth > 32 {
		return errors.New("sequences nested too deep")
	}
	for {
		b, err := iw.read(8)
		if err != nil {
			return fmt.Errorf("read data set: %w", noEOF(err))
		}
		t := dicom.NewTag(binary.LittleEndian.Uint16(b[0:]), binary.LittleEndian.Uint16(b[2:]))
		length := binary.LittleEndian.Uint32(b[4:])
		iw.w.Write(b)
		switch {
		case t == dicom.SequenceDelimitationItem || t == dicom.ItemDelimitationItem:
			if t == dicom.SequenceDelimitationItem {
				return nil
			}
		case t == dicom.Item && length == dicom.UndefinedLength:
			// The item's elements follow, up to its delimitation item, handled by this loop.
		case length == dicom.UndefinedLength:
			if err := iw.copyImplicitSequence(depth + 1); err != nil {
				return err
			}
		default:
			if _, err := io.CopyN(iw.w, iw.r, int64(length)); err != nil {
				return fmt.Errorf("read data set: %w", noEOF(err))
			}
			iw.off += int64(length)
		}
	}
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
