package renkei

// AE is a DICOM application entity that renkei knows: a modality, PACS or workstation that may open associations,
// and where C-MOVE may send. An AE belongs to one institution, so DIMSE traffic is attributed to it.
type AE struct {
	Title         string // AE title, up to 16 characters (PS3.5 6.2: AE)
	Host          string // the address it connects from and listens on; empty accepts any address (not for C-MOVE)
	Port          int    // where it listens for C-STORE (C-MOVE destination); 0 if it is never a destination
	Institution   string // ID of the institution it belongs to, which owns what it stores and whose data it may read
	InstitutionPK int64  // the institution's index key (filled by the registry)
	// Issuer is the IssuerOfPatientID given to objects it sends without one: its patient IDs are unique only
	// within that issuer.
	Issuer string
	// Charset is the character set assumed when its objects declare none or a wrong one (e.g. "CP932" for an older
	// modality that sends undeclared Shift_JIS).
	Charset string
	// TLS makes associations renkei opens to it (C-MOVE sub-operations, storage-commitment reports) speak DICOM TLS
	// on Port.
	TLS bool
}
