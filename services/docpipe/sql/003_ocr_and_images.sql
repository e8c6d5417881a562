-- OCR and image analysis (GPU steps perform_ocr and analyze_images): how
-- many pages were read by OCR and how confidently, and for images their
-- size, format, perceptual hash (near-duplicate search) and colours.

ALTER TABLE documents ADD COLUMN IF NOT EXISTS ocr_pages      integer;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS ocr_confidence real;
ALTER TABLE documents ADD COLUMN IF NOT EXISTS image_info     jsonb;

CREATE INDEX IF NOT EXISTS documents_image_phash_idx
    ON documents ((image_info ->> 'phash')) WHERE image_info IS NOT NULL;
