-- The 地域連携室's e-mail address, where renkei tells an institution that a referral waits for it (the e-mail
-- carries a link to log in, never patient data).
ALTER TABLE institutions ADD COLUMN email TEXT NOT NULL DEFAULT '';
