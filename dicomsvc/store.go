package dicomsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"renkei"
	"renkei/archive"
	"renkei/dicom"
	"renkei/dimse"
)

// store performs C-STORE (PS3.4 B.2): the data set streams, behind a File Meta Information built from the command,
// into archive.Receive, the same ingest as STOW-RS, so the stored blob is a Part 10 file whose data set is exactly
// the bytes the peer sent. Nothing is buffered beyond the meta information.
func (s *Service) store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
	calling := a.Peer().CallingAETitle
	log := s.logger().With("calling_ae", calling, "sop_instance", req.SOPInstanceUID)
	ae, err := s.callingAE(ctx, a)
	if err != nil {
		log.Error("C-STORE: AE registry look-up failed", "err", err)
		return dimse.Failure(dimse.StatusOutOfResources, "the AE registry cannot be read; try again later")
	}
	meta, err := fileMeta(req, calling)
	if err != nil {
		log.Warn("C-STORE: cannot build the File Meta Information", "err", err)
		return dimse.Failure(dimse.StatusCannotUnderstand, "the command cannot describe a DICOM file: "+err.Error())
	}
	r := io.MultiReader(bytes.NewReader(meta), data)
	p, res := s.Archive.Receive(ctx, r, archive.StoreRequest{Source: "C-STORE from " + calling, Issuer: ae.Issuer, Charset: ae.Charset})
	if p != nil {
		// PS3.7 9.3.1.1: the Affected SOP Class and Instance UIDs of the command are those of the data set.
		switch {
		case res.SOPInstanceUID != req.SOPInstanceUID:
			p.Abort()
			res.Failure, res.Err = archive.StatusDataSetMismatch, renkei.Errorf("dicomsvc.Store", renkei.Invalid,
				"the data set's SOP Instance UID %s is not the command's %s", res.SOPInstanceUID, req.SOPInstanceUID)
		case res.SOPClassUID != req.SOPClassUID:
			p.Abort()
			res.Failure, res.Err = archive.StatusDataSetMismatch, renkei.Errorf("dicomsvc.Store", renkei.Invalid,
				"the data set's SOP Class UID %s is not the command's %s", res.SOPClassUID, req.SOPClassUID)
		default:
			res = p.Commit(ctx)
		}
	}
	if res.Failure != 0 {
		st := storeStatus(res)
		log.Warn("C-STORE refused", "status", st, "err", res.Err)
		return st
	}
	for _, w := range res.Warnings {
		log.Warn("C-STORE stored with a warning", "warning", w)
	}
	log.Debug("C-STORE stored", "outcome", res.Outcome)
	for _, w := range res.Warnings {
		if strings.Contains(w, "no pixel data") {
			// PS3.4 B.2.3: Warning, data set does not match SOP class (an image without its Type 1 Pixel Data).
			return dimse.Status{Code: dimse.StatusDataSetDoesNotMatchWarning, ErrorComment: "image without pixel data"}
		}
	}
	return dimse.Success()
}

// storeStatus maps an archive refusal to a C-STORE status (PS3.4 B.2.3, Table B.2-1). The archive's 0x0111 (an
// instance already stored with other content) has no C-STORE status of its own: PS3.4 B.2.3 lists only A7xx
// (refused, out of resources: the peer may retry), A9xx (error, data set does not match SOP class) and Cxxx (error,
// cannot understand), and 0x0111 Duplicate SOP Instance is an N-CREATE status (PS3.7 C.5). A retry cannot help, so
// it is 0xA900 with an Error Comment that says why. The archive's 0x0110 is 0xA700 when a retry may help (the
// index or store failed) and 0xC000 otherwise (the data set could not be read).
func storeStatus(res *archive.StoreResult) dimse.Status {
	code := res.Failure
	switch code {
	case archive.StatusDuplicateDifferent:
		code = dimse.StatusDataSetDoesNotMatchSOPClass
	case archive.StatusProcessingFailure:
		code = dimse.StatusCannotUnderstand
		if k := renkei.ErrorKind(res.Err); k == renkei.Internal || k == renkei.Unavailable {
			code = dimse.StatusOutOfResources
		}
	case archive.StatusOutOfResources, archive.StatusDataSetMismatch, archive.StatusCannotUnderstand:
	default:
		if code>>8 != 0xA7 && code>>8 != 0xA9 && code>>12 != 0xC {
			code = dimse.StatusCannotUnderstand
		}
	}
	msg := renkei.ErrorMessage(res.Err)
	switch {
	case res.Err == nil:
		msg = ""
	case res.Failure == archive.StatusDuplicateDifferent:
		msg = "instance already stored with different content" // the UID is the command's; the comment has 64 characters
	case res.Failure == archive.StatusDataSetMismatch && renkei.ErrorKind(res.Err) == renkei.Conflict:
		// The index's message starts with the 64-digit study or series UID, and the Error Comment (LO) keeps 64
		// characters: the reason itself would be cut off.
		msg = "the study UID already belongs to another patient"
		if strings.HasPrefix(renkei.ErrorMessage(res.Err), "series ") {
			msg = "the series UID already belongs to another study"
		}
	}
	return dimse.Failure(code, msg)
}

// fileMeta returns the preamble, "DICM" and the File Meta Information (PS3.10 7.1) of a received C-STORE data set.
func fileMeta(req *dimse.StoreRequest, callingAE string) ([]byte, error) {
	return dicom.ReceivedFileMeta(req.SOPClassUID, req.SOPInstanceUID, req.TransferSyntaxUID, callingAE)
}

// dataSetOffset returns where the data set of a stored Part 10 file starts: after the preamble, "DICM" and the
// group 0002 elements, which are always Explicit VR Little Endian (PS3.10 7.1). It reads the meta elements one by
// one rather than trusting the group length, which some writers get wrong.
func dataSetOffset(r io.ReaderAt) (int64, error) {
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], 128); err != nil || string(magic[:]) != "DICM" {
		return 0, dicom.ErrNotDICOM
	}
	off := int64(132)
	var h [12]byte
	for i := 0; i < 1000; i++ {
		n, err := r.ReadAt(h[:8], off)
		if n < 8 {
			if errors.Is(err, io.EOF) && n == 0 {
				return off, nil // a file with no data set
			}
			return 0, fmt.Errorf("read meta information: %w", err)
		}
		if group := uint16(h[0]) | uint16(h[1])<<8; group != 0x0002 {
			return off, nil
		}
		vr := string(h[4:6])
		if longLength(vr) {
			if _, err := r.ReadAt(h[8:12], off+8); err != nil {
				return 0, fmt.Errorf("read meta information: %w", err)
			}
			off += 12 + int64(uint32(h[8])|uint32(h[9])<<8|uint32(h[10])<<16|uint32(h[11])<<24)
		} else {
			off += 8 + int64(uint16(h[6])|uint16(h[7])<<8)
		}
	}
	return 0, errors.New("the File Meta Information has too many elements")
}

// longLength reports whether an Explicit VR element of the VR has a 32-bit length after two reserved bytes
// (PS3.5 Table 7.1-1).
func longLength(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}
