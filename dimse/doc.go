// Package dimse speaks DICOM over TCP: the upper layer protocol of PS3.8 (PDUs, the association state machine of
// Table 9-10, the ARTIM timer) and the DIMSE messages of PS3.7 (command sets, C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET,
// N-ACTION, N-EVENT-REPORT), as a service class provider (Server) and as a user (Dial).
//
// The package never sees the archive: a Server is given Handlers, small interfaces that the archive side implements
// (the Orthanc and pynetdicom shape). Data sets travel as streams: a C-STORE data set reaches StoreHandler.Store as an
// io.Reader fed from the P-DATA-TF PDUs as they arrive, and is sent from an io.Reader, fragmented to the peer's maximum
// PDU length, so neither side ever holds a whole object in memory.
//
// Everything read from the network is bounded: PDU lengths (a PDU longer than the maximum we announced is answered
// with A-ABORT before anything is allocated), item lengths and counts, command sets, identifiers, and the number of
// associations a Server runs at once.
//
// Command sets are always Implicit VR Little Endian (PS3.7 6.3.1); data sets are in the transfer syntax of the
// presentation context that carries them.
package dimse
