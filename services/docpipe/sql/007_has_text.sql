-- Documents stored without text: an image or scanned page with nothing to read is
-- still a document (its image analysis, hash and near-duplicate link are kept), with
-- zero chunks and has_text = false. NULL for rows written before this migration.

ALTER TABLE documents ADD COLUMN IF NOT EXISTS has_text boolean;
