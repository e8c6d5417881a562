"""GPU-queue OCR: perform_ocr (and, inside it, analyze_images for image inputs).

Scanned PDF pages arrive already rendered to PNG by the CPU worker; images
arrive as they were downloaded. Each page is read by the worker's OCR engine
(one easyocr reader per device, one image at a time each); the page texts
join into one text that the CPU step then processes like any other. For an
image, the same bytes are also analysed (size, format, EXIF, perceptual hash,
dominant colours): same queue, same download, one activity call.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from temporalio import activity

from docpipe import steps
from docpipe.activities.batch import each_document
from docpipe.activities.gpu.images import analyze_image
from docpipe.activities.gpu.model_classifiers import ImageModelClassifier
from docpipe.activities.gpu.ocr import ImageText, OcrEngine
from docpipe.errors import DocumentError
from docpipe.models import DocumentFailure, OcrJob, OcrResult, OcrText, Stage
from docpipe.storage import keys
from docpipe.storage.objects import ObjectNotFound, ObjectStore


def image_info(analysis: Any, ocr: ImageText) -> dict[str, Any]:
    """The analysis as stored in the metadata row (JSON)."""
    info = asdict(analysis)
    info["text_area_ratio"] = round(ocr.text_area_ratio, 4)
    info["text_boxes"] = ocr.boxes
    return info


class OcrActivities:
    def __init__(
        self,
        store: ObjectStore,
        engine: OcrEngine,
        image_classifier: ImageModelClassifier | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.image_classifier = image_classifier

    @activity.defn(name=steps.PERFORM_OCR)
    async def perform_ocr(self, jobs: list[OcrJob]) -> OcrResult:
        succeeded, failed = await each_document(self._read_document, jobs)
        return OcrResult(succeeded=succeeded, failed=failed)

    async def _read_document(self, job: OcrJob) -> OcrText | DocumentFailure:
        try:
            pages = [await self.store.get(key) for key in job.page_keys]
        except ObjectNotFound as err:
            return DocumentFailure(job.document_id, Stage.OCR, f"page image missing: {err}")
        try:
            results = [await self.engine.aread(page) for page in pages]
            info = await self.analyze_images(pages[0], results[0]) if job.is_image else None
        except DocumentError as err:
            return DocumentFailure(job.document_id, err.stage, err.reason)
        text = "\n\n".join(r.text for r in results if r.text.strip())
        key = keys.ocr_text(job.document_id)
        await self.store.put(key, text.encode("utf-8"), "text/plain; charset=utf-8")
        read = [r for r in results if r.boxes]
        confidence = sum(r.confidence for r in read) / len(read) if read else 0.0
        return OcrText(
            job.document_id, key, len(pages), round(confidence, 4), info, chars=len(text.strip())
        )

    async def analyze_images(self, image: bytes, ocr: ImageText) -> dict[str, Any]:
        """An image input's analysis (size, format, EXIF, perceptual hash, colours,
        text area, labels when an image classifier is loaded), as its metadata row
        stores it. Raises :class:`DocumentError` for an image it cannot decode."""
        info = image_info(await asyncio.to_thread(analyze_image, image), ocr)
        if self.image_classifier is not None:
            info["labels"] = await self.image_classifier.classify(image)
        return info
