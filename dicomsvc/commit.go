package dicomsvc

import (
	"context"

	"renkei"
	"renkei/dicom"
	"renkei/dimse"
)

// Failure reasons of storage commitment (PS3.3 C.14.1.1, PS3.4 J.3.3.1.1.1).
const (
	failureProcessing            uint16 = 0x0110
	failureNoSuchObject          uint16 = 0x0112
	failureClassInstanceConflict uint16 = 0x0119
)

// commitBatch is how many SOP Instance UIDs one index query checks.
const commitBatch = 500

// committer serves the Storage Commitment Push Model (PS3.4 J): the dimse package answers the N-ACTION, calls
// Commit, and reports the result with N-EVENT-REPORT on the same association or on a new one to the requestor's
// registered address.
type committer struct{ s *Service }

// Commit checks each referenced instance: it is committed when the index holds it live (not in the trash) with the
// same SOP class and its blob is in the store. The index records an instance only after its blob was made durable
// (fsync and rename), so a live index row is a safely stored object.
func (c committer) Commit(ctx context.Context, a *dimse.Association, req *dimse.CommitRequest) (committed, failed []dimse.SOPReference) {
	s := c.s
	log := s.logger().With("calling_ae", a.Peer().CallingAETitle, "transaction", req.TransactionUID)
	ctx, st := s.as(ctx, a)
	if st.IsFailure() {
		// The AE registry could not be read (or the AE acts for no institution): nothing was checked, so the
		// instances are not reported missing (0x0112) but as a processing failure that a later request may mend.
		for _, r := range req.References {
			r.FailureReason = failureProcessing
			failed = append(failed, r)
		}
		return nil, failed
	}
	refs := req.References
	for len(refs) > 0 {
		batch := refs[:min(len(refs), commitBatch)]
		refs = refs[len(batch):]
		var uids []string
		for _, r := range batch {
			if dicom.ValidUID(r.SOPInstanceUID) {
				uids = append(uids, r.SOPInstanceUID)
			}
		}
		stored := map[string]renkei.InstanceRecord{}
		var qerr error
		if len(uids) > 0 {
			// Only the caller's institution's own copies count: a commitment says "renkei holds what you sent".
			q := &renkei.Query{Level: renkei.InstanceLevel, Limit: len(uids) + 1, Scope: &renkei.Scope{OwnOnly: true},
				Matches: []renkei.Match{{Keyword: "SOPInstanceUID", Kind: renkei.MatchList, Values: uids}}}
			recs, err := s.Archive.QueryInstances(ctx, q)
			qerr = err
			for _, rec := range recs {
				stored[rec.SOPInstanceUID] = rec
			}
		}
		for _, r := range batch {
			rec, ok := stored[r.SOPInstanceUID]
			switch {
			case qerr != nil:
				r.FailureReason = failureProcessing
			case !ok:
				r.FailureReason = failureNoSuchObject
			case rec.SOPClassUID != r.SOPClassUID:
				r.FailureReason = failureClassInstanceConflict
			default:
				b, err := s.Archive.Blobs.Open(ctx, rec.BlobKey)
				if err != nil {
					log.Error("storage commitment: indexed instance without its blob", "sop_instance", rec.SOPInstanceUID, "err", err)
					r.FailureReason = failureProcessing
					break
				}
				size := b.Size()
				b.Close()
				if size != rec.Size {
					log.Error("storage commitment: blob size differs from the index", "sop_instance", rec.SOPInstanceUID, "blob", size, "index", rec.Size)
					r.FailureReason = failureProcessing
					break
				}
				committed = append(committed, dimse.SOPReference{SOPClassUID: r.SOPClassUID, SOPInstanceUID: r.SOPInstanceUID})
				continue
			}
			failed = append(failed, r)
		}
		if qerr != nil {
			log.Error("storage commitment: index query failed", "err", qerr)
		}
	}
	log.Info("storage commitment", "committed", len(committed), "failed", len(failed))
	return committed, failed
}
