package dicom

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Writing is always Explicit VR Little Endian (PS3.5 A.2), the syntax renkei converts to when a client does not
// accept the stored one. Sequences and items are written with undefined length, which needs no look-ahead.

// Streamer supplies the value of a Bulk element while writing (for example pixel data decoded frame by frame).
type Streamer func(w io.Writer) error

// WriteFile writes a Part 10 file: a zero preamble, "DICM", the meta information with its group length recomputed,
// then ds. Bulk values are copied from src (the stream ds was parsed from), converted to little endian; an element whose
// Offset is negative is skipped unless streamers has a function for its tag.
func WriteFile(w io.Writer, meta, ds *DataSet, src io.ReaderAt, streamers map[Tag]Streamer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.Write(make([]byte, 128)); err != nil {
		return err
	}
	bw.WriteString("DICM")
	var mb []byte
	for _, e := range meta.Elements {
		if e.Tag == FileMetaInformationGroupLength || e.Tag.Group() != 0x0002 {
			continue
		}
		mb = appendHeader(mb, e.Tag, e.VR, uint32(len(e.Value)))
		mb = append(mb, e.Value...)
	}
	gl := appendHeader(nil, FileMetaInformationGroupLength, "UL", 4)
	gl = binary.LittleEndian.AppendUint32(gl, uint32(len(mb)))
	bw.Write(gl)
	bw.Write(mb)
	ww := &writer{w: bw, src: src, streamers: streamers}
	if err := ww.dataSet(ds, true); err != nil {
		return err
	}
	return bw.Flush()
}

// WriteDataSet writes a bare data set in Explicit VR Little Endian.
func WriteDataSet(w io.Writer, ds *DataSet, src io.ReaderAt) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	ww := &writer{w: bw, src: src}
	if err := ww.dataSet(ds, true); err != nil {
		return err
	}
	return bw.Flush()
}

type writer struct {
	w         *bufio.Writer
	src       io.ReaderAt
	streamers map[Tag]Streamer
	buf       []byte
}

func appendHeader(b []byte, t Tag, vr string, length uint32) []byte {
	b = binary.LittleEndian.AppendUint16(b, t.Group())
	b = binary.LittleEndian.AppendUint16(b, t.Element())
	if t.Group() == 0xFFFE {
		return binary.LittleEndian.AppendUint32(b, length)
	}
	b = append(b, vr[0], vr[1])
	if hasLongLength(vr) {
		b = append(b, 0, 0)
		return binary.LittleEndian.AppendUint32(b, length)
	}
	return binary.LittleEndian.AppendUint16(b, uint16(length))
}

func (ww *writer) header(t Tag, vr string, length uint32) error {
	ww.buf = appendHeader(ww.buf[:0], t, vr, length)
	_, err := ww.w.Write(ww.buf)
	return err
}

func (ww *writer) dataSet(ds *DataSet, top bool) error {
	for _, e := range ds.Elements {
		// Group lengths (gggg,0000) are retired outside group 0002 and wrong after transcoding: drop them.
		if e.Tag.Element() == 0 || e.Tag.Group() == 0x0002 {
			continue
		}
		if err := ww.element(e, top); err != nil {
			return err
		}
	}
	return nil
}

func (ww *writer) element(e *Element, top bool) error {
	vr := e.VR
	if len(vr) != 2 {
		vr = "UN"
	}
	if s := ww.streamers[e.Tag]; top && s != nil {
		if err := ww.header(e.Tag, vr, e.Length); err != nil {
			return err
		}
		return s(ww.w)
	}
	switch {
	case vr == "SQ" || e.Items != nil:
		if err := ww.header(e.Tag, "SQ", UndefinedLength); err != nil {
			return err
		}
		for _, it := range e.Items {
			if err := ww.header(Item, "", UndefinedLength); err != nil {
				return err
			}
			if err := ww.dataSet(it, false); err != nil {
				return err
			}
			if err := ww.header(ItemDelimitationItem, "", 0); err != nil {
				return err
			}
		}
		return ww.header(SequenceDelimitationItem, "", 0)
	case e.Fragments != nil:
		if err := ww.header(e.Tag, vr, UndefinedLength); err != nil {
			return err
		}
		for _, f := range e.Fragments {
			if err := ww.header(Item, "", f.Length); err != nil {
				return err
			}
			if f.Data != nil {
				if _, err := ww.w.Write(f.Data); err != nil {
					return err
				}
			} else if err := ww.copyRange(f.Offset, int64(f.Length), 1); err != nil {
				return err
			}
		}
		return ww.header(SequenceDelimitationItem, "", 0)
	}
	length := e.Length
	if !e.Bulk {
		length = uint32(len(e.Value))
	}
	odd := length%2 == 1
	if odd {
		length++ // PS3.5 7.1.1: values have even length; pad what the sender did not
	}
	if !hasLongLength(vr) && length > 0xFFFF {
		vr = "UN" // a value too long for its VR's 16-bit length field survives as UN (PS3.5 6.2.2)
	}
	if err := ww.header(e.Tag, vr, length); err != nil {
		return err
	}
	if e.Bulk {
		if ww.src == nil {
			return fmt.Errorf("write %s: no source for a value that was not loaded", e.Tag)
		}
		sw := 1
		if e.BigEndian {
			sw = wordSize(e.VR)
		}
		if err := ww.copyRange(e.Offset, int64(e.Length), sw); err != nil {
			return err
		}
	} else if _, err := ww.w.Write(e.Value); err != nil {
		return err
	}
	if odd {
		pad := byte(0)
		if IsText(vr) && vr != "UI" {
			pad = ' '
		}
		return ww.w.WriteByte(pad)
	}
	return nil
}

// copyRange copies n bytes at off from the source, swapping words of size sw (1: no swap).
func (ww *writer) copyRange(off, n int64, sw int) error {
	if sw == 1 {
		_, err := io.Copy(ww.w, io.NewSectionReader(ww.src, off, n))
		return err
	}
	buf := make([]byte, 256<<10)
	for n > 0 {
		c := min(int64(len(buf)), n)
		c -= c % int64(sw)
		if c == 0 {
			c = n
		}
		if _, err := ww.src.ReadAt(buf[:c], off); err != nil {
			return fmt.Errorf("read stored value: %w", err)
		}
		SwapBytes(buf[:c], sw)
		if _, err := ww.w.Write(buf[:c]); err != nil {
			return err
		}
		off += c
		n -= c
	}
	return nil
}

// ReceivedFileMeta returns the preamble, "DICM" and File Meta Information (PS3.10 7.1) to put before a data set
// received over the network (C-STORE): its SOP class and instance, the transfer syntax it came in, renkei's
// implementation, and the sender's AE title as its source (PS3.10 Table 7.1-1).
func ReceivedFileMeta(sopClass, sopInstance, transferSyntax, sourceAE string) ([]byte, error) {
	if !ValidUID(sopClass) || !ValidUID(sopInstance) || !ValidUID(transferSyntax) {
		return nil, fmt.Errorf("invalid UID in the command (class %q, instance %q, transfer syntax %q)", sopClass, sopInstance, transferSyntax)
	}
	meta := &DataSet{}
	meta.Set(&Element{Tag: FileMetaInformationVersion, VR: "OB", Value: []byte{0, 1}})
	meta.SetString(MediaStorageSOPClassUID, "UI", sopClass)
	meta.SetString(MediaStorageSOPInstanceUID, "UI", sopInstance)
	meta.SetString(TransferSyntaxUID, "UI", transferSyntax)
	meta.SetString(ImplementationClassUID, "UI", RenkeiImplementationClassUID)
	meta.SetString(ImplementationVersionName, "SH", RenkeiImplementationVersion)
	if sourceAE != "" {
		meta.SetString(SourceApplicationEntityTitle, "AE", sourceAE)
	}
	var buf bytes.Buffer
	if err := WriteFile(&buf, meta, &DataSet{}, nil, nil); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
