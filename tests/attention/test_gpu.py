"""On a CUDA GPU: every backend equals masked dense attention (values and gradients), FlexAttention
uses our block masks without recompiling per length, layouts built on the device are the
CPU's. Run on the GPU machine: ``pytest -m gpu tests/attention/test_gpu.py``."""

import math

import pytest
import torch

import sparsetorch.attention as A
from sparsetorch.attention import sparse_attention
from sparsetorch.attention.backends import flex, flex_band
from sparsetorch.models.transformer import CausalTransformer
from tests.attention.helpers import block_mask_equals_host, flex_blocks_equal, naive_attention

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")
CUDA0 = torch.device("cuda", 0)  # what tensors on CUDA report (the mask cache key)


@pytest.fixture(autouse=True)
def _room_for_every_pattern(monkeypatch):
    """Each pattern structure compiles FlexAttention once; this module uses more than Dynamo's
    default 8 per function (docs/attention.md)."""
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 64)


ATTENTION_PATTERNS = [
    A.local(40),
    A.causal() & A.local(33),  # a band: the closed-form block mask
    A.local(20) | A.global_tokens([0, 257]),
    A.causal() & (A.local(16) | A.strided(64)),
    A.random(3, seed=1) | A.dilated(4, 7),
    A.random(2, seed=3, block=32) & ~A.causal(),
    A.block(64, torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) > 0.6),
    A.band(1, 200),  # query 0 has no key
]


def _inputs(n, dtype=torch.float32, heads=2, dim=64):
    g = torch.Generator(device=CUDA).manual_seed(0)
    return [
        torch.randn(2, heads, n, dim, device=CUDA, dtype=dtype, generator=g).requires_grad_()
        for _ in range(3)
    ]


@pytest.mark.parametrize("backend", ["flex", "reference", "dense"])
@pytest.mark.parametrize("pattern", ATTENTION_PATTERNS, ids=repr)
@pytest.mark.parametrize("n", [300, 500])  # not multiples of the 128 block
def test_cuda_backends_equal_masked_dense_attention(backend, pattern, n):
    q, k, v = _inputs(n)
    expected = naive_attention(q, k, v, pattern.mask(n, CUDA), 0.125)
    out = sparse_attention(q, k, v, pattern, backend=backend, scale=0.125)
    assert not out.isnan().any()
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    upstream = torch.randn(
        out.shape, device=CUDA, generator=torch.Generator(device=CUDA).manual_seed(1)
    )
    got = torch.autograd.grad(out, (q, k, v), upstream)
    want = torch.autograd.grad(expected, (q, k, v), upstream.double())
    for a, b in zip(got, want):
        assert not a.isnan().any()
        torch.testing.assert_close(a.double(), b.double(), atol=1e-5, rtol=0)


# Patterns whose mask function reads a lookup table. FlexAttention's dK/dV for them were wrong
# while our transposed block lists were column-major (layout.FlexBlocks); now FlexAttention's
# own compiled backward runs for them and must equal the exact reference backward.
TABLE_READING = [
    A.global_tokens([0, 700]),
    A.local(20) | A.global_tokens([0, 257]),
    A.random(3, seed=1),
    A.random(2, seed=3, block=32) & ~A.causal(),
    A.block(64, torch.rand(16, 16, generator=torch.Generator().manual_seed(0)) > 0.6),
    A.causal() & (A.local(64) | A.global_tokens([3]) | A.random(1, seed=2)),
]


@pytest.mark.parametrize("pattern", TABLE_READING, ids=repr)
@pytest.mark.parametrize("block", [128, (128, 64)])
def test_flexattention_backward_matches_the_reference_for_table_reading_patterns(pattern, block):
    n = 1000  # not a multiple of the block
    q, k, v = _inputs(n)
    out = flex.flex_attention(q, k, v, pattern, 0.125, block)
    assert "FlexForwardReference" not in type(out.grad_fn).__name__  # FlexAttention's backward
    exact = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref = sparse_attention(*exact, pattern, backend="reference", scale=0.125)  # float64
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)
    upstream = torch.randn(
        out.shape, device=CUDA, generator=torch.Generator(device=CUDA).manual_seed(1)
    )
    got = torch.autograd.grad(out, (q, k, v), upstream)
    want = torch.autograd.grad(ref, exact, upstream.double())
    for name, a, b in zip("qkv", got, want):
        assert not a.isnan().any(), name
        # float32 sums over up to n keys (a global token's dK/dV): 1e-4 of the largest
        # gradient (measured on an H200: 2e-5 / 4e-5 for global_tokens([0, 700]), the same
        # with create_block_mask's mask; the column-major bug gave 69 / 134)
        tol = 1e-4 * float(b.abs().max())
        torch.testing.assert_close(a.double(), b, atol=tol, rtol=0, msg=f"d{name}")


def test_flex_bfloat16_long_window_matches_masked_sdpa():
    n, pattern = 4096, A.local(512)
    q, k, v = (t.detach() for t in _inputs(n, dtype=torch.bfloat16, heads=4, dim=128))
    out = sparse_attention(q, k, v, pattern, backend="flex")
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=pattern.mask(n, CUDA))
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=0)


def test_flex_compiles_once_for_many_lengths():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    flex.compiled_flex_attention.cache_clear()
    flex_band.compiled_band_attention.cache_clear()
    pattern = A.causal() & A.local(64)
    for n in (640, 1000, 1500, 2100):  # 0/1-specialisation aside, one dynamic graph
        q, k, v = (t.detach() for t in _inputs(n))
        sparse_attention(q, k, v, pattern, backend="flex")
    assert torch._dynamo.utils.counters["frames"]["ok"] <= 2


def test_windows_on_cuda_build_in_the_graph_once_and_keep_the_lists(monkeypatch):
    """local(w) / band(lo, hi): the first call at a length builds its block lists inside the
    compiled call and keeps them as that length's BlockMask (equal to the host build); later
    calls use it. Lists kept under inference mode are rebuilt for a call with gradients. Every
    call equals masked attention, values and gradients."""
    monkeypatch.setattr(flex, "_MASKS", flex._MaskCache())
    calls = []
    monkeypatch.setattr(
        flex,
        "compiled_band_attention",
        lambda: calls.append(1) or flex_band.compiled_band_attention(),
    )

    def check(pattern, n):
        q, k, v = _inputs(n)
        out = sparse_attention(q, k, v, pattern, backend="flex", scale=0.125)
        expected = naive_attention(q, k, v, pattern.mask(n, CUDA), 0.125)
        torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
        g = torch.randn_like(expected)
        got = torch.autograd.grad(out, (q, k, v), g.float())
        want = torch.autograd.grad(expected, (q, k, v), g)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a.double(), b.double(), atol=1e-4, rtol=0)

    for n in (700, 1300):
        for pattern in (A.local(100), A.band(0, 64)):
            check(pattern, n)
            block_mask_equals_host(
                flex._MASKS.get(flex._key(pattern, n, CUDA0, 128)), pattern, n, 128
            )
    assert len(calls) == 4 and len(flex._MASKS) == 4
    check(A.local(100), 700)  # the kept lists
    assert len(calls) == 4
    check(A.local(100) | A.global_tokens([0]), 700)  # not a window: the host build
    assert len(calls) == 4 and len(flex._MASKS) == 5
    with torch.inference_mode():
        q, k, v = (t.detach() for t in _inputs(900))
        sparse_attention(q, k, v, A.local(100), backend="flex")
    assert len(calls) == 5
    check(A.local(100), 900)  # the inference lists cannot be saved for backward: rebuilt
    assert len(calls) == 6
    assert not flex._MASKS.get(flex._key(A.local(100), 900, CUDA0, 128)).kv_indices.is_inference()


def test_layouts_built_on_the_gpu_equal_the_cpu_ones():
    for pattern in ATTENTION_PATTERNS:
        cpu = pattern.block_layout(500, 64)
        gpu = pattern.block_layout(500, 64, CUDA)
        assert torch.equal(cpu.state, gpu.state.cpu())
        fast = pattern.flex_blocks(500, 64, CUDA)
        assert fast.kv_idx.device.type == "cuda"
        dense = torch.zeros(8, 8, dtype=torch.bool)
        for r in range(8):
            dense[r, fast.kv_idx[r, : fast.kv_num[r]].long().cpu()] = True
        assert torch.equal(dense, (cpu.state == 1))


@pytest.mark.parametrize("n", [500, 9000], ids=["built on the CPU, one copy", "on the device"])
def test_flex_lists_for_the_gpu_equal_the_cpu_ones(n):
    """Small grids are built on the CPU and sent in one copy, large ones on the device: both
    equal the CPU build, list for list."""
    on_host = math.ceil(n / 128) ** 2 <= A.pattern.HOST_BUILD_MAX_BLOCKS
    assert on_host == (n == 500)
    compared = 0
    for pattern in ATTENTION_PATTERNS:
        try:
            pattern.check(n)
        except ValueError:
            continue  # a block layout that does not cover n
        gpu = pattern.flex_blocks(n, 128, CUDA)
        assert gpu.kv_idx.device.type == "cuda"
        flex_blocks_equal(gpu, pattern.flex_blocks(n, 128))
        compared += 1
    assert compared >= len(ATTENTION_PATTERNS) - 1  # only the 8 x 8 block layout may not cover n


@pytest.mark.parametrize("n", [4096, 65536], ids=["widened on the host", "on the device"])
def test_band_block_mask_build_does_not_wait_for_the_gpu(n):
    """A new length's mask is built while earlier kernels still run: the host must not wait
    for them (a copy from pageable memory did: it stalled until the stream drained), and the
    queued copy must still deliver the right layout once they finish."""
    pattern = A.local(512)
    expected = pattern.flex_blocks(n, 128)  # on the CPU
    torch.cuda.synchronize()
    busy = torch.cuda.Event()
    torch.cuda._sleep(2_000_000_000)  # ~1 s of GPU clock cycles queued on the stream
    busy.record()
    built = pattern.flex_blocks(n, 128, CUDA)
    assert not busy.query(), "the build waited for the queued kernels"
    torch.cuda.synchronize()
    for field in ("kv_num", "kv_idx", "full_kv_num", "full_kv_idx", "q_num", "q_idx"):
        assert torch.equal(getattr(built, field).cpu(), getattr(expected, field)), field


def test_auto_picks_flex_for_long_sparse_patterns_on_cuda():
    assert A.choose(A.local(512), 65536, CUDA, requires_grad=True) == "flex"
    assert A.choose(A.causal(), 65536, CUDA, requires_grad=True) == "dense"
    assert A.choose(A.local(512), 65536, CUDA, True, torch.bfloat16, 128) == "band"
    assert A.choose(A.causal() & A.local(512), 16384, CUDA, False, torch.float16, 64) == "band"
    assert (
        A.choose(A.local(512) | A.global_tokens([0]), 65536, CUDA, True, torch.bfloat16, 128)
        == "flex"
    )


def test_block_mask_is_cached_per_pattern_length_device_and_block():
    pattern = A.local(100)
    a = flex.block_mask(pattern, 1024, CUDA)
    assert flex.block_mask(A.local(100), 1024, CUDA) is a  # equal patterns share it
    assert flex.block_mask(pattern, 1024, CUDA, 64) is not a


def test_transformer_on_cuda_flex_matches_dense_and_trains():
    torch.manual_seed(0)
    kwargs = {"d_model": 64, "n_layers": 2, "n_heads": 4, "attention": A.local(32)}
    a = CausalTransformer(60, 256, backend="flex", **kwargs).to(CUDA)
    b = CausalTransformer(60, 256, backend="dense", **kwargs).to(CUDA)
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 60, (4, 257), device=CUDA)
    la, lb = a(x[:, :-1]), b(x[:, :-1])
    torch.testing.assert_close(la, lb, atol=1e-4, rtol=0)
    opt = torch.optim.Adam(a.parameters(), lr=3e-3)
    first = None
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(a(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or loss.item()
    assert loss.item() < first
