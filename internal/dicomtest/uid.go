package dicomtest

import (
	"crypto/sha1"
	"math/big"
)

// UID returns a deterministic UID for name: "2.25." followed by the decimal form of a name-based (version 5)
// UUID derived from name, as PS3.5 B.2 allows. The same name always gives the same UID, so generated data sets
// are reproducible; distinct names give distinct UIDs.
func UID(name string) string {
	h := sha1.Sum([]byte("renkei/dicomtest\x00" + name))
	u := h[:16]
	u[6] = u[6]&0x0f | 0x50 // version 5 (RFC 9562 5.5)
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return "2.25." + new(big.Int).SetBytes(u).String()
}

// implementationClassUID identifies this writer in (0002,0012), PS3.7 D.3.3.2.
var implementationClassUID = UID("implementation")

const implementationVersionName = "RENKEI_DICOMTEST"
