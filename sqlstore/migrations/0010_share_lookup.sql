-- Shares looked up from the study's side: a search that finds few studies (a name, an ID) asks, for each, whether a
-- share in force grants it, instead of collecting every share of the caller first.
CREATE INDEX shares_patient ON shares (patient_pk) WHERE revoked_at IS NULL;
CREATE INDEX share_studies_study ON share_studies (study_pk);
