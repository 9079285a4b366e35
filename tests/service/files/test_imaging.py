import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from model_training.normalization import PercentileNormalization
from service.files.decoding import decode_image
from service.files.imaging import (
    ImageError,
    labels_png,
    mask_png,
    outer_rim,
    outlines,
    overlay_png,
)
from tests.service.bad_inputs import tiff_claiming, truncated_cases

PLANE = (np.arange(40 * 30).reshape(40, 30) % 251).astype(np.uint8)
LIMIT = 10_000_000


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def tiff(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (encode(Image.fromarray(PLANE), "PNG"), "png"),
        (encode(Image.fromarray(PLANE), "BMP"), "bmp"),
        (encode(Image.fromarray(PLANE).convert("RGBA"), "PNG"), "png"),
        (encode(Image.fromarray(PLANE).convert("P"), "PNG"), "png"),
        (tiff(PLANE), "tiff"),
        (tiff(np.stack([PLANE] * 3), photometric="rgb", planarconfig="separate"), "tiff"),
        (tiff(np.stack([PLANE] * 3, axis=-1), photometric="rgb"), "tiff"),
    ],
)
def test_lossless_formats_give_the_plane(data, fmt):
    decoded = decode_image(data, LIMIT)
    assert decoded.format == fmt
    assert np.array_equal(decoded.plane, PLANE.astype(np.float32))


def test_gray_saved_as_colour_stays_an_integer_plane_with_the_same_normalization():
    norm = PercentileNormalization()  # the checkpoints' default (1 / 99.8 %)
    rgba = encode(Image.fromarray(PLANE).convert("RGBA"), "PNG")
    decoded = decode_image(rgba, LIMIT)
    assert decoded.plane.dtype == np.uint8 and np.array_equal(decoded.plane, PLANE)
    # the same numbers the channel mean would have given
    as_mean = np.stack([PLANE] * 4, axis=-1)[..., :3].astype(np.float32).mean(axis=-1)
    assert np.array_equal(norm.apply(decoded.plane), norm.apply(as_mean))
    tinted = np.stack([PLANE, PLANE, PLANE // 2], axis=-1)  # real colour: averaged as before
    colour = decode_image(encode(Image.fromarray(tinted), "PNG"), LIMIT)
    assert colour.plane.dtype == np.float32
    assert np.allclose(colour.plane, tinted.astype(np.float32).mean(axis=-1))


def test_jpeg_cmyk_and_16_bit():
    jpeg = decode_image(encode(Image.fromarray(PLANE).convert("CMYK"), "JPEG", quality=95), LIMIT)
    assert jpeg.plane.shape == (40, 30)
    sixteen = PLANE.astype(np.uint16) * 250
    assert decode_image(tiff(sixteen), LIMIT).plane.max() == sixteen.max()
    png16 = encode(Image.fromarray(sixteen), "PNG")
    assert np.array_equal(decode_image(png16, LIMIT).plane, sixteen.astype(np.float32))


def test_float_tiff_with_nan_and_inf_decodes():
    plane = PLANE.astype(np.float32)
    plane[0, 0], plane[1, 1] = np.nan, np.inf
    decoded = decode_image(tiff(plane), LIMIT)
    assert np.isnan(decoded.plane[0, 0])


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"just some text", 415, "unsupported_media_type"),
        (b"<!DOCTYPE html><html></html>", 415, "unsupported_media_type"),
        (encode(Image.fromarray(PLANE), "PNG")[:60], 400, "invalid_image"),
        (b"II*\x00" + b"\xff" * 20, 400, "invalid_image"),
        (tiff(np.zeros((4, 8, 8), np.uint8), photometric="minisblack"), 422, "plane_not_chosen"),
    ],
)
def test_refusals_name_the_problem(data, status, code):
    with pytest.raises(ImageError) as caught:
        decode_image(data, LIMIT)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.message


def test_pixel_limit_is_checked_from_the_header():
    big = encode(Image.new("L", (3000, 2000)), "PNG")  # small file, 6 MP
    with pytest.raises(ImageError) as caught:
        decode_image(big, max_pixels=1_000_000)
    assert caught.value.status == 413 and "3000x2000" in caught.value.message


def test_tiff_bomb_is_refused_before_decoding():
    with pytest.raises(ImageError) as caught:
        decode_image(tiff_claiming(100_000, 100_000), max_pixels=LIMIT)
    assert caught.value.status == 413 and "100000x100000" in caught.value.message


def test_mask_labels_and_overlay_encoding():
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[2:8, 2:8] = 1
    labels[10:18, 10:18] = 2
    mask = np.asarray(Image.open(io.BytesIO(mask_png(labels))))
    assert set(np.unique(mask)) == {0, 255}
    back = np.asarray(Image.open(io.BytesIO(labels_png(labels))))
    assert back.dtype == np.uint16 and np.array_equal(back, labels)
    overlay = np.asarray(Image.open(io.BytesIO(overlay_png(np.zeros((20, 20)), labels))))
    assert overlay.shape == (20, 20, 3)
    assert (overlay.reshape(-1, 3) == (255, 214, 0)).all(axis=1).sum() == outlines(labels).sum()
    assert outlines(labels)[2, 2] and not outlines(labels)[4, 4]


def test_the_overlay_outline_stays_visible_on_a_saturated_nucleus():
    # A white disc on a dim background: yellow alone is nearly white on it, so each outline gets
    # a black rim just outside, and the rest of the image stays the plain gray view.
    plane = np.full((40, 40), 10.0)
    yy, xx = np.mgrid[:40, :40]
    disc = (yy - 20) ** 2 + (xx - 20) ** 2 <= 64
    plane[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 255.0  # the glow reaches past the mask
    labels = disc.astype(np.int32)
    overlay = np.asarray(Image.open(io.BytesIO(overlay_png(plane, labels)))).astype(int)
    rim = outer_rim(labels)
    assert rim.sum() > 0 and not (rim & (labels > 0)).any()
    assert (overlay[rim] == 0).all()
    assert (overlay[outlines(labels)] == (255, 214, 0)).all()
    # Every outline pixel has a rim pixel beside it that differs from it by a full channel.
    for y, x in zip(*np.nonzero(outlines(labels)), strict=True):
        near = rim[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
        assert near.any(), (y, x)
    untouched = ~ndimage.binary_dilation(labels > 0, iterations=2)
    gray = overlay[untouched]
    assert (gray[:, 0] == gray[:, 1]).all() and (gray[:, 1] == gray[:, 2]).all()


@pytest.mark.parametrize("case", truncated_cases(PLANE), ids=lambda case: case.name)
def test_pixel_data_that_ends_early_is_refused_as_truncated(case):
    with pytest.raises(ImageError) as caught:
        decode_image(case.data, LIMIT)
    assert (caught.value.status, caught.value.code) == (400, "invalid_image")
    assert "truncated" in caught.value.message


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(PLANE).convert("1"),  # 1 bit per pixel: rows end mid-byte
        Image.fromarray(PLANE.astype(np.uint16) * 250),
        Image.fromarray(np.stack([PLANE] * 3, axis=-1)),
        Image.fromarray(PLANE).convert("LA"),
    ],
    ids=["1-bit", "16-bit", "rgb", "gray+alpha"],
)
def test_complete_pngs_are_not_taken_for_truncated(image):
    """The row arithmetic of the completeness check matches Pillow's encoder."""
    assert decode_image(encode(image, "PNG"), LIMIT).plane.shape == (40, 30)


def adam7_png(plane: np.ndarray, passes: int = 7) -> bytes:
    """An interlaced 8-bit gray PNG (Pillow writes none), optionally missing its last passes."""
    starts = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2))
    raw = b""
    for x0, y0, dx, dy in (*starts, (0, 1, 1, 2))[:passes]:
        raw += b"".join(b"\x00" + row.tobytes() for row in plane[y0::dy, x0::dx] if row.size)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", plane.shape[1], plane.shape[0], 8, 0, 0, 0, 1)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_interlaced_png_is_complete_only_with_all_seven_passes():
    assert np.array_equal(decode_image(adam7_png(PLANE), LIMIT).plane, PLANE)
    with pytest.raises(ImageError, match="truncated"):
        decode_image(adam7_png(PLANE, passes=6), LIMIT)
