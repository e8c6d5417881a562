"""Image analysis without a model: facts, EXIF, perceptual hash, colours, and the
guards every untrusted image passes (pixel cap before decoding, unreadable bytes)."""

from __future__ import annotations

import struct
import zlib

import make_binary_samples as samples  # testdata/, on pytest's pythonpath
import numpy as np
import pytest
from document_errors import fails_at
from PIL import Image, ImageDraw, ImageFilter

from docpipe.activities.gpu.images import (
    analyze_image,
    hamming,
    near_duplicate,
    open_image,
    to_rgb,
    upright_view,
)
from docpipe.errors import DocumentError
from docpipe.models import Stage

png = samples.image_bytes
INVOICE = samples.text_image()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few dozen bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


class TestFacts:
    def test_size_format_mode_and_frames_are_reported(self):
        result = analyze_image(png(INVOICE, "PNG"))
        assert (result.width, result.height) == INVOICE.size
        assert (result.format, result.mode, result.frames) == ("PNG", "L", 1)

    def test_every_page_of_a_tiff_is_counted(self):
        pages = [INVOICE, INVOICE.rotate(90, expand=True)]
        data = png(pages[0], "TIFF", save_all=True, append_images=pages[1:])
        result = analyze_image(data)
        assert (result.format, result.frames) == ("TIFF", 2)

    def test_common_exif_tags_are_read_and_gps_is_left_out(self):
        exif = Image.Exif()
        exif[0x010F] = "Harbour Cameras"  # Make
        exif[0x0110] = "HC-1\x00\x07"  # Model, with junk control bytes
        exif[0x0112] = 6  # Orientation: rotate 90
        exif.get_ifd(0x8769)[0x9003] = "2024:06:01 10:00:00"  # DateTimeOriginal
        exif.get_ifd(0x8825)[0x0002] = (52.0, 22.0, 0.0)  # GPSLatitude
        result = analyze_image(png(INVOICE.convert("RGB"), "JPEG", exif=exif))
        assert result.exif == {
            "Make": "Harbour Cameras",
            "Model": "HC-1",
            "Orientation": "6",
            "DateTimeOriginal": "2024:06:01 10:00:00",
        }

    def test_an_image_without_exif_has_an_empty_exif(self):
        assert analyze_image(png(INVOICE, "PNG")).exif == {}


class TestPerceptualHash:
    def test_the_hash_is_64_bits_in_hex(self):
        phash = analyze_image(png(INVOICE, "PNG")).phash
        assert len(phash) == 16 and int(phash, 16) >= 0

    @pytest.mark.parametrize(
        "variant",
        [
            lambda im: png(im.convert("RGB"), "JPEG", quality=40),
            lambda im: png(im.resize((im.width // 2, im.height // 2)), "PNG"),
            lambda im: png(im.resize((im.width * 3, im.height * 3)), "PNG"),
            lambda im: png(im.filter(ImageFilter.GaussianBlur(1)), "PNG"),
        ],
        ids=["recompressed", "half-size", "triple-size", "blurred"],
    )
    def test_the_same_picture_resized_or_recompressed_is_a_near_duplicate(self, variant):
        original = analyze_image(png(INVOICE, "PNG")).phash
        assert near_duplicate(original, analyze_image(variant(INVOICE)).phash)

    @pytest.mark.parametrize(
        "other",
        [
            samples.text_image(("Harbour", "master", "log")),
            INVOICE.rotate(180),
            Image.linear_gradient("L").resize(INVOICE.size),
        ],
        ids=["other-document", "upside-down", "gradient"],
    )
    def test_different_pictures_are_not_near_duplicates(self, other):
        original = analyze_image(png(INVOICE, "PNG")).phash
        assert not near_duplicate(original, analyze_image(png(other, "PNG")).phash)

    def test_hamming_counts_differing_bits(self):
        assert hamming("0000000000000000", "0000000000000000") == 0
        assert hamming("0000000000000000", "ffffffffffffffff") == 64
        assert hamming("8000000000000001", "0000000000000000") == 2

    def test_hashes_of_different_lengths_cannot_be_compared(self):
        with pytest.raises(ValueError, match="different lengths"):
            hamming("abcd", "abcdef")

    def test_the_threshold_is_inclusive(self):
        assert near_duplicate("0000000000000000", "000000000000003f", threshold=6)
        assert not near_duplicate("0000000000000000", "000000000000007f", threshold=6)


class TestDominantColors:
    def test_colours_come_most_frequent_first_with_their_shares(self):
        image = Image.new("RGB", (100, 100), "#0000ff")
        ImageDraw.Draw(image).rectangle((0, 0, 99, 69), fill="#ff0000")
        colors = analyze_image(png(image, "PNG")).dominant_colors
        assert [c.hex for c in colors[:2]] == ["#ff0000", "#0000ff"]
        assert colors[0].share == pytest.approx(0.7, abs=0.02)
        assert colors[1].share == pytest.approx(0.3, abs=0.02)
        assert sum(c.share for c in colors) == pytest.approx(1.0, abs=0.001)

    def test_at_most_five_colours_are_reported(self):
        noise = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        assert len(analyze_image(png(Image.fromarray(noise), "PNG")).dominant_colors) == 5


class TestGuards:
    def test_an_image_over_the_pixel_cap_is_refused_before_decoding(self):
        width, height = INVOICE.size
        with fails_at(Stage.EXTRACT, f"image too large to process: {width}x{height} pixels"):
            analyze_image(png(INVOICE, "PNG"), max_pixels=10_000)

    def test_a_tiny_file_claiming_ten_billion_pixels_is_refused(self):
        with pytest.raises(DocumentError, match="image too large"):
            open_image(png_header_only(100_000, 100_000))

    @pytest.mark.parametrize(
        "data",
        [b"not an image at all", png(INVOICE, "PNG")[:300], png_header_only(0, 5)],
        ids=["text", "truncated", "zero-width"],
    )
    def test_unreadable_bytes_fail_with_a_clear_reason(self, data):
        with fails_at(Stage.EXTRACT, "unreadable image"):
            analyze_image(data)


class TestConversions:
    def test_transparent_areas_become_white_not_black(self):
        image = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
        ImageDraw.Draw(image).rectangle((0, 0, 9, 9), fill=(0, 0, 0, 255))
        rgb = to_rgb(image)
        assert rgb.mode == "RGB"
        assert rgb.getpixel((15, 5)) == (255, 255, 255)
        assert rgb.getpixel((5, 5)) == (0, 0, 0)

    def test_16_bit_greyscale_is_stretched_to_8_bits_not_clipped(self):
        values = np.array([[1000, 2000], [3000, 4000]], dtype=np.uint16)
        rgb = to_rgb(Image.fromarray(values))
        assert rgb.getpixel((0, 0)) == (0, 0, 0)
        assert rgb.getpixel((1, 1)) == (255, 255, 255)

    def test_exif_orientation_turns_the_image_upright(self):
        exif = Image.Exif()
        exif[0x0112] = 6  # stored sideways: a viewer rotates it 90 degrees clockwise
        data = png(INVOICE.convert("RGB"), "JPEG", exif=exif)
        width, height = INVOICE.size
        stored = open_image(data)
        assert stored.size == (width, height)
        assert upright_view(stored).size == (height, width)
