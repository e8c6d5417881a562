-- Full-text search over chunks (`docpipe search --mode text|hybrid`): each stored
-- chunk's text, indexed with its document's language (stemmed) and as plain words
-- ('simple', unstemmed), so a query matches inflected forms and exact words alike.
-- Written with the vectors by store_vector_embeddings: a document's rows are
-- replaced as a whole, so they always match its chunks in Chroma. No foreign key:
-- the chunks are stored before the document's row, and a search joins on status.

CREATE TABLE IF NOT EXISTS chunk_texts (
    document_id text      NOT NULL,
    chunk_index integer   NOT NULL,
    text        text      NOT NULL,
    ts_config   regconfig NOT NULL DEFAULT 'simple',
    tsv         tsvector  GENERATED ALWAYS AS (
        to_tsvector(ts_config, text) || to_tsvector('simple'::regconfig, text)
    ) STORED,
    PRIMARY KEY (document_id, chunk_index)
);
CREATE INDEX IF NOT EXISTS chunk_texts_tsv_idx ON chunk_texts USING gin (tsv);
