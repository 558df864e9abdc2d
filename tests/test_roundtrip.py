"""Splats -> encode_splats -> decode_splats gives exactly the quantized splats (hypothesis).

The expected quantization is the quantizer's own: per layer fit_params, quantize_layer,
dequantize_layer. Re-encoding the decoded splats reproduces the bytes. Tiny images of
any size survive gscodec.encode / decode with their shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gscodec
from gscodec import GscError, Splats
from gscodec.format.codec import decode_splats, write_stream
from gscodec.format.constants import BACKGROUND_UNIT, VERSION
from gscodec.format.container import LayerChunk, pack, parse
from gscodec.format.params import dequantize_layer
from gscodec.format.symbols import decode_symbols, encode_symbols
from gscodec.quant.layer import fit_params, quantize_layer
from gscodec.quant.policy import Steps
from gscodec.quant.stream import encode_splats

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# the random splat sets put centres off the patch grid on purpose: the warning is tested on its own
pytestmark = pytest.mark.filterwarnings("ignore::gscodec.GscWarning")


@st.composite
def splat_sets(draw: st.DrawFn) -> Splats:
    """Valid Splats: sizes from 1x1 (odd included), 0..40 splats, 1..3 layers, extreme but valid values."""
    w, h = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    n = draw(st.integers(0, 40))
    layers = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    means = np.stack([rng.uniform(-8, w + 8, n), rng.uniform(-8, h + 8, n)], 1)
    if n and draw(st.booleans()):  # centres exactly on pixel centres, corners and borders
        means[: n // 2] = rng.integers(0, 2, (n // 2, 2)) * [w, h]
    scales = np.exp2(rng.uniform(-10, 10, (n, 2)))
    angles = rng.uniform(-10, 10, n)
    colors = rng.uniform(-2, 2, (n, 3))
    background = rng.uniform(-8, 7.99, 3)
    patch_sizes = tuple(draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128])) for _ in range(layers))
    return Splats(w, h, means, scales, angles, colors, background, rng.integers(0, layers, n), patch_sizes)


steps_strategy = st.builds(
    Steps,
    pos_step=st.sampled_from([0.25, 0.5, 1.0, 2.0, 200.0]),
    scale_den=st.sampled_from([1, 2, 4, 6, 64]),
    angle_levels=st.sampled_from([1, 2, 16, 24, 4096]),
    color_step=st.tuples(*[st.sampled_from([2**-9, 2**-6, 0.01, 0.25])] * 3),
)


def expected_decode(splats: Splats, steps: Steps) -> list[tuple[np.ndarray, ...]]:
    """Per layer, the dequantized (means, scales, angles, colors) the decoder must return."""
    out = []
    for index, patch in enumerate(splats.patch_sizes):
        part = splats.select(splats.layer == index)
        params = fit_params(part, patch, steps)
        symbols, _ = quantize_layer(part, params)
        out.append(dequantize_layer(params, symbols, splats.width, splats.height))
    return out


@SETTINGS
@given(splats=splat_sets(), steps=steps_strategy)
def test_decode_gives_quantized_splats(splats: Splats, steps: Steps) -> None:
    data = encode_splats(splats, steps=steps)
    decoded = decode_splats(data)
    parts = expected_decode(splats, steps)
    for i, key in enumerate(("means", "scales", "angles", "colors")):
        want = np.concatenate([p[i] for p in parts])
        np.testing.assert_array_equal(getattr(decoded, key).reshape(want.shape), want, err_msg=key)
    layer = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)])
    np.testing.assert_array_equal(decoded.layer, layer)
    assert (decoded.width, decoded.height, decoded.patch_sizes) == (splats.width, splats.height, splats.patch_sizes)
    want_bg = np.clip(np.rint(splats.background.astype(np.float64) * BACKGROUND_UNIT), -32768, 32767)
    np.testing.assert_array_equal(decoded.background, (want_bg / BACKGROUND_UNIT).astype(np.float32))
    # the decoded splats are a fixed point: encoding them again gives the same bytes (when the
    # quantizer dropped none: dropped splats, beyond MAX_PER_PATCH, may have widened the ranges)
    again = encode_splats(decoded, steps=steps)
    if len(decoded) == len(splats):
        assert again == data
    assert decode_splats(again).equals(decoded)
    # progressive decoding: the first k layers are a prefix
    for k in range(len(splats.patch_sizes) + 1):
        prefix = decode_splats(data, layers=k)
        n = sum(len(p[0]) for p in parts[:k])
        np.testing.assert_array_equal(prefix.means, decoded.means[:n])


@SETTINGS
@given(splats=splat_sets())
def test_encode_at_any_quality(splats: Splats) -> None:
    """The quality -> steps path as well: decode gives what the quantizer kept, no errors."""
    data = encode_splats(splats, quality=50)
    decoded = decode_splats(data)
    assert len(decoded) <= len(splats)
    again = encode_splats(decoded, quality=50)
    assert again == data or len(decoded) < len(splats)
    assert decode_splats(again).equals(decoded)


SHAPES = [(1, 1), (1, 7), (7, 1), (3, 5), (2, 2), (9, 13)]


@pytest.mark.parametrize("shape", SHAPES)
def test_tiny_images_keep_their_shape(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    data = gscodec.encode(image, effort=0)
    assert gscodec.decode(data).shape == (*shape, 3)
    assert decode_splats(data).width == shape[1]


@pytest.mark.parametrize("scale", [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_decode_scale_and_layers_shapes(scale: float) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (13, 21, 3), dtype=np.uint8)
    data = gscodec.encode(image, effort=0)
    want = (max(1, round(13 * scale)), max(1, round(21 * scale)), 3)
    assert gscodec.decode(data, scale=scale).shape == want
    layers = len(decode_splats(data).patch_sizes)
    for k in range(layers + 1):
        assert gscodec.decode(data, scale=scale, layers=k).shape == want
    with pytest.raises(GscError, match=f"layers must be an integer in 0..{layers}"):
        gscodec.decode(data, scale=scale, layers=layers + 1)  # more layers than the stream holds


def test_flat_image_encodes() -> None:
    image = np.full((6, 10, 3), (200, 30, 90), np.uint8)
    data = gscodec.encode(image, effort=0)
    assert np.abs(gscodec.decode(data).astype(int) - (200, 30, 90)).max() <= 2


def test_layers_zero_is_the_background() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    data = gscodec.encode(image, effort=0)
    flat = gscodec.decode(data, layers=0)
    assert flat.shape == (6, 10, 3) and (flat == flat[0, 0]).all()
    mean = image.reshape(-1, 3).mean(0)  # the encoder's background is the mean colour (not normative)
    assert np.abs(flat[0, 0] - mean).max() <= 3


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True, 2])
def test_bad_layers_argument(bad: object) -> None:
    data = encode_splats(Splats(4, 4, np.zeros((0, 2)), np.ones((0, 2)), np.zeros(0), np.zeros((0, 3))))
    with pytest.raises(GscError):
        decode_splats(data, layers=bad)  # type: ignore[arg-type]


def test_encode_splats_warns_when_it_changes_splats() -> None:
    """Centres off the patch grid are moved and a 16th splat in one patch is dropped: both reported."""
    n = 16
    means = np.full((n, 2), 3.0)
    means[0] = (-5.0, 2.0)  # left of the grid
    splats = Splats(8, 8, means, np.ones((n, 2)), np.zeros(n), np.full((n, 3), 0.1), patch_sizes=(8,))
    with pytest.warns(gscodec.GscWarning, match="layer 0: 1 splats dropped .* and 1 centres moved"):
        data = encode_splats(splats)
    assert len(decode_splats(data)) == 15
    inside = splats.select(np.arange(15))
    inside_means = inside.means.copy()
    inside_means[0] = (3.0, 3.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", gscodec.GscWarning)  # nothing to report: no warning
        encode_splats(Splats(8, 8, inside_means, inside.scales, inside.angles, inside.colors, patch_sizes=(8,)))


def test_zero_layers_stay_zero_layers() -> None:
    empty = Splats(5, 3, np.zeros((0, 2)), np.ones((0, 2)), np.zeros(0), np.zeros((0, 3)), patch_sizes=())
    data = encode_splats(empty)
    decoded = decode_splats(data)
    assert decoded.patch_sizes == () and len(decoded) == 0
    assert encode_splats(decoded) == data


@SETTINGS
@given(splats=splat_sets(), steps=steps_strategy, flags=st.lists(st.integers(0, 31), min_size=3, max_size=3))
def test_every_format_and_context_choice_decodes_alike(splats: Splats, steps: Steps, flags: list[int]) -> None:
    """The encoder's stream (format 2.0, contexts where they save bits), the same symbols in format
    1.0, and in 2.0 with any context flags (SPEC 5.6): the same splats; the encoder's choice is
    never larger than 1.0 by more than two words a layer (it compares the models' ideal sizes)."""
    data = encode_splats(splats, steps=steps)
    header, chunks = parse(data)
    assert header.version == VERSION == (2, 0)
    decoded = decode_splats(data)
    symbols = [decode_symbols(c.params, c.splat_count, c.words, header.width, header.height, c.contexts)
               for c in chunks]
    old = write_stream(header.width, header.height, header.background,
                       [(c.params, s) for c, s in zip(chunks, symbols, strict=True)], version=(1, 0))
    assert parse(old)[0].version == (1, 0) and decode_splats(old).equals(decoded)
    assert len(data) <= len(old) + 8 * len(chunks)
    forced = [LayerChunk(c.params, c.splat_count,
                         *encode_symbols(c.params, s, header.width, header.height, flags=flags[i % 3]))
              for i, (c, s) in enumerate(zip(chunks, symbols, strict=True))]
    assert decode_splats(pack(header, forced)).equals(decoded)
