package dicom

// Transfer syntaxes renkei names (PS3.6 Annex A).
const (
	ImplicitVRLittleEndian         = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian         = "1.2.840.10008.1.2.1"
	DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
	ExplicitVRBigEndian            = "1.2.840.10008.1.2.2"
	JPEGBaseline8Bit               = "1.2.840.10008.1.2.4.50"
	JPEGExtended12Bit              = "1.2.840.10008.1.2.4.51"
	JPEGLossless                   = "1.2.840.10008.1.2.4.57"
	JPEGLosslessSV1                = "1.2.840.10008.1.2.4.70"
	JPEGLSLossless                 = "1.2.840.10008.1.2.4.80"
	JPEGLSNearLossless             = "1.2.840.10008.1.2.4.81"
	JPEG2000Lossless               = "1.2.840.10008.1.2.4.90"
	JPEG2000                       = "1.2.840.10008.1.2.4.91"
	RLELossless                    = "1.2.840.10008.1.2.5"
)

// ImplementationClassUID and name written into the File Meta Information of objects renkei writes itself.
const (
	RenkeiImplementationClassUID = "1.2.826.0.1.3680043.10.1207.1.1"
	RenkeiImplementationVersion  = "RENKEI_1"
)

// IsEncapsulated reports whether a transfer syntax carries encapsulated (compressed) pixel data: every syntax except
// the native ones (PS3.5 A.4).
func IsEncapsulated(ts string) bool {
	switch ts {
	case ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian:
		return false
	}
	return true
}

// ValidUID reports whether s is a valid UID (PS3.5 9.1): 1–64 characters, components of digits separated by
// single dots, no leading zero in a multi-digit component.
func ValidUID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			n := i - start
			if n == 0 || (n > 1 && s[start] == '0') {
				return false
			}
			start = i + 1
			continue
		}
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
