-- One row per document: what happened to it and where its data lives.
-- Written by the IO worker with INSERT ... ON CONFLICT (document_id), so a
-- retried activity or a re-run CSV updates the row instead of adding one.

CREATE TABLE IF NOT EXISTS documents (
    document_id      text        PRIMARY KEY,
    source           text        NOT NULL,
    row_number       integer     NOT NULL,
    status           text        NOT NULL CHECK (status IN ('succeeded', 'failed')),
    run_id           text        NOT NULL,
    title            text        NOT NULL DEFAULT '',
    tags             jsonb       NOT NULL DEFAULT '[]'::jsonb,
    failure_stage    text,
    failure_reason   text,
    content_type     text,
    size_bytes       bigint,
    content_sha256   text,
    language         text,
    char_count       integer,
    word_count       integer,
    token_count      integer,
    chunk_count      integer,
    compressed_bytes bigint,
    raw_key          text,
    text_key         text,
    chunks_key       text,
    compressed_key   text,
    embeddings_key   text,
    embedding_model  text,
    top_words        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- How many times a pipeline wrote this row (1 on first insert).
    attempts         integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- "How is run X doing?" (docpipe status) and the per-status counts.
CREATE INDEX IF NOT EXISTS documents_run_status_idx ON documents (run_id, status);
-- The dead-letter listing: newest failures first.
CREATE INDEX IF NOT EXISTS documents_failed_recent_idx
    ON documents (updated_at DESC) WHERE status = 'failed';
