-- A deliberate re-booking (`paysync rebook`) after the operation's entry was cancelled in ERPNext
-- books it with a new duplicate-guard value (`<id>#2`, ...): a cancelled entry keeps its value for
-- ever. Remembered here so that a re-booking interrupted half way is finished by the next run
-- with the same value.
ALTER TABLE operations ADD COLUMN guard_value TEXT;
