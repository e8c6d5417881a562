"""OCR throughput of :class:`OcrEngine` against a bare easyocr ``readtext`` loop.

Both read the same generated images (short invoices, every one different)
with the same loaded easyocr reader, in the same process and run; the two are
interleaved image by image, alternating which goes first, so a noisy machine
slows both alike. The engine's extra work (pixel cap, EXIF rotation, shrinking,
reading order, text area) is included in its time.

    images_per_s = images / seconds spent in OcrEngine.read
    ratio        = engine images/s / bare readtext images/s

Runs on the first visible GPU when there is one (GPU_COUNT), else on the CPU.
Usage: python bench/ocr.py [--images 20] [--font-size 34] [--lines 3] [--threads N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from docpipe.activities.gpu.devices import visible_devices
from docpipe.activities.gpu.ocr import OcrEngine
from docpipe.config import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testdata"))
import make_binary_samples as samples


def make_images(count: int, *, lines: int, font_size: int, seed: int = 5) -> list[bytes]:
    """PNG invoices with distinct numbers, amounts and dates."""
    rng = random.Random(seed)
    images = []
    for i in range(count):
        text = [
            f"Invoice {rng.randint(10000, 99999)}",
            f"Total {rng.randint(1, 9999)}.{rng.randint(0, 99):02d}",
            f"Due 2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            f"Customer {rng.randint(100, 999)} order {i}",
        ][:lines]
        images.append(samples.image_bytes(samples.text_image(text, font_size=font_size), "PNG"))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--font-size", type=int, default=34)
    parser.add_argument("--lines", type=int, default=3, choices=range(1, 5))
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    device = visible_devices(load_settings().gpu_count)[0]
    started = time.perf_counter()
    engine = OcrEngine([device])
    load_s = time.perf_counter() - started
    reader = engine.replicas[0].reader
    images = make_images(args.images, lines=args.lines, font_size=args.font_size)
    print(f"device={device} images={len(images)} model_load_s={load_s:.2f}")
    if device == "cpu":
        import torch

        print(f"torch_threads={torch.get_num_threads()}")

    engine.read(images[0])  # warm-up: first calls allocate and pick kernels
    reader.readtext(images[0])

    engine_s = bare_s = 0.0
    confidences = []
    for i, data in enumerate(images):
        for which in ("engine", "bare") if i % 2 == 0 else ("bare", "engine"):
            started = time.perf_counter()
            if which == "engine":
                confidences.append(engine.read(data).confidence)
                engine_s += time.perf_counter() - started
            else:
                reader.readtext(data)
                bare_s += time.perf_counter() - started
    engine.close()

    engine_rate = len(images) / engine_s
    bare_rate = len(images) / bare_s
    print(
        f"engine: {engine_s / len(images):.3f} s/image, mean confidence {sum(confidences) / len(confidences):.3f}"
    )
    print(f"bare readtext: {bare_s / len(images):.3f} s/image")
    print(f"images_per_s={engine_rate:.3f}")
    print(f"ratio={engine_rate / bare_rate:.3f}")


if __name__ == "__main__":
    main()
