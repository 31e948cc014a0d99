//go:build !cgo

package codec

// Without cgo there is no CharLS or OpenJPEG: CanDecode reports false for JPEG-LS and JPEG 2000.

const (
	haveJPEGLS   = false
	haveJPEG2000 = false
)

func decodeJPEGLS([]byte, layout) (Decoded, error) {
	return Decoded{}, unsupported("JPEG-LS needs a build with cgo (CharLS)")
}

func decodeJPEG2000([]byte, layout) (Decoded, error) {
	return Decoded{}, unsupported("JPEG 2000 needs a build with cgo (OpenJPEG)")
}
