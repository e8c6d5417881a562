"""Classifiers from local fine-tuned models, used instead of the zero-shot default
when a model path is configured.

* ``TextModelClassifier`` (``CLASSIFIER_MODEL_PATH``): a transformers
  sequence-classification model; a document is classified from its first
  tokens, labels come from the model's ``id2label``.
* ``ImageModelClassifier`` (``IMAGE_CLASSIFIER_MODEL_PATH``): a transformers
  image-classification model (ViT, ConvNeXt, ...) applied to image documents
  in ``perform_ocr``; its top labels join the image analysis.

Both load once per process from local files only, run on the worker's first
device (fp16 on CUDA) on a single-thread executor, like the other models.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from docpipe.activities.gpu.classify import Classification


def _softmax(logits: np.ndarray) -> np.ndarray:
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


class _LocalModel:
    """A transformers model and its input processor (tokenizer or image processor),
    loaded from ``model_path``'s local files only; the model fp16 on CUDA."""

    def __init__(self, model_path: Path, device: str, model_class, processor_class) -> None:  # type: ignore[no-untyped-def]
        import torch

        self.device = device
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"classifier-{device}")
        self.processor = processor_class.from_pretrained(model_path, local_files_only=True)
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        model = model_class.from_pretrained(model_path, local_files_only=True, dtype=dtype)
        self.model = model.to(device).eval()

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _labels(self, probabilities: np.ndarray, config) -> Classification:  # type: ignore[no-untyped-def]
        labels = [str(config.id2label[i]) for i in range(len(probabilities))]
        best = int(np.argmax(probabilities))
        scores = {label: round(float(p), 4) for label, p in zip(labels, probabilities, strict=True)}
        return Classification(labels[best], round(float(probabilities[best]), 4), scores)


class TextModelClassifier(_LocalModel):
    def __init__(self, model_path: Path, device: str, *, max_tokens: int = 512) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__(model_path, device, AutoModelForSequenceClassification, AutoTokenizer)
        self.max_tokens = max_tokens

    def _classify(self, text: str) -> Classification:
        import torch

        batch = self.processor(
            text, return_tensors="pt", truncation=True, max_length=self.max_tokens
        ).to(self.device)
        with torch.inference_mode():
            logits = self.model(**batch).logits[0].float().cpu().numpy()
        return self._labels(_softmax(logits), self.model.config)

    async def classify_document(self, text: str, vector: np.ndarray) -> Classification:
        return await self._run(self._classify, text)


class ImageModelClassifier(_LocalModel):
    def __init__(self, model_path: Path, device: str, *, top: int = 3) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        super().__init__(model_path, device, AutoModelForImageClassification, AutoImageProcessor)
        self.top = top

    def _classify(self, image_bytes: bytes) -> list[dict[str, float | str]]:
        import torch

        from docpipe.activities.gpu.images import open_image, to_rgb

        image = to_rgb(open_image(image_bytes))
        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0].float().cpu().numpy()
        probabilities = _softmax(logits)
        order = np.argsort(-probabilities)[: self.top]
        return [
            {
                "label": str(self.model.config.id2label[int(i)]),
                "score": round(float(probabilities[i]), 4),
            }
            for i in order
        ]

    async def classify(self, image_bytes: bytes) -> list[dict[str, float | str]]:
        return await self._run(self._classify, image_bytes)
