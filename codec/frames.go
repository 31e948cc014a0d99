package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// itemHeader is the size of an Item Tag plus Item Length in encapsulated Pixel Data (PS3.5 A.4).
const itemHeader = 8

// Frames splits the items of encapsulated Pixel Data (PS3.5 A.4: the Basic Offset Table item first, then the
// fragments, without their item headers) into one []byte per frame. In order of preference it uses:
//
//   - the Extended Offset Table (7FE0,0001) with its lengths (7FE0,0002), when extendedOffsets is not empty;
//   - the Basic Offset Table, when items[0] is not empty;
//   - for a single frame, all fragments concatenated;
//   - one fragment per frame, when the fragment count equals numberOfFrames;
//   - for JPEG, JPEG-LS and JPEG 2000, a new frame at each fragment that starts with the codestream's first marker
//     (SOI, or SOC followed by SIZ, or a JP2 signature box).
//
// Offsets are relative to the first byte of the first fragment's Item Tag, as PS3.5 A.4 defines them. A frame that
// is a single fragment is returned without copying. The error wraps ErrCorrupt when the offsets do not land on
// fragment boundaries, are out of order or out of range, or when the frames cannot be told apart.
func Frames(items [][]byte, extendedOffsets []uint64, extendedLengths []uint64, numberOfFrames int, transferSyntaxUID string) ([][]byte, error) {
	if numberOfFrames < 1 {
		numberOfFrames = 1
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("codec: frames: no Basic Offset Table item (PS3.5 A.4): %w", ErrCorrupt)
	}
	bot, fragments := items[0], items[1:]
	if len(fragments) == 0 {
		return nil, fmt.Errorf("codec: frames: no fragments after the Basic Offset Table (PS3.5 A.4): %w", ErrCorrupt)
	}
	var (
		frames [][]byte
		err    error
	)
	switch {
	case len(extendedOffsets) > 0:
		frames, err = framesByExtendedOffsets(fragments, extendedOffsets, extendedLengths, numberOfFrames)
	case len(bot) > 0:
		frames, err = framesByBasicOffsets(fragments, bot, numberOfFrames)
	case numberOfFrames == 1:
		frames = [][]byte{concat(fragments)}
	case len(fragments) == numberOfFrames:
		frames = fragments
	default:
		frames, err = framesByMarkers(fragments, numberOfFrames, transferSyntaxUID)
	}
	if err != nil {
		return nil, fmt.Errorf("codec: frames: %w", err)
	}
	return frames, nil
}

// fragmentStarts returns the offset of each fragment's Item Tag from the first fragment's Item Tag, and the total.
func fragmentStarts(fragments [][]byte) ([]uint64, uint64) {
	starts := make([]uint64, len(fragments))
	var pos uint64
	for i, f := range fragments {
		starts[i] = pos
		pos += itemHeader + uint64(len(f))
	}
	return starts, pos
}

// framesAt groups fragments into frames that start at the given offsets, each of which must be an Item Tag.
func framesAt(fragments [][]byte, offsets []uint64) ([][]byte, error) {
	starts, end := fragmentStarts(fragments)
	frames := make([][]byte, len(offsets))
	j := 0 // index of the next fragment
	for i, off := range offsets {
		if i > 0 && off <= offsets[i-1] {
			return nil, corrupt("offset %d of frame %d is not after offset %d of frame %d", off, i+1, offsets[i-1], i)
		}
		if off >= end {
			return nil, corrupt("offset %d of frame %d is past the last fragment (%d bytes)", off, i+1, end)
		}
		for j < len(starts) && starts[j] < off {
			j++
		}
		if j == len(starts) || starts[j] != off {
			return nil, corrupt("offset %d of frame %d is not the start of a fragment", off, i+1)
		}
		if i == 0 && off != 0 {
			return nil, corrupt("first frame offset is %d, want 0", off)
		}
		next := end
		if i+1 < len(offsets) {
			next = offsets[i+1]
		}
		k := j
		for k < len(starts) && starts[k] < next {
			k++
		}
		if k-j == 1 {
			frames[i] = fragments[j]
		} else {
			frames[i] = concat(fragments[j:k])
		}
	}
	return frames, nil
}

func framesByBasicOffsets(fragments [][]byte, bot []byte, numberOfFrames int) ([][]byte, error) {
	if len(bot)%4 != 0 {
		return nil, corrupt("Basic Offset Table of %d bytes is not a whole number of 32-bit offsets (PS3.5 A.4)", len(bot))
	}
	n := len(bot) / 4
	if n != numberOfFrames {
		return nil, corrupt("Basic Offset Table has %d offsets for %d frames (PS3.5 A.4)", n, numberOfFrames)
	}
	offsets := make([]uint64, n)
	for i := range offsets {
		offsets[i] = uint64(binary.LittleEndian.Uint32(bot[4*i:]))
	}
	frames, err := framesAt(fragments, offsets)
	if err != nil {
		return nil, fmt.Errorf("Basic Offset Table: %w", err)
	}
	return frames, nil
}

func framesByExtendedOffsets(fragments [][]byte, offsets, lengths []uint64, numberOfFrames int) ([][]byte, error) {
	if len(offsets) != numberOfFrames {
		return nil, corrupt("Extended Offset Table (7FE0,0001) has %d offsets for %d frames (PS3.5 A.4)", len(offsets), numberOfFrames)
	}
	if len(lengths) != 0 && len(lengths) != len(offsets) {
		return nil, corrupt("Extended Offset Table Lengths (7FE0,0002) has %d values for %d offsets", len(lengths), len(offsets))
	}
	frames, err := framesAt(fragments, offsets)
	if err != nil {
		return nil, fmt.Errorf("Extended Offset Table: %w", err)
	}
	// The lengths exclude Item headers and the trailing pad byte; they may trim a frame, never lengthen it.
	for i := range lengths {
		if lengths[i] > uint64(len(frames[i])) {
			return nil, corrupt("Extended Offset Table Lengths: frame %d is %d bytes, the fragments hold %d", i+1, lengths[i], len(frames[i]))
		}
		frames[i] = frames[i][:lengths[i]]
	}
	return frames, nil
}

// framesByMarkers starts a new frame at each fragment that begins with the transfer syntax's first marker: PS3.5
// A.4 puts every frame in its own fragments, and entropy-coded data cannot contain SOI (byte stuffing, T.81 F.1.2.3).
func framesByMarkers(fragments [][]byte, numberOfFrames int, ts string) ([][]byte, error) {
	var starts func([]byte) bool
	switch ts {
	case tsJPEGBaseline8Bit, tsJPEGExtended12Bit, tsJPEGLossless, tsJPEGLosslessSV1, tsJPEGLSLossless, tsJPEGLSNearLossless:
		starts = func(b []byte) bool { return len(b) >= 2 && b[0] == 0xFF && b[1] == 0xD8 }
	case tsJPEG2000Lossless, tsJPEG2000, tsJPEG2000MCLossless, tsJPEG2000MC, tsHTJ2KLossless, tsHTJ2KLosslessRPCL, tsHTJ2K:
		starts = func(b []byte) bool {
			return bytes.HasPrefix(b, []byte{0xFF, 0x4F, 0xFF, 0x51}) || bytes.HasPrefix(b, jp2Signature)
		}
	default:
		return nil, corrupt("%d fragments for %d frames and no offset table: frames cannot be told apart in %s",
			len(fragments), numberOfFrames, tsName(ts))
	}
	var frames [][]byte
	first := -1
	for i, f := range fragments {
		if !starts(f) {
			continue
		}
		if first >= 0 {
			frames = append(frames, concat(fragments[first:i]))
		} else if i != 0 {
			return nil, corrupt("fragment 1 does not start with a %s marker and there is no offset table", tsName(ts))
		}
		first = i
	}
	if first < 0 {
		return nil, corrupt("no fragment starts with a %s marker and there is no offset table", tsName(ts))
	}
	frames = append(frames, concat(fragments[first:]))
	if len(frames) != numberOfFrames {
		return nil, corrupt("found %d %s frames by their start markers, want %d", len(frames), tsName(ts), numberOfFrames)
	}
	return frames, nil
}

// jp2Signature is the JP2 signature box (ISO/IEC 15444-1 I.5.1).
var jp2Signature = []byte{0, 0, 0, 0x0C, 'j', 'P', ' ', ' ', 0x0D, 0x0A, 0x87, 0x0A}

func concat(parts [][]byte) []byte {
	if len(parts) == 1 {
		return parts[0]
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
