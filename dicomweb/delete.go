package dicomweb

import (
	"encoding/json"
	"net/http"
	"time"

	"renkei"
)

// delete moves a study, series or instance to the trash (PS3.18 10.9 shape); it stays restorable for the trash period.
func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	if _, err := h.Archive.Delete(r.Context(), r.PathValue("study"), r.PathValue("series"), r.PathValue("instance")); err != nil {
		h.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) restore(w http.ResponseWriter, r *http.Request) {
	n, err := h.Archive.Restore(r.Context(), r.PathValue("study"), r.PathValue("series"), r.PathValue("instance"))
	if err != nil {
		h.problem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int{"restoredInstances": n})
}

// purgeNow removes a study that is in the trash at once (no longer restorable).
func (h *Handler) purgeNow(w http.ResponseWriter, r *http.Request) {
	n, err := h.Archive.PurgeNow(r.Context(), r.PathValue("study"))
	if err != nil {
		h.problem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int{"purgedInstances": n})
}

type trashEntry struct {
	StudyInstanceUID  string    `json:"studyInstanceUID"`
	SeriesInstanceUID string    `json:"seriesInstanceUID,omitempty"`
	SOPInstanceUID    string    `json:"sopInstanceUID,omitempty"`
	PatientID         string    `json:"patientID"`
	PatientName       string    `json:"patientName"`
	Description       string    `json:"description,omitempty"`
	DeletedAt         time.Time `json:"deletedAt"`
	PurgeAfter        time.Time `json:"purgeAfter"`
}

// trashList lists what is in the trash: whole studies, and series and instances deleted from live studies.
func (h *Handler) trashList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	period := h.Archive.TrashPeriod
	var out []trashEntry
	studies, err := h.Archive.QueryStudies(ctx, &renkei.Query{Level: renkei.StudyLevel, Deleted: true})
	if err != nil {
		h.problem(w, r, err)
		return
	}
	for _, s := range studies {
		out = append(out, trashEntry{StudyInstanceUID: s.StudyInstanceUID, PatientID: s.Patient.ID, PatientName: s.PatientName,
			Description: s.StudyDescription, DeletedAt: *s.DeletedAt, PurgeAfter: s.DeletedAt.Add(period)})
	}
	series, err := h.Archive.QuerySeries(ctx, &renkei.Query{Level: renkei.SeriesLevel, Deleted: true})
	if err != nil {
		h.problem(w, r, err)
		return
	}
	for _, s := range series {
		if s.Study.DeletedAt != nil {
			continue
		}
		out = append(out, trashEntry{StudyInstanceUID: s.Study.StudyInstanceUID, SeriesInstanceUID: s.SeriesInstanceUID,
			PatientID: s.Study.Patient.ID, PatientName: s.Study.PatientName, Description: s.SeriesDescription,
			DeletedAt: *s.DeletedAt, PurgeAfter: s.DeletedAt.Add(period)})
	}
	insts, err := h.Archive.QueryInstances(ctx, &renkei.Query{Level: renkei.InstanceLevel, Deleted: true})
	if err != nil {
		h.problem(w, r, err)
		return
	}
	for _, in := range insts {
		if in.Series.DeletedAt != nil {
			continue
		}
		out = append(out, trashEntry{StudyInstanceUID: in.Series.Study.StudyInstanceUID, SeriesInstanceUID: in.Series.SeriesInstanceUID,
			SOPInstanceUID: in.SOPInstanceUID, PatientID: in.Series.Study.Patient.ID, PatientName: in.Series.Study.PatientName,
			DeletedAt: *in.DeletedAt, PurgeAfter: in.DeletedAt.Add(period)})
	}
	w.Header().Set("Content-Type", "application/json")
	if out == nil {
		out = []trashEntry{}
	}
	json.NewEncoder(w).Encode(out)
}
