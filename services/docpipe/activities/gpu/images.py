"""What an image is, without a model: size, format, EXIF, perceptual hash, colours.

Everything here is pure Pillow + numpy and cheap (a few milliseconds), so it
can run next to OCR on the GPU worker or anywhere else. The perceptual hash
finds near-duplicates across the corpus (the same scan re-uploaded as JPEG,
resized or slightly recompressed): two images are near-duplicates when their
64-bit hashes differ in only a few bits.

:func:`open_image` is the one door untrusted image bytes go through (OCR uses
it too): it checks the pixel count from the header *before* decoding, so a
small file that claims to be 100 000 x 100 000 pixels is refused without
allocating anything.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from docpipe.errors import DocumentError
from docpipe.models import Stage
from docpipe.phash import HASH_BITS, hamming, near_duplicate

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ColorShare",
    "ImageAnalysis",
    "analyze_image",
    "hamming",
    "near_duplicate",
    "open_image",
    "perceptual_hash",
    "to_rgb",
    "upright_view",
]

MAX_IMAGE_PIXELS = 64_000_000
"""A 600 dpi A4 scan is 35 MP; decoded RGB at the cap is ~190 MB."""

_DCT_SIZE = 32  # pHash: DCT of a 32x32 greyscale thumbnail, keep the 8x8 lowest frequencies
_LOW = 8
_COLOR_SAMPLE_SIDE = 128
_MAX_EXIF_VALUE_CHARS = 200

# Common, harmless EXIF tags (GPS position is left out on purpose: it is
# personal data that a text pipeline has no use for).
_EXIF_TAGS = (
    "Make",
    "Model",
    "Software",
    "DateTime",
    "Orientation",
    "ImageDescription",
    "Artist",
    "Copyright",
    "XResolution",
    "YResolution",
    "ResolutionUnit",
)
_EXIF_IFD_TAGS = ("DateTimeOriginal", "LensModel", "ExposureTime", "FNumber", "ISOSpeedRatings")


@dataclass
class ColorShare:
    hex: str
    """``#rrggbb``."""
    share: float
    """Fraction of the image's pixels closest to this colour (0..1)."""


@dataclass
class ImageAnalysis:
    width: int
    height: int
    format: str
    """Pillow's format name: ``PNG``, ``JPEG``, ``TIFF``, ..."""
    mode: str
    """Pixel layout as stored: ``RGB``, ``L`` (greyscale), ``1`` (bilevel), ``CMYK``, ..."""
    frames: int
    """Pages of a TIFF, frames of an animation; 1 for most images."""
    phash: str
    """64-bit perceptual hash, 16 hex digits (compare with :func:`hamming`)."""
    dominant_colors: list[ColorShare] = field(default_factory=list)
    """Up to 5 colours, most frequent first."""
    exif: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- loading


def open_image(
    data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS, draft_side: int | None = None
) -> Image.Image:
    """Decode untrusted image bytes (first frame), refusing oversized images.

    ``draft_side`` lets a JPEG decode at a reduced scale (1/2, 1/4, 1/8) that
    still has at least that many pixels per side: several times faster than
    decoding everything and shrinking afterwards. Other formats ignore it.

    Raises :class:`DocumentError` (stage ``extract``) for an image larger than
    ``max_pixels`` and for bytes Pillow cannot read (not an image, truncated).
    """
    try:
        with warnings.catch_warnings():
            # Our own cap decides; Pillow's bomb warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
            _check_pixels(image.size, max_pixels)
            if draft_side is not None and image.format == "JPEG":
                image.draft(image.mode, (draft_side, draft_side))
            image.load()
    except Image.DecompressionBombError as exc:
        # Pillow refuses far oversized images itself, inside open(), before our
        # check can run: the same reason, in the same words.
        match = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(match.group(1)) / 1e6:,.0f} MP" if match else "far too many pixels"
        raise DocumentError(
            Stage.EXTRACT,
            f"image too large to process: {size}, the limit is {max_pixels / 1e6:.0f} MP",
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow reports truncated and malformed files as OSError/SyntaxError.
        raise DocumentError(Stage.EXTRACT, f"unreadable image: {exc}") from exc
    return image


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise DocumentError(Stage.EXTRACT, f"unreadable image: it is {width}x{height} pixels")
    if width * height > max_pixels:
        raise DocumentError(
            Stage.EXTRACT,
            f"image too large to process: {width}x{height} pixels "
            f"({width * height / 1e6:.0f} MP, the limit is {max_pixels / 1e6:.0f} MP)",
        )


def upright_view(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF ``Orientation`` says (phone photos are
    often stored sideways); unchanged if there is no or a broken tag."""
    try:
        return ImageOps.exif_transpose(image)
    except (ValueError, TypeError, KeyError, OSError, SyntaxError):
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of any image, as a person would see it.

    Transparent areas become white (text drawn on a transparent background
    would otherwise vanish into black), and 16-bit or float greyscale (medical
    and scientific TIFFs) is stretched to 8 bits instead of being clipped.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


# --------------------------------------------------------------------------- analysis


def analyze_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageAnalysis:
    """Dimensions, format, EXIF, perceptual hash and dominant colours of an image.

    Width and height are as stored; an EXIF ``Orientation`` says whether a
    viewer would rotate it. Raises :class:`DocumentError` like :func:`open_image`.
    """
    image = open_image(data, max_pixels=max_pixels)
    upright = to_rgb(upright_view(image))
    return ImageAnalysis(
        width=image.width,
        height=image.height,
        format=image.format or "",
        mode=image.mode,
        frames=int(getattr(image, "n_frames", 1)),
        phash=perceptual_hash(upright),
        dominant_colors=dominant_colors(upright),
        exif=exif_summary(image),
    )


def perceptual_hash(image: Image.Image) -> str:
    """The 64-bit pHash of an image, as 16 hex digits.

    The image is reduced to 32x32 greyscale, transformed with a 2-D DCT, and
    the 8x8 lowest frequencies (the coarse structure, which survives
    resizing, recompression and small edits) are compared with their median:
    one bit each. This is the classic pHash (as in the ``imagehash`` package).
    """
    grey = image.convert("L").resize((_DCT_SIZE, _DCT_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    basis = _dct_matrix(_DCT_SIZE)
    low = (basis @ pixels @ basis.T)[:_LOW, :_LOW]
    bits = (low > np.median(low)).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:0{HASH_BITS // 4}x}"


@lru_cache(maxsize=2)
def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``C @ x`` is the DCT of the column ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0, :] = np.sqrt(1.0 / n)
    return matrix


def dominant_colors(image: Image.Image, count: int = 5) -> list[ColorShare]:
    """The ``count`` colours that cover most of the image, most frequent first.

    Median-cut quantisation of a thumbnail: the palette it finds is what a
    person would name as the image's colours, at a fixed small cost.
    """
    sample = image.convert("RGB")
    sample.thumbnail((_COLOR_SAMPLE_SIDE, _COLOR_SAMPLE_SIDE), Image.Resampling.BILINEAR)
    quantized = sample.quantize(colors=count, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette() or []
    total = sample.width * sample.height
    counts = sorted(quantized.getcolors(maxcolors=256) or [], key=lambda item: (-item[0], item[1]))
    shares = []
    for pixels, index in counts[:count]:
        r, g, b = palette[3 * index : 3 * index + 3]
        shares.append(ColorShare(hex=f"#{r:02x}{g:02x}{b:02x}", share=round(pixels / total, 4)))
    return shares


def exif_summary(image: Image.Image) -> dict[str, str]:
    """A few common EXIF tags as short printable strings; ``{}`` when there is no EXIF.

    EXIF is untrusted free-form data: values are stringified, stripped of
    control characters and cut short, and a malformed block is ignored.
    """
    try:
        exif = image.getexif()
        values: dict[str, object] = {}
        by_name = {name: tag for tag, name in ExifTags.TAGS.items()}
        for name in _EXIF_TAGS:
            if by_name[name] in exif:
                values[name] = exif[by_name[name]]
        sub_ifd = exif.get_ifd(ExifTags.IFD.Exif)
        for name in _EXIF_IFD_TAGS:
            if by_name[name] in sub_ifd:
                values[name] = sub_ifd[by_name[name]]
    except Exception:  # a broken EXIF block must not fail the whole image
        return {}
    return {name: text for name, value in values.items() if (text := _exif_text(value))}


def _exif_text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    elif isinstance(value, tuple):
        value = " ".join(str(v) for v in value)
    text = "".join(ch for ch in str(value) if ch.isprintable()).strip()
    return text[:_MAX_EXIF_VALUE_CHARS]
