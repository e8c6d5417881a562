-- Near-duplicate images across the corpus (resized, recompressed, lightly edited
-- copies): the closest stored image within a few bits of perceptual hash.
-- image_hash_bands indexes each 64-bit pHash as 8 one-byte bands; any hash within
-- 7 bits shares at least one band exactly, so a lookup is a few index probes plus
-- an exact check of the candidates (see docpipe/phash.py).

ALTER TABLE documents ADD COLUMN IF NOT EXISTS near_duplicate_of text;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS near_duplicate_distance smallint;

CREATE TABLE IF NOT EXISTS image_hash_bands (
    document_id text     NOT NULL REFERENCES documents (document_id) ON DELETE CASCADE,
    band        smallint NOT NULL,
    value       smallint NOT NULL,
    PRIMARY KEY (document_id, band)
);
CREATE INDEX IF NOT EXISTS image_hash_bands_lookup_idx ON image_hash_bands (band, value);

-- Images stored before this migration.
INSERT INTO image_hash_bands (document_id, band, value)
SELECT d.document_id, b.band, get_byte(decode(d.image_info ->> 'phash', 'hex'), b.band)
FROM documents d
CROSS JOIN generate_series(0, 7) AS b (band)
WHERE d.image_info ->> 'phash' ~ '^[0-9a-f]{16}$'
ON CONFLICT DO NOTHING;
