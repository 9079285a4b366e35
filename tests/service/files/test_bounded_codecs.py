"""The bounded decoders: exact sizes pass, one byte more is refused, cut streams fail."""

from __future__ import annotations

import lzma
import zlib

import numpy as np
import pytest
import tifffile

from service.files import bounded_codecs
from service.files.bounded_codecs import Overlong, inflate, unlzma, unpackbits
from service.files.nd2_bounds import frame_array
from tests.service.bad_inputs import zlib_bomb

DATA = np.random.default_rng(4).integers(0, 255, 10_000, dtype=np.uint8).tobytes()


@pytest.mark.parametrize(
    ("decode", "encode"),
    [(inflate, zlib.compress), (unlzma, lzma.compress)],
)
def test_exact_sizes_pass_and_one_byte_more_is_refused(decode, encode):
    stream = encode(DATA)
    assert decode(stream, len(DATA)) == DATA
    assert decode(stream, len(DATA) + 100) == DATA  # shorter than allowed: the caller judges
    with pytest.raises(Overlong):
        decode(stream, len(DATA) - 1)


@pytest.mark.parametrize(
    ("decode", "encode", "error"),
    [(inflate, zlib.compress, zlib.error), (unlzma, lzma.compress, lzma.LZMAError)],
)
def test_a_cut_stream_fails(decode, encode, error):
    with pytest.raises(error):
        decode(encode(DATA)[:-20], len(DATA))


def test_a_bomb_stops_at_the_limit():
    with pytest.raises(Overlong) as refused:
        inflate(zlib_bomb(64 * 1024**2), 4096)
    assert "4096 bytes" in str(refused.value)


def test_packbits_runs_literals_and_the_limit():
    encoded = b"\x02abc" + b"\xfe\x7a" + b"\x80" + b"\x00z"  # literal, 3 x 'z', no-op, literal
    assert unpackbits(encoded, 100) == b"abczzzz"
    assert unpackbits(encoded, 7) == b"abczzzz"
    with pytest.raises(Overlong):
        unpackbits(encoded, 6)


def test_tifffile_decodes_through_the_bounded_decoders():
    assert bounded_codecs.installed()
    for code in (8, 32946, 34925, 32773):
        assert tifffile.TIFF.DECOMPRESSORS[code].__name__.startswith("bounded_")


def test_an_nd2_frame_with_padded_rows_drops_the_padding():
    frame = np.arange(2 * 3 * 2, dtype=np.uint16).reshape(2, 3, 2)  # Y, X, channels
    rows = [frame[y].tobytes() + b"\xff\xff" for y in range(2)]  # 2 bytes of padding a row
    shaped = frame_array(b"".join(rows), np.dtype(np.uint16), 2, 3, 14, 2, 1)
    assert shaped.shape == (2, 2, 3, 1)
    np.testing.assert_array_equal(shaped[1, ..., 0], frame[..., 1])
