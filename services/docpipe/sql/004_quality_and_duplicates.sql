-- Postprocessing: a text quality score per document, and exact-duplicate
-- detection (another document with byte-identical content, found through
-- content_sha256 by query_metadata_database).

ALTER TABLE documents ADD COLUMN IF NOT EXISTS quality_score real;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS duplicate_of  text;

CREATE INDEX IF NOT EXISTS documents_content_sha256_idx
    ON documents (content_sha256) WHERE status = 'succeeded';
