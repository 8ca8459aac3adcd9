-- The webhook's (untrusted) reference, used only to read the order ahead while the operation is
-- re-read from Mobbex; the decision always uses the API's answer.
ALTER TABLE inbox ADD COLUMN hint TEXT;
