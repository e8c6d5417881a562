-- When the batch workflow that wrote the row started: with updated_at, how
-- long the document took end to end (also the pipeline latency metric).

ALTER TABLE documents ADD COLUMN IF NOT EXISTS started_at timestamptz;
