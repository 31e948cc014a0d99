package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"

	"renkei/dicom"
	"renkei/dimse"
)

// rejectTransient is A-ASSOCIATE-RJ rejected-transient, service-user, no-reason-given (PS3.8 Table 9-21): the
// modality may try again later, when the spool has room.
const rejectTransient dimse.Reject = 0x020101

// SCP is the gateway's Storage SCP: C-ECHO and C-STORE of every storage SOP class into the spool. Give Handlers and
// AcceptAE to a dimse.Server.
type SCP struct {
	Spool *Spool
	// Arrived is called after an instance is on the spool's disk (to wake the uploader). May be nil.
	Arrived func()
	Logger  *slog.Logger
}

func (s *SCP) logger() *slog.Logger {
	return orDiscard(s.Logger)
}

// Handlers returns C-ECHO and C-STORE.
func (s *SCP) Handlers() dimse.Handlers {
	return dimse.Handlers{
		Echo:  func(context.Context, *dimse.Association) dimse.Status { return dimse.Success() },
		Store: dimse.StoreFunc(s.store),
	}
}

// AcceptAE admits every modality while the spool has room, and rejects associations as rejected-transient below the
// free-space reserve.
func (s *SCP) AcceptAE(p dimse.Peer) (bool, dimse.Reject) {
	if s.Spool.BelowReserve() {
		s.logger().Warn("association rejected: the spool's disk is below its free-space reserve", "calling_ae", p.CallingAETitle)
		return false, rejectTransient
	}
	return true, 0
}

// store writes the data set, behind a File Meta Information built from the command, to the spool, and answers
// success only once Put returned: the instance is then on disk (PS3.4 B.2.3 statuses otherwise).
func (s *SCP) store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
	calling := a.Peer().CallingAETitle
	log := s.logger().With("calling_ae", calling, "sop_instance", req.SOPInstanceUID)
	meta, err := fileMeta(req, calling)
	if err != nil {
		return dimse.Failure(dimse.StatusCannotUnderstand, "the command cannot describe a DICOM file")
	}
	e, err := s.Spool.Put(ctx, io.MultiReader(bytes.NewReader(meta), data), Entry{CallingAETitle: calling})
	var pe *dicom.ParseError
	switch {
	case errors.Is(err, ErrFull):
		log.Warn("C-STORE refused: spool below its free-space reserve", "err", err)
		return dimse.Failure(dimse.StatusOutOfResources, "the gateway's disk is full; try again later")
	case errors.As(err, &pe) || errors.Is(err, dicom.ErrNotDICOM):
		log.Warn("C-STORE refused: not readable DICOM", "err", err)
		return dimse.Failure(dimse.StatusCannotUnderstand, "the data set cannot be read")
	case err != nil:
		log.Error("C-STORE: spool write failed", "err", err)
		return dimse.Failure(dimse.StatusOutOfResources, "the gateway cannot write to its spool")
	case e.SOPInstanceUID != req.SOPInstanceUID || e.SOPClassUID != req.SOPClassUID:
		// PS3.7 9.3.1.1: the Affected SOP Class and Instance UIDs are those of the data set.
		s.Spool.Remove(e.Key)
		return dimse.Failure(dimse.StatusDataSetDoesNotMatchSOPClass, "the data set's UIDs are not the command's")
	}
	log.Debug("C-STORE spooled", "key", e.Key, "study", e.StudyInstanceUID)
	if s.Arrived != nil {
		s.Arrived()
	}
	return dimse.Success()
}

// fileMeta returns the preamble, "DICM" and File Meta Information (PS3.10 7.1) of a received data set.
func fileMeta(req *dimse.StoreRequest, callingAE string) ([]byte, error) {
	return dicom.ReceivedFileMeta(req.SOPClassUID, req.SOPInstanceUID, req.TransferSyntaxUID, callingAE)
}
