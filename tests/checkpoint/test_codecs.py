import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsetorch
from sparsetorch.checkpoint import codecs
from sparsetorch.checkpoint.codecs.block import detect_block
from sparsetorch.checkpoint.codecs.nm import detect_nm
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.support import Support
from tests.checkpoint.helpers import make_mask


def support_of(mask) -> Support:
    mask = np.asarray(mask, dtype=np.bool_).reshape(-1)
    return Support(mask.size, mask=mask)


def round_trip(name, mask2d):
    mask2d = np.asarray(mask2d, dtype=np.bool_)
    support = support_of(mask2d)
    codec = codecs.get(name)
    plan = codec.plan(support, mask2d.shape, 2**62)
    assert plan is not None
    parts = codec.encode(support, mask2d.shape, plan.params)
    spec = codec.parts_spec(mask2d.shape, support.nnz, plan.params)
    assert {k: (v.dtype.name, v.shape) for k, v in parts.items()} == spec
    assert sum(v.nbytes for v in parts.values()) == plan.nbytes
    back = codec.decode(parts, mask2d.shape, support.nnz, plan.params)
    assert np.array_equal(back.mask(), mask2d.reshape(-1))
    assert np.array_equal(back.positions(), np.flatnonzero(mask2d))
    return parts, plan


EXAMPLE = [[1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]]


def test_golden_bitmask_is_little_endian():
    parts, plan = round_trip("bitmask", [[1, 0, 1, 1, 0, 0, 0, 0, 1]])
    assert parts["bitmask"].tolist() == [0b00001101, 0b1]
    assert plan.nbytes == 2


def test_golden_delta_stores_gap_minus_one():
    parts, _ = round_trip("delta16", [[0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1]])
    assert parts["delta"].dtype == np.uint16
    assert parts["delta"].tolist() == [3, 0, 5]


def test_golden_csr():
    parts, plan = round_trip("csr", EXAMPLE)
    assert parts["crow"].tolist() == [0, 2, 2, 4, 5]
    assert parts["col"].tolist() == [0, 3, 1, 2, 0]
    assert parts["col"].dtype == np.uint8
    assert plan.nbytes == 5 * 4 + 5


def test_golden_nm_two_bit_indices():
    parts, plan = round_trip("nm", [[1, 1, 0, 0, 0, 1, 0, 1]])
    assert plan.params == {"n": 2, "m": 4, "view": "rows"} and plan.pattern == "2:4"
    assert parts["nm_index"].tolist() == [0 | 1 << 2 | 1 << 4 | 3 << 6]


def test_golden_block_grid():
    mask = np.kron(np.array([[1, 0], [0, 1]]), np.ones((2, 4))).astype(bool)  # (4, 8)
    parts, plan = round_trip("block", mask)
    assert plan.params == {"h": 2, "w": 4, "index": "bitmask"}
    assert plan.pattern == "block2x4"
    assert parts["grid_bitmask"].tolist() == [0b1001]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.sampled_from([1, 3, 4, 8, 16, 300]),
    density=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_every_flat_codec_round_trips(rows, cols, density, seed):
    gen = torch.Generator().manual_seed(seed)
    mask = (torch.rand(rows, cols, generator=gen) < density).numpy()
    for name in codecs.FLAT:
        if name == "delta16" and mask.size > 65536:
            continue
        round_trip(name, mask)


@settings(max_examples=40, deadline=None)
@given(
    pattern=st.sampled_from(["2:4", "1:4", "1:2", "3:8", "block4x4", "block2x8", "channel"]),
    rows=st.sampled_from([8, 16]),
    cols=st.sampled_from([16, 32, 64]),
    density=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**16),
)
def test_structured_codecs_detect_and_round_trip(pattern, rows, cols, density, seed):
    gen = torch.Generator().manual_seed(seed)
    mask = make_mask((rows, cols), pattern, density, gen).numpy()
    support = support_of(mask)
    if ":" in pattern:
        n, m, _ = detect_nm(support, mask.shape)
        assert n / m == int(pattern.split(":")[0]) / int(pattern.split(":")[1])
        round_trip("nm", mask)
    elif 0 < support.nnz < support.numel:
        h, w = detect_block(support, mask.shape)
        expected = (
            (1, cols)
            if pattern == "channel"
            else tuple(map(int, pattern.removeprefix("block").split("x")))
        )
        # the detected tile is at least the generated one (random grids may be coarser)
        assert h % expected[0] == 0 and w % expected[1] == 0
        round_trip("block", mask)


@pytest.mark.parametrize("pattern", ["2:4", "1:4", "2:8"])
def test_conv_nm_over_input_channels_as_sparsetorch_patterns_lays_it_out(pattern):
    conv = torch.nn.Conv2d(16, 8, 3)
    sparsetorch.prune(conv, pattern=pattern)
    mask = conv.weight_sparsity_mask.numpy()  # (8, 16, 3, 3): groups of input channels per position
    support = support_of(mask)
    n, m = map(int, pattern.split(":"))
    assert detect_nm(support, mask.shape) == (n, m, "in_last")
    round_trip("nm", mask)
    # the flat (out, -1) view does not hold this structure: only the in_last view finds it
    assert detect_nm(support, (8, 16 * 9)) is None


def test_unstructured_masks_are_not_structured():
    gen = torch.Generator().manual_seed(0)
    support = support_of((torch.rand(64, 64, generator=gen) < 0.5).numpy())
    assert detect_nm(support, (64, 64)) is None
    assert detect_block(support, (64, 64)) is None


@pytest.mark.parametrize(
    ("shape", "pattern", "density", "codec"),
    [
        ((64, 1024), "unstructured", 0.3, "bitmask"),  # numel/8 < 2*nnz
        ((64, 1024), "unstructured", 0.01, "delta16"),  # 2*nnz < numel/8 and < csr16
        ((256, 144), "unstructured", 0.05, "csr"),  # uint8 columns: nnz + 4*rows wins
        ((64, 1024), "2:4", 0.5, "nm"),  # ties with bitmask; nm preferred
        ((64, 1024), "1:4", 0.25, "nm"),  # half the bits of a bitmask
        ((64, 1024), "block4x4", 0.5, "block"),
        ((64, 1024), "channel", 0.5, "block"),
    ],
)
def test_cheapest_codec_is_chosen(shape, pattern, density, codec):
    gen = torch.Generator().manual_seed(1)
    mask = make_mask(shape, pattern, density, gen).numpy()
    plan, detected = codecs.choose(support_of(mask), shape, 2**62)
    assert plan.codec == codec
    sizes = []
    for name in codecs.ORDER:
        other = codecs.get(name).plan(support_of(mask), shape, 2**62)
        if other is not None:
            sizes.append(other.nbytes)
    assert plan.nbytes == min(sizes)
    assert detected == {"unstructured": "unstructured", "channel": "channel"}.get(pattern, pattern)


def test_budget_rejects_codecs_that_do_not_save_bytes():
    support = support_of(np.ones(64, dtype=bool))
    assert codecs.choose(support, (8, 8), budget=8)[0] is None  # bitmask needs 8 bytes


@pytest.mark.parametrize(
    ("name", "parts", "params", "nnz", "message"),
    [
        ("delta32", {"delta": np.array([3, 20], np.uint32)}, {}, 2, "reach position 24"),
        ("bitmask", {"bitmask": np.array([0b111, 0], np.uint8)}, {}, 2, "3 set bits"),
        ("csr", {"crow": np.array([0, 2, 1, 2], np.int32), "col": np.array([0, 1], np.uint8)},
         {}, 2, "row pointers"),
        ("csr", {"crow": np.array([0, 1, 1, 2], np.int32), "col": np.array([0, 4], np.uint8)},
         {}, 2, "exceeds the row length"),
        ("csr", {"crow": np.array([0, 2, 2, 2], np.int32), "col": np.array([1, 1], np.uint8)},
         {}, 2, "strictly increasing"),
        ("nm", {"nm_index": np.array([0b0101, 0], np.uint8)}, {"n": 2, "m": 4, "view": "rows"}, 6,
         "strictly increasing"),
        ("nm", {"nm_index": np.array([0], np.uint8)}, {"n": 4, "m": 4}, 6, "valid N:M"),
        ("block", {"grid_bitmask": np.array([1], np.uint8)}, {"h": 5, "w": 1, "index": "bitmask"},
         4, "does not tile"),
        ("block", {"grid_bitmask": np.array([1], np.uint8)}, {"h": 1, "w": 1, "index": "nm"},
         4, "invalid"),
    ],
)  # fmt: skip
def test_decoders_reject_invalid_parts(name, parts, params, nnz, message):
    with pytest.raises(CheckpointError, match=message):
        codecs.get(name).decode(parts, (3, 4), nnz, params)


@settings(max_examples=30, deadline=None)
@given(numel=st.integers(0, 200), density=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_support_scatter_and_gather_match_a_naive_loop(numel, density, seed):
    import sparsetorch.checkpoint.support as support_module

    rng = np.random.default_rng(seed)
    mask = rng.random(numel) < density
    dense = np.where(mask, rng.integers(1, 100, numel), 0).astype(np.int32)
    values = np.array([dense[i] for i in range(numel) if mask[i]], dtype=np.int32)
    old = support_module.CHUNK
    support_module.CHUNK = 7  # many chunks, ragged last one
    try:
        for support in (Support(numel, mask=mask), Support(numel, positions=np.flatnonzero(mask))):
            assert np.array_equal(support.gather(dense), values)
            assert np.array_equal(support.scatter(values), dense)
    finally:
        support_module.CHUNK = old
