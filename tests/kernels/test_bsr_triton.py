"""bsr_triton: y = x @ W.T + b equals a dense matmul of the densified W and formats.BSR's matmul.

The kernel runs compiled on CUDA, or on CPU in Triton's interpreter:
    TRITON_INTERPRET=1 PYTHONPATH=src:. python -m pytest tests/kernels/test_bsr_triton.py
Without either (CI: the CPU wheel of torch ships no Triton) the kernel tests skip with the
reason; input checks, the block-size choice and the autotune buckets run everywhere.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.deploy import PATHS
from sparsetorch.formats.bsr import BSR
from sparsetorch.kernels import bsr_triton as bt
from tests.kernels.interpreter import patch

patch()  # Triton 3.6's interpreter with numpy >= 2.3 (see tests/kernels/interpreter.py)


def bsr_arrays(w: torch.Tensor, bs: int) -> tuple[torch.Tensor, ...]:
    """The kernel's arguments (values, crow, col): formats.BSR's arrays at square blocks bs."""
    bsr = BSR.from_dense(w, (bs, bs))
    return bsr.values, bsr.row_ptr, bsr.col_indices


def _kernel_device() -> tuple[str | None, str]:
    """Where the kernel can run here, or None and why not."""
    if not bt.available():
        return None, (
            "needs Triton (the CPU wheel of torch ships none): pip install triton, then run "
            "with TRITON_INTERPRET=1 (CPU interpreter) or on a CUDA machine"
        )
    if bt.interpreting():
        try:  # the interpreter must really work here (numpy, Triton version)
            w = torch.ones(16, 16, dtype=torch.float16)
            v, crow, col = bsr_arrays(w, 16)
            y = bt.bsr_linear_triton(torch.ones(1, 16, dtype=torch.float16), v, crow, col, None, 16)
            assert torch.equal(y, torch.full((1, 16), 16.0, dtype=torch.float16))
        except Exception as exc:  # any failure means: cannot test here
            return None, f"TRITON_INTERPRET=1 does not work on this machine: {exc!r}"
        return "cpu", ""
    if torch.cuda.is_available():
        return "cuda", ""
    return None, "Triton without a CUDA device: run with TRITON_INTERPRET=1 (CPU interpreter)"


DEVICE, WHY = _kernel_device()
needs_kernel = pytest.mark.skipif(DEVICE is None, reason=WHY)
# Triton's interpreter (3.9) returns garbage from tl.dot on bfloat16: bf16 only compiled
needs_compiled = pytest.mark.skipif(
    DEVICE != "cuda", reason="bfloat16 / autotuning need the compiled kernel on CUDA"
)


def block_sparse(out, inn, bs, density=0.5, empty_rows=(1,), seed=0, dtype=torch.float16):
    """(out, in) weight with random whole (bs, bs) blocks kept; the listed block rows empty."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(out // bs, inn // bs, generator=g) < density  # (out/bs, in/bs)
    keep[list(empty_rows)] = False
    mask = keep.repeat_interleave(bs, 0).repeat_interleave(bs, 1)
    return (torch.randn(out, inn, generator=g) * mask).to(dtype)


def run(w, x, bias, bs, config=None):
    v, crow, col = bsr_arrays(w, bs)
    return bt.bsr_linear_triton(x, v, crow, col, bias, w.shape[0], config=config)


def expected(w, x, bias):
    y = x.float() @ w.float().T
    return y if bias is None else y + bias.float()


@needs_kernel
@pytest.mark.parametrize("bs", [16, 32, 64])
@pytest.mark.parametrize("m", [1, 3, 64, 130])
@pytest.mark.parametrize("w_left", [True, False])
def test_equals_dense_and_formats_bsr(bs, m, w_left):
    w = block_sparse(4 * bs, 3 * bs, bs, empty_rows=(1,)).to(DEVICE)  # block row 1 empty
    x = torch.randn(m, 3 * bs, generator=torch.Generator().manual_seed(m)).half().to(DEVICE)
    b = torch.randn(4 * bs, generator=torch.Generator().manual_seed(1)).half().to(DEVICE)
    y = run(w, x, b, bs, config={"BLOCK_M": 16 if m < 64 else 64, "W_LEFT": w_left})
    assert y.shape == (m, 4 * bs) and y.dtype == torch.float16
    torch.testing.assert_close(y.float(), expected(w, x, b), rtol=1e-2, atol=2e-2)
    # formats/bsr.py's block products on the same arrays, in float32
    v, crow, col = bsr_arrays(w, bs)
    ref = BSR(crow.cpu(), col.cpu(), v.float().cpu(), tuple(w.shape)).matmul_reference(
        x.float().cpu().T
    )  # (out, M)
    torch.testing.assert_close(y.float().cpu(), ref.T + b.float().cpu(), rtol=1e-2, atol=2e-2)
    # the empty block row is the bias, exactly
    assert torch.equal(y[:, bs : 2 * bs], b[bs : 2 * bs].expand(m, bs))


@needs_kernel
@pytest.mark.parametrize("w_left", [True, False])
def test_tile_of_512_rows_equals_dense(w_left):
    """The largest tile the autotuner offers (BLOCK_M 512, 8 warps) over a ragged M."""
    bs, m = 64, 600
    w = block_sparse(2 * bs, 3 * bs, bs, empty_rows=()).to(DEVICE)
    x = torch.randn(m, 3 * bs, generator=torch.Generator().manual_seed(9)).half().to(DEVICE)
    config = {"BLOCK_M": 512, "W_LEFT": w_left, "num_warps": 8}
    y = run(w, x, None, bs, config=config)
    torch.testing.assert_close(y.float(), expected(w, x, None), rtol=1e-2, atol=2e-2)


@pytest.mark.skipif(not bt.available(), reason="needs Triton")
def test_autotune_keeps_three_tile_heights_that_fit():
    def kept(bs, mk):
        return {
            (c.kwargs["BLOCK_M"], c.kwargs["W_LEFT"], c.num_warps, c.num_stages)
            for c in bt._prune(bt._CONFIGS, {"BS": bs, "M_KEY": mk})
        }

    big = kept(64, 8192)
    assert {bm for bm, *_ in big} == {128, 256, 512}
    assert all(warps == 8 for bm, _, warps, _ in big if bm == 512)  # registers
    assert (512, True, 8, 3) in big
    huge = kept(128, 8192)  # shared memory: (BLOCK_M * bs + bs^2) * 2 bytes per buffer
    assert {bm for bm, *_ in huge} == {128, 256}
    assert all(stages == 3 for bm, _, _, stages in huge if bm == 256)
    assert {bm for bm, *_ in kept(64, 32)} == {16, 32}  # never taller than the M bucket
    assert not any(w_left for _, w_left, *_ in kept(32, 8192))  # wgmma's 64-row M slot


@needs_kernel
@pytest.mark.parametrize("bias", [False, True])
def test_all_empty_weight_gives_bias_or_zeros(bias):
    w = torch.zeros(64, 32, dtype=torch.float16, device=DEVICE)
    b = torch.randn(64).half().to(DEVICE) if bias else None
    x = torch.randn(3, 32).half().to(DEVICE)
    y = run(w, x, b, 32, config={"BLOCK_M": 16, "W_LEFT": True})
    assert torch.equal(y, b.expand(3, 64) if bias else torch.zeros_like(y))


@needs_kernel
def test_block_128_and_default_config():
    w = block_sparse(256, 256, 128, density=0.6, empty_rows=()).to(DEVICE)
    x = torch.randn(5, 256).half().to(DEVICE)
    y = run(w, x, None, 128)  # autotuned on CUDA, the interpreter's default config on CPU
    torch.testing.assert_close(y.float(), expected(w, x, None), rtol=1e-2, atol=4e-2)


@needs_kernel
@pytest.mark.parametrize("w_left", [True, False])
def test_strided_x_equals_contiguous(w_left):
    w = block_sparse(128, 96, 32).to(DEVICE)
    xt = torch.randn(96, 20).half().to(DEVICE)  # x = xt.T: (20, 96), column-major
    cfg = {"BLOCK_M": 16, "W_LEFT": w_left}
    y_view, y_copy = run(w, xt.T, None, 32, cfg), run(w, xt.T.contiguous(), None, 32, cfg)
    torch.testing.assert_close(y_view, y_copy, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(y_view.float(), expected(w, xt.T, None), rtol=1e-2, atol=2e-2)


@needs_kernel
def test_strided_bias_crow_col_equal_contiguous():
    # the kernel steps through bias, crow and col by +1: views with other strides must be
    # made contiguous first, not read as if they were
    w = block_sparse(128, 96, 32).to(DEVICE)
    v, crow, col = bsr_arrays(w, 32)
    x = torch.randn(5, 96).half().to(DEVICE)
    b = torch.randn(256).half().to(DEVICE)[::2]  # (128,), stride 2
    crow2, col2 = (torch.stack((t, t), 1)[:, 0] for t in (crow, col))  # stride 2
    assert not (b.is_contiguous() or crow2.is_contiguous() or col2.is_contiguous())
    cfg = {"BLOCK_M": 16, "W_LEFT": True}
    y = bt.bsr_linear_triton(x, v, crow2, col2, b, 128, config=cfg)
    torch.testing.assert_close(y, run(w, x, b.contiguous(), 32, cfg), rtol=0, atol=0)
    torch.testing.assert_close(y.float(), expected(w, x, b), rtol=1e-2, atol=2e-2)


@needs_kernel
@settings(max_examples=12, deadline=None)
@given(
    bs=st.sampled_from([16, 32]),
    rows=st.integers(1, 4),
    cols=st.integers(1, 3),
    m=st.integers(1, 40),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    w_left=st.booleans(),
)
def test_random_block_masks(bs, rows, cols, m, density, seed, w_left):
    w = block_sparse(rows * bs, cols * bs, bs, density, empty_rows=(), seed=seed).to(DEVICE)
    x = torch.randn(m, cols * bs, generator=torch.Generator().manual_seed(seed)).half()
    b = torch.randn(rows * bs, generator=torch.Generator().manual_seed(seed + 1)).half()
    x, b = x.to(DEVICE), b.to(DEVICE)
    y = run(w, x, b, bs, config={"BLOCK_M": 16, "W_LEFT": w_left})
    torch.testing.assert_close(y.float(), expected(w, x, b), rtol=1e-2, atol=2e-2)


@pytest.mark.gpu
@needs_kernel
@needs_compiled
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m", [1, 130, 1000])
def test_autotuned_on_cuda(dtype, m):
    w = block_sparse(256, 512, 64, density=0.2, dtype=dtype).cuda()
    x = torch.randn(m, 512, device="cuda", dtype=dtype)
    b = torch.randn(256, device="cuda", dtype=dtype)
    y = run(w, x, b, 64)
    torch.testing.assert_close(y.float(), expected(w, x, b), rtol=2e-2, atol=2e-1)
    assert bt.best_config()["BLOCK_M"] <= bt.m_key(m)


# ---- everywhere (no kernel launch) ------------------------------------------------------


def _args(bs=32, out=64, inn=64, dtype=torch.float16):
    w = block_sparse(out, inn, bs, empty_rows=(), dtype=dtype)
    v, crow, col = bsr_arrays(w, bs)
    return torch.randn(2, inn).to(dtype), v, crow, col


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda a: {**a, "x": a["x"].float()}, TypeError, "x must be float16 or bfloat16"),
        (lambda a: {**a, "values": a["values"].bfloat16()}, TypeError, "values dtype"),
        (lambda a: {**a, "x": a["x"][:, :48]}, ValueError, "must divide out_features=64 and in=48"),
        (lambda a: {**a, "out_features": 96}, ValueError, "crow must have"),
        (lambda a: {**a, "col": a["col"][:-1]}, ValueError, "col must have nnzb"),
        (
            lambda a: {**a, "bias": torch.zeros(63).half()},
            ValueError,
            r"bias must have shape \(64,\)",
        ),
        (lambda a: {**a, "values": a["values"][:, :16]}, ValueError, "square blocks"),
        (lambda a: {**a, "x": a["x"][0]}, ValueError, "x must be 2-D"),
    ],
)
def test_bad_input_named(change, error, match):
    x, v, crow, col = _args()
    a = change({"x": x, "values": v, "crow": crow, "col": col, "bias": None, "out_features": 64})
    with pytest.raises(error, match=match):
        bt.bsr_linear_triton(**a)


def test_block_size_must_be_supported():
    w = torch.ones(24, 24, dtype=torch.float16)
    v, crow, col = bsr_arrays(w, 8)
    with pytest.raises(ValueError, match=r"block size must be one of \(16, 32, 64, 128\), got 8"):
        bt.bsr_linear_triton(torch.ones(1, 24).half(), v, crow, col, None, 24)


def test_formats_bsr_holds_the_kernels_arguments():
    # what the kernel and torch.compile need: int32 indices, contiguous blocks that are no
    # view of another tensor (fake tensors cannot take a view of a sparse tensor's values)
    w = block_sparse(128, 96, 32, empty_rows=(0, 3))
    v, crow, col = bsr_arrays(w, 32)
    assert crow.dtype == col.dtype == torch.int32 and v.is_contiguous() and v._base is None
    assert crow.is_contiguous() and col.is_contiguous()
    assert crow[1] == 0 and crow[-1] == crow[-2] == v.shape[0]  # block rows 0 and 3 empty
    assert torch.equal(BSR(crow, col, v, (128, 96)).to_dense(), w)


@pytest.mark.parametrize(
    "make, want",
    [
        (lambda: torch.ones(256, 256), 128),  # dense: no fill at any size
        (lambda: block_sparse(256, 256, 64, density=0.2, empty_rows=()), 64),
        (lambda: block_sparse(256, 256, 32, density=0.2, empty_rows=()), 32),
        (lambda: block_sparse(96, 96, 16, density=0.3, empty_rows=()), 16),
        (lambda: torch.ones(48, 80), 16),  # only 16 divides both
        (lambda: torch.zeros(64, 64), 64),  # nothing stored at any size: the largest
        (lambda: torch.ones(50, 64), None),
    ],
)
def test_choose_blocksize(make, want):
    assert bt.choose_blocksize(make()) == want


def test_choose_blocksize_slack():
    w = torch.zeros(64, 64)
    w[:32, :32] = 1  # one 32-block: a 64-block stores 4x the elements
    assert bt.choose_blocksize(w) == 32
    assert bt.choose_blocksize(w, slack=4.0) == 64
    with pytest.raises(ValueError, match="slack must be >= 1"):
        bt.choose_blocksize(w, slack=0.5)


def test_autotune_buckets():
    assert [bt.m_key(m) for m in (1, 16, 17, 130, 8192)] == [16, 16, 32, 256, 8192]
    # mean blocks per block row 0, 0.4, 1, 6.4, 12.8 -> rounded 0, 0, 1, 6, 13 -> bit lengths
    assert [bt.density_key(n, 128) for n in (0, 51, 128, 819, 1638)] == [0, 0, 1, 3, 4]


def test_path_reports_why_not():
    path = PATHS.lookup("bsr_triton")
    reason = path.unsupported(block_sparse(64, 64, 32))  # a CPU weight
    assert reason == ("needs a CUDA device" if bt.available() else "Triton is not installed")


# --- backward -------------------------------------------------------------------------------


@pytest.mark.parametrize("bs", [16, 32])
def test_transpose_bsr_is_the_transposed_weight(bs):
    w = block_sparse(4 * bs, 6 * bs, bs, 0.4, seed=bs, dtype=torch.float32)
    values, crow, col = bsr_arrays(w, bs)
    vt, crow_t, col_t = bt.transpose_bsr(values, crow, col, w.shape[1] // bs)
    assert crow_t.dtype == crow.dtype and col_t.dtype == col.dtype
    assert torch.equal(BSR(crow_t, col_t, vt, (w.shape[1], w.shape[0])).to_dense(), w.T)


def test_transposed_pattern_is_remembered_until_the_pattern_changes():
    w = block_sparse(64, 96, 16, 0.5, seed=4, dtype=torch.float32)
    _, crow, col = bsr_arrays(w, 16)
    first = bt.transposed_pattern(crow, col, 6)
    assert all(a is b for a, b in zip(bt.transposed_pattern(crow, col, 6), first))
    fresh = bt.transpose_pattern(crow, col, 6)
    assert all(torch.equal(a, b) for a, b in zip(first, fresh))
    # an in-place edit of either tensor, another crow object, or another column count recomputes
    col.add_(0)
    again = bt.transposed_pattern(crow, col, 6)
    assert again[0] is not first[0] and all(torch.equal(a, b) for a, b in zip(again, fresh))
    other = bt.transposed_pattern(crow.clone(), col, 6)
    assert other[0] is not again[0]
    assert bt.transposed_pattern(crow, col, 7)[1].shape == (8,)  # 7 block columns


def test_transpose_bsr_follows_a_new_pattern_in_the_same_tensors():
    """A pattern rewritten in place (same tensor objects, as a pattern update could do) is
    transposed anew, not taken from the memo."""
    a = block_sparse(64, 64, 16, 0.5, seed=5, dtype=torch.float32)
    b = a.T.contiguous()  # another pattern with as many blocks
    va, crow, col = bsr_arrays(a, 16)
    vb, crow_b, col_b = bsr_arrays(b, 16)
    assert not torch.equal(col, col_b)
    bt.transpose_bsr(va, crow, col, 4)
    crow.copy_(crow_b)
    col.copy_(col_b)
    vt, crow_t, col_t = bt.transpose_bsr(vb, crow, col, 4)
    assert torch.equal(BSR(crow_t, col_t, vt, (64, 64)).to_dense(), b.T)


@needs_kernel
def test_backward_transposes_the_pattern_once(monkeypatch):
    """Repeated backward passes through one weight reuse its transposed pattern."""
    calls = []
    real = bt.transpose_pattern
    monkeypatch.setattr(bt, "transpose_pattern", lambda *a: calls.append(1) or real(*a))
    w = block_sparse(64, 32, 16, 0.5, seed=8)
    values, crow, col = (t.to(DEVICE) for t in bsr_arrays(w, 16))
    values.requires_grad_()
    x = torch.randn(16, 32, dtype=torch.float16, device=DEVICE, requires_grad=True)
    grads = []
    for _ in range(3):
        y = torch.ops.sparsetorch.bsr_linear(x, values, crow, col, None, 64)
        grads.append(torch.autograd.grad(y.float().sum(), x)[0])
    assert len(calls) == 1
    assert torch.equal(grads[0], grads[2])
    want = torch.ones(16, 64) @ w.float()  # dx = dy W
    torch.testing.assert_close(grads[0].float().cpu(), want, rtol=2e-2, atol=2e-2)


@needs_kernel
def test_backward_under_torch_compile_equals_eager():
    """A compiled training step (AOTAutograd traces the backward with fake tensors: the
    weight-gradient kernel and the pattern's transpose must take them) gives eager's grads."""
    w = block_sparse(64, 32, 16, 0.6, seed=9)
    values, crow, col = (t.to(DEVICE) for t in bsr_arrays(w, 16))
    values.requires_grad_()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 32, generator=g).half().to(DEVICE).requires_grad_()

    def loss(x, values):
        y = torch.ops.sparsetorch.bsr_linear(x, values, crow, col, None, 64)
        return (y.float() * torch.arange(64, device=y.device)).sum()

    eager = torch.autograd.grad(loss(x, values), (x, values))
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(x, values), (x, values))
    for a, b in zip(got, eager):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_transpose_bsr_does_not_synchronise_on_cuda():
    """The backward transposes W on every call: no host read of a device value there."""
    w = block_sparse(256, 384, 64, 0.3, seed=3, dtype=torch.float32).cuda()
    values, crow, col = bsr_arrays(w, 64)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        vt, crow_t, col_t = bt.transpose_bsr(values, crow, col, w.shape[1] // 64)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(BSR(crow_t, col_t, vt, (w.shape[1], w.shape[0])).to_dense(), w.T)


@pytest.mark.parametrize("bs", [16, 32])
def test_weight_grad_equals_dense_gradient_at_stored_blocks(bs):
    w = block_sparse(3 * bs, 5 * bs, bs, 0.5, seed=7, dtype=torch.float32)
    values, crow, col = bsr_arrays(w, bs)
    g = torch.Generator().manual_seed(1)
    x, dy = torch.randn(9, w.shape[1], generator=g), torch.randn(9, w.shape[0], generator=g)
    dense_grad = dy.T @ x  # dL/dW for y = x W^T
    got = bt.bsr_weight_grad(x, dy, crow, col, bs, chunk=2)  # several chunks
    rebuilt = BSR(crow, col, got, w.shape).to_dense()
    mask = BSR(crow, col, torch.ones_like(values), w.shape).to_dense().bool()
    torch.testing.assert_close(rebuilt, dense_grad * mask, rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("bs", [16, 32])
@pytest.mark.parametrize(("m", "splits"), [(1, None), (37, None), (600, None), (600, 3)])
def test_triton_weight_grad_equals_the_gathered_one(bs, m, splits):
    """The kernel equals the gathered-copy reference at every stored block, for M shorter than
    one tile, several tiles with a ragged end, and several runs of rows (splits)."""
    w = block_sparse(4 * bs, 3 * bs, bs, 0.6, seed=bs + m, dtype=torch.float16)
    _, crow, col = bsr_arrays(w, bs)
    g = torch.Generator().manual_seed(m)
    x = torch.randn(m, w.shape[1], generator=g).to(torch.float16)
    dy = torch.randn(m, w.shape[0], generator=g).to(torch.float16)
    want = bt.bsr_weight_grad(x.float(), dy.float(), crow, col, bs)
    dev = lambda t: t.to(DEVICE)  # noqa: E731
    config = {"BLOCK_K": 32} if DEVICE == "cpu" else None
    args = (dev(x), dev(dy), dev(crow), dev(col), bs)
    got = bt.bsr_weight_grad_triton(*args, config=config, splits=splits)
    assert got.dtype == torch.float16 and got.shape == want.shape
    torch.testing.assert_close(got.float().cpu(), want, rtol=2e-3, atol=2e-2)


@needs_kernel
def test_triton_weight_grad_of_strided_inputs_and_no_blocks():
    bs = 16
    w = block_sparse(2 * bs, 4 * bs, bs, 0.5, seed=5, dtype=torch.float16)
    _, crow, col = bsr_arrays(w, bs)
    g = torch.Generator().manual_seed(3)
    xt = torch.randn(w.shape[1], 40, generator=g).to(torch.float16)  # x = xt.T: column-major
    dy = torch.randn(40, 2 * w.shape[0], generator=g).to(torch.float16)[:, ::2]  # strided
    want = bt.bsr_weight_grad(xt.T.float(), dy.float(), crow, col, bs)
    config = {"BLOCK_K": 32} if DEVICE == "cpu" else None
    args = (xt.to(DEVICE).T, dy.to(DEVICE), crow.to(DEVICE), col.to(DEVICE), bs)
    got = bt.bsr_weight_grad_triton(*args, config=config)
    torch.testing.assert_close(got.float().cpu(), want, rtol=2e-3, atol=2e-2)
    empty = torch.zeros_like(w)
    _, crow0, col0 = bsr_arrays(empty, bs)
    got0 = bt.bsr_weight_grad_triton(args[0], args[1], crow0.to(DEVICE), col0.to(DEVICE), bs)
    assert got0.shape == (0, bs, bs)


@pytest.mark.parametrize(
    ("m", "nnzb", "programs", "want"),
    [(8192, 819, 528, 1), (8192, 16, 528, 16), (8192, 4, 528, 16), (100, 4, 528, 1), (0, 4, 8, 1)],
)
def test_weight_grad_splits(m, nnzb, programs, want):
    assert bt.weight_grad_splits(m, nnzb, programs) == want


@needs_kernel
def test_bsr_linear_backward_equals_dense_autograd():
    bs, dtype = 16, torch.float16
    w = block_sparse(4 * bs, 3 * bs, bs, 0.5, seed=3, dtype=dtype)
    values, crow, col = bsr_arrays(w, bs)
    values = values.to(DEVICE).requires_grad_()
    crow, col = crow.to(DEVICE), col.to(DEVICE)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(20, w.shape[1], generator=g).to(dtype).to(DEVICE).requires_grad_()
    bias = torch.randn(w.shape[0], generator=g).to(dtype).to(DEVICE).requires_grad_()
    y = torch.ops.sparsetorch.bsr_linear(x, values, crow, col, bias, w.shape[0])
    up = torch.randn(y.shape, generator=g).to(dtype).to(DEVICE)
    dx, dv, db = torch.autograd.grad(y, (x, values, bias), up)
    wd = w.to(DEVICE).float().requires_grad_()
    xd, bd = x.detach().float().requires_grad_(), bias.detach().float().requires_grad_()
    yd = xd @ wd.T + bd
    ex, ew, eb = torch.autograd.grad(yd, (xd, wd, bd), up.float())
    torch.testing.assert_close(dx.float(), ex, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(db.float(), eb, rtol=2e-2, atol=2e-2)
    mask = BSR(crow, col, torch.ones_like(values), w.shape).to_dense().bool()
    dense_dv = BSR(crow, col, dv.detach(), w.shape).to_dense().float()
    torch.testing.assert_close(dense_dv, ew * mask, rtol=2e-2, atol=2e-2)
