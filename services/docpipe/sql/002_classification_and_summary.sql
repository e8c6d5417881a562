-- Zero-shot class and summary of each document (GPU steps classify_document
-- and run_llm_inference). Nullable: rows written before this migration, and
-- runs without --summarize, simply have none.

ALTER TABLE documents ADD COLUMN IF NOT EXISTS label       text;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS label_score real;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS summary     text;

CREATE INDEX IF NOT EXISTS documents_label_idx ON documents (label) WHERE label IS NOT NULL;
