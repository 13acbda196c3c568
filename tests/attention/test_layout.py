"""Block layouts as FlexAttention BlockMasks: equal to what create_block_mask finds by
evaluating the mask everywhere, on both the key side and the transposed query side, read the
way FlexAttention's Triton kernels read them (row stride from the tensor, then +1 per entry)."""

from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

import sparsetorch.attention as A
from sparsetorch.attention import layout
from sparsetorch.attention.pattern import AttentionPattern
from tests.attention.helpers import block_states

ATTENTION_PATTERNS = [
    A.local(20),
    A.causal() & (A.local(9) | A.strided(33)),
    A.local(12) | A.global_tokens([0, 70]),
    A.random(2, seed=4),
    A.block(16, torch.eye(10, dtype=torch.bool) | torch.eye(10, dtype=torch.bool).roll(1, 1)),
    ~A.local(40),
]


def _dense(num, idx, rows, cols):
    """The blocks an ordered (num, idx) lists, read as FlexAttention's kernels do: row r
    starts at ``r * idx.stride(0)`` and its entries follow at unit stride (the kernels assume a
    row-major index tensor; a column-major one silently reads other rows' entries)."""
    kernel_view = torch.as_strided(idx, idx.shape, (idx.stride(0), 1), idx.storage_offset())
    out = torch.zeros(rows, cols, dtype=torch.bool)
    for r in range(rows):
        out[r, kernel_view[r, : num[r]].long()] = True
    return out


def _sides(mask) -> dict[str, torch.Tensor]:
    """The four block sets of a BlockMask (batch and head 0) as dense (rows, cols) bools."""
    nqb, nkb = mask.kv_indices.shape[-2], mask.q_indices.shape[-2]
    out = {}
    for num, idx, rows, cols in [
        ("kv_num_blocks", "kv_indices", nqb, nkb),
        ("full_kv_num_blocks", "full_kv_indices", nqb, nkb),
        ("q_num_blocks", "q_indices", nkb, nqb),
        ("full_q_num_blocks", "full_q_indices", nkb, nqb),
    ]:
        out[idx] = _dense(getattr(mask, num)[0, 0], getattr(mask, idx)[0, 0], rows, cols)
    return out


# The patterns whose FlexAttention dK/dV were wrong on CUDA (they read lookup tables), alone
# and combined, a band and a strided control; lengths not multiples of the block.
TABLE_PATTERNS = [
    A.global_tokens([0, 257]),
    A.local(20) | A.global_tokens([0, 257]),
    A.random(3, seed=1),
    A.random(3, seed=1) | A.dilated(4, 7),
    A.random(2, seed=3, block=32) & ~A.causal(),
    A.block(64, torch.rand(16, 16, generator=torch.Generator().manual_seed(0)) > 0.6),
    A.causal() & (A.local(64) | A.global_tokens([3]) | A.random(1, seed=2)),
    A.causal() & (A.local(16) | A.strided(64)),
    A.band(1, 200),
]


@pytest.mark.parametrize("pattern", TABLE_PATTERNS, ids=repr)
@pytest.mark.parametrize("n", [300, 1000])
@pytest.mark.parametrize("block", [128, (128, 64)])
def test_flex_block_mask_as_the_kernels_read_it_equals_create_block_mask(pattern, n, block):
    ours = pattern.flex_blocks(n, block).to_block_mask(pattern.mask_mod(n))
    theirs = create_block_mask(pattern.mask_mod(n), 1, 1, n, n, device="cpu", BLOCK_SIZE=block)
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices"):
        assert getattr(ours, name).is_contiguous(), name
    for name in ("q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices"):
        assert getattr(ours, name).is_contiguous(), name
    a, b = _sides(ours), _sides(theirs)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert torch.equal(a["q_indices"], a["kv_indices"].T)
    assert torch.equal(a["full_q_indices"], a["full_kv_indices"].T)
    # and against the dense mask: full blocks all True (and inside n), partial ones not
    bq, bk = (block, block) if isinstance(block, int) else block
    states = block_states(pattern.mask(n), bq, bk)
    assert torch.equal(a["full_kv_indices"], states == 2)
    assert torch.equal(a["kv_indices"], states == 1)


def test_a_transposed_layout_gives_row_major_q_indices():
    """The cause of the CUDA dK/dV bug: argsort of a transposed bool grid keeps its strides."""
    layout = (A.local(20) | A.global_tokens([0, 257])).block_layout(500, 128)
    grid = layout.needed().transpose(0, 1)
    raw = torch.argsort((~grid).to(torch.int8), dim=-1, stable=True)
    assert not raw.is_contiguous()  # what FlexAttention's kernels misread
    flex = layout.flex_blocks()
    assert flex.q_idx.is_contiguous() and flex.full_q_idx.is_contiguous()
    assert torch.equal(flex.q_idx.long(), raw)


@pytest.mark.parametrize("pattern", ATTENTION_PATTERNS, ids=repr)
@pytest.mark.parametrize(("n", "block"), [(150, 32), (128, 64), (77, (16, 32))])
def test_block_mask_equals_create_block_mask(pattern, n, block):
    bq, bk = (block, block) if isinstance(block, int) else block
    ours = pattern.block_layout(n, block).to_block_mask(pattern.mask_mod(n))
    theirs = create_block_mask(
        pattern.mask_mod(n), None, None, n, n, device="cpu", BLOCK_SIZE=block
    )
    nqb, nkb = -(-n // bq), -(-n // bk)
    for num, idx in [("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")]:
        a = _dense(getattr(ours, num)[0, 0], getattr(ours, idx)[0, 0], nqb, nkb)
        b = _dense(getattr(theirs, num)[0, 0], getattr(theirs, idx)[0, 0], nqb, nkb)
        assert torch.equal(a, b), num
    for num, idx in [("q_num_blocks", "q_indices"), ("full_q_num_blocks", "full_q_indices")]:
        a = _dense(getattr(ours, num)[0, 0], getattr(ours, idx)[0, 0], nkb, nqb)
        b = _dense(getattr(theirs, num)[0, 0], getattr(theirs, idx)[0, 0], nkb, nqb)
        assert torch.equal(a, b), num
    assert ours.seq_lengths == (n, n)
    assert isinstance(ours, BlockMask)


def test_q_side_is_the_transpose_of_the_kv_side():
    layout = (A.causal() & A.local(50)).block_layout(300, 32)
    kv = _dense(*layout.kv_blocks("any"), *layout.shape)
    q = _dense(*layout.q_blocks("any"), layout.shape[1], layout.shape[0])
    assert torch.equal(kv.T, q)
    assert layout.block_density == pytest.approx(float(kv.float().mean()))
    assert "full" in repr(layout)


# (n, lo, hi, bq, bk): bands of any bounds (None: unbounded) on small grids of any block shape
BANDS = (
    st.integers(1, 90),
    st.one_of(st.none(), st.integers(-100, 100)),
    st.one_of(st.none(), st.integers(-100, 100)),
    st.integers(1, 13),
    st.integers(1, 13),
)


@settings(max_examples=300, deadline=None)
@given(*BANDS)
@pytest.mark.parametrize("host_widen_max", [0, 1 << 14], ids=["device widening", "host"])
def test_band_closed_form_flex_blocks_equal_the_generic_layout(host_widen_max, n, lo, hi, bq, bk):
    band = A.band(lo, hi)
    with mock.patch.object(layout, "HOST_WIDEN_MAX", host_widen_max):  # both ways of widening
        fast = band.flex_blocks(n, (bq, bk))
    generic = AttentionPattern.flex_blocks(band, n, (bq, bk))  # via the block grid
    nqb, nkb = -(-n // bq), -(-n // bk)
    for num, idx, rows, cols in [
        ("kv_num", "kv_idx", nqb, nkb),
        ("full_kv_num", "full_kv_idx", nqb, nkb),
        ("q_num", "q_idx", nkb, nqb),
        ("full_q_num", "full_q_idx", nkb, nqb),
    ]:
        a = _dense(getattr(fast, num), getattr(fast, idx), rows, cols)
        b = _dense(getattr(generic, num), getattr(generic, idx), rows, cols)
        assert torch.equal(a, b), num
        assert getattr(fast, idx).shape == (rows, cols)
        assert getattr(fast, idx).is_contiguous()  # FlexAttention's kernels need row-major


@pytest.mark.parametrize("pattern", TABLE_PATTERNS, ids=repr)
def test_mask_functions_are_safe_on_the_padding_flexattention_passes(pattern):
    """FlexAttention evaluates mask_mod up to the block-padded length (and its backward
    recomputes it there): lookups must neither fail nor change the mask inside n."""
    n, padded = 300, 512
    idx = torch.arange(padded)
    mask_mod = pattern.mask_mod(n)
    allowed = mask_mod(0, 0, idx[:, None], idx[None, :])  # no IndexError past n
    assert torch.equal(allowed[:n, :n], pattern.mask(n))


@settings(max_examples=200, deadline=None)
@given(*BANDS)
def test_band_closed_form_block_density_equals_the_generic_layout(n, lo, hi, bq, bk):
    band = A.band(lo, hi)
    generic = AttentionPattern.block_density(band, n, (bq, bk))  # via the block grid
    # generic: a float32 mean; one block of difference is >= 1/8100 here
    assert band.block_density(n, (bq, bk)) == pytest.approx(generic, abs=1e-6)


@pytest.mark.parametrize(
    "pattern", [A.local(512), A.local(64) | A.global_tokens([0]), A.causal()], ids=repr
)
def test_choosing_a_cuda_backend_launches_nothing_on_the_device(pattern):
    """auto's decision reads the layout on the host: on a machine without CUDA, asking for a
    CUDA device still answers (no tensor is made there); the answer is what the GPU gets."""
    cuda = torch.device("cuda")
    want = "flex" if pattern.block_density(65536, 128) <= 0.5 else "dense"
    assert A.choose(pattern, 65536, cuda, requires_grad=True) == want
    assert A.choose(pattern, 1024, cuda, requires_grad=True) == "dense"  # short: always dense
