-- A merge of two regional patients (Link of two local patients already linked to different ones) moves every link
-- of the second into the first; merged_from remembers where each moved link came from, so that Unmerge can put them
-- back under their old regional number. 0: linked directly.
ALTER TABLE patient_links ADD COLUMN merged_from INTEGER NOT NULL DEFAULT 0;
