"""The one-pass cleaning of non-finite keys and values (kernels/finite_triton.py) against the
torch form: every non-finite entry 0, every finite entry bitwise as it was, one flag per
position whose key or value row held a NaN or ±inf; the gradient passes where the input was
finite. On CPU in Triton's interpreter (``TRITON_INTERPRET=1``); on a GPU (``-m gpu``) through
``nonfinite.split``, which uses it on CUDA."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from sparsetorch.attention.backends import nonfinite
from sparsetorch.kernels import finite_triton as ft
from tests.kernels.interpreter import needs_interpreter, patch

patch()

BAD = (float("nan"), float("inf"), float("-inf"))


def spy(monkeypatch, name: str) -> list:
    """Record each call of ``finite_triton.<name>`` (which still runs): the calls list."""
    calls, real = [], getattr(ft, name)
    monkeypatch.setattr(ft, name, lambda *a: calls.append(1) or real(*a))
    return calls


def torch_form(k, v):
    fk, fv = torch.isfinite(k), torch.isfinite(v)
    return torch.where(fk, k, 0.0), torch.where(fv, v, 0.0), ~(fk.all(-1) & fv.all(-1))


def with_bad_entries(x, picks):
    x = x.clone()
    flat = x.view(-1) if x.is_contiguous() else None
    for index, which in picks:
        if flat is not None:
            flat[index % flat.numel()] = BAD[which]
    return x


def check(k, v):
    got_k, got_v, got_bad = ft.clean_nonfinite_triton(k, v)
    want_k, want_v, want_bad = torch_form(k, v)
    assert got_k.is_contiguous() and got_v.is_contiguous()
    assert got_k.dtype == k.dtype and got_v.dtype == v.dtype and got_bad.dtype == torch.bool
    assert torch.equal(got_k, want_k) and torch.equal(got_v, want_v)  # bitwise, no NaN left
    assert torch.equal(got_bad, want_bad)


@needs_interpreter
@settings(max_examples=25, deadline=None)
@given(
    shape=hs.tuples(hs.integers(1, 2), hs.integers(1, 3), hs.integers(1, 40)),
    dims=hs.sampled_from([(16, 16), (64, 32), (24, 40), (128, 128)]),
    dtype=hs.sampled_from([torch.float16, torch.float32]),
    picks_k=hs.lists(hs.tuples(hs.integers(0, 10**6), hs.integers(0, 2)), max_size=6),
    picks_v=hs.lists(hs.tuples(hs.integers(0, 10**6), hs.integers(0, 2)), max_size=6),
)
def test_equals_the_torch_form(shape, dims, dtype, picks_k, picks_v):
    """Any (B, H, n), head dims that are not powers of two, NaN / ±inf anywhere (or none)."""
    g = torch.Generator().manual_seed(sum(shape) + dims[0])
    k = torch.randn(*shape, dims[0], generator=g).to(dtype)
    v = torch.randn(*shape, dims[1], generator=g).to(dtype)
    check(with_bad_entries(k, picks_k), with_bad_entries(v, picks_v))


@needs_interpreter
def test_strided_inputs_and_gqa_shapes():
    """k in the (B, n, H, D) layout viewed as (B, H, n, D), v sliced from a wider buffer."""
    g = torch.Generator().manual_seed(0)
    k = torch.randn(2, 45, 3, 16, generator=g).half().transpose(1, 2)  # (2, 3, 45, 16)
    v = torch.randn(2, 3, 45, 48, generator=g).half()[..., 8:40]  # (2, 3, 45, 32)
    k[1, 2, 7, 3] = float("nan")
    k[0, 0, 44, 0] = float("-inf")
    v[0, 1, 0, 31] = float("inf")
    assert not k.is_contiguous() and not v.is_contiguous()
    check(k, v)
    _, _, bad = ft.clean_nonfinite_triton(k, v)
    assert bad.sum().item() == 3 and bad[1, 2, 7] and bad[0, 0, 44] and bad[0, 1, 0]


@needs_interpreter
def test_gradient_kernel_on_strided_inputs_and_gradients():
    g = torch.Generator().manual_seed(4)
    k = torch.randn(2, 20, 3, 16, generator=g).half().transpose(1, 2)  # (2, 3, 20, 16)
    v = torch.randn(2, 3, 20, 40, generator=g).half()[..., 4:36]  # (2, 3, 20, 32)
    k[0, 1, 19, 15], v[1, 2, 0, 0], v[1, 2, 3, 7] = float("inf"), float("nan"), float("-inf")
    up_k = torch.randn(2, 20, 3, 16, generator=g).half().transpose(1, 2)
    up_v = torch.randn(2, 3, 32, 20, generator=g).half().transpose(2, 3)
    got_k, got_v = ft.clean_grad_triton(k, v, up_k, up_v)
    assert torch.equal(got_k, torch.where(torch.isfinite(k), up_k, 0.0))
    assert torch.equal(got_v, torch.where(torch.isfinite(v), up_v, 0.0))
    assert got_v[1, 2, 0, 0] == 0 and got_v[1, 2, 3, 7] == 0 and got_k[0, 1, 19, 15] == 0


@needs_interpreter
def test_op_gradient_passes_where_the_input_was_finite():
    g = torch.Generator().manual_seed(1)
    k = torch.randn(1, 2, 9, 16, generator=g).half()
    v = torch.randn(1, 2, 9, 16, generator=g).half()
    k[0, 1, 4, 2], v[0, 0, 8, 15] = float("nan"), float("inf")
    k.requires_grad_(), v.requires_grad_()
    ck, cv, bad = torch.ops.sparsetorch.clean_nonfinite(k, v)
    up_k, up_v = torch.randn_like(ck), torch.randn_like(cv)
    gk, gv = torch.autograd.grad((ck * up_k).sum() + (cv * up_v).sum(), (k, v))
    assert torch.equal(gk, torch.where(torch.isfinite(k), up_k, 0.0))
    assert torch.equal(gv, torch.where(torch.isfinite(v), up_v, 0.0))
    assert gk[0, 1, 4, 2] == 0 and gv[0, 0, 8, 15] == 0 and bad.sum() == 2
    ck, cv, _ = torch.ops.sparsetorch.clean_nonfinite(k, v)  # only k's output used
    (gk,) = torch.autograd.grad((ck * up_k).sum(), (k,))
    assert torch.equal(gk, torch.where(torch.isfinite(k), up_k, 0.0))


def test_unsupported_inputs_say_why():
    k = torch.zeros(1, 2, 8, 16)
    if ft.triton is None:
        assert ft.unsupported(k, k) == "Triton is not installed"
        return
    if not ft.interpreting() and not torch.cuda.is_available():
        assert "CUDA" in ft.unsupported(k, k)
        return
    assert "(B, H, n, D)" in ft.unsupported(k, torch.zeros(1, 2, 9, 16))
    assert "float16/bfloat16/float32" in ft.unsupported(k.double(), k.double())
    assert "head dims up to 256" in ft.unsupported(torch.zeros(1, 1, 2, 512), k[:, :1, :2])
    with pytest.raises(ValueError, match="head dims up to 256"):
        ft.clean_nonfinite_triton(torch.zeros(1, 1, 2, 512), k[:, :1, :2])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_split_on_cuda_uses_the_kernel_and_equals_the_torch_form(dtype, monkeypatch):
    g = torch.Generator(device="cuda").manual_seed(2)
    k = torch.randn(1, 4, 300, 128, device="cuda", generator=g).to(dtype)
    v = torch.randn(1, 4, 300, 128, device="cuda", generator=g).to(dtype)
    k[0, 3, 17, 5], v[0, 0, 299, 0] = float("nan"), float("-inf")
    calls = spy(monkeypatch, "clean_nonfinite_triton")
    got = nonfinite.split(k, v)
    assert calls == [1]
    for a, b in zip(got, torch_form(k, v)):
        assert torch.equal(a, b)


# --- the rows' fill (poison): one pass instead of masked_fill's copy and broadcast fill -------


def same_with_nan(a, b):
    """Equal where finite-or-inf, NaN at the same places (NaN payloads aside)."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


@needs_interpreter
@settings(max_examples=20, deadline=None)
@given(
    shape=hs.tuples(hs.integers(1, 2), hs.integers(1, 3), hs.integers(1, 40)),
    dim=hs.sampled_from([8, 24, 64, 128]),
    dtype=hs.sampled_from([torch.float16, torch.float32]),
    nan=hs.booleans(),
    seed=hs.integers(0, 2**16),
)
def test_fill_rows_equals_masked_fill(shape, dim, dtype, nan, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, dim, generator=g).to(dtype)
    x[..., 0][torch.rand(shape, generator=g) < 0.2] = float("inf")  # kept where not marked
    rows = torch.rand(shape, generator=g) < 0.3
    got = ft.fill_rows_triton(x, rows, nan)
    want = x.masked_fill(rows[..., None], float("nan") if nan else 0.0)
    assert got.is_contiguous() and got.dtype == x.dtype
    assert same_with_nan(got, want)
    assert got.isnan().any(-1).eq(rows).all() if nan else not got.isnan().any()


@needs_interpreter
def test_fill_rows_of_a_strided_tensor_and_its_gradient():
    """x in the (B, n, H, D) layout viewed as (B, H, n, D); the op's gradient is masked_fill's:
    the incoming one, 0 on the marked rows."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 30, 3, 16, generator=g).half().transpose(1, 2)  # (2, 3, 30, 16)
    rows = torch.zeros(2, 3, 30, dtype=torch.bool)
    rows[0, 2, 29], rows[1, 0, 0], rows[1, 1, 13] = True, True, True
    assert not x.is_contiguous()
    assert same_with_nan(
        ft.fill_rows_triton(x, rows, True), x.masked_fill(rows[..., None], float("nan"))
    )
    x.requires_grad_()
    up = torch.randn(2, 3, 30, 16, generator=g).half()
    out = torch.ops.sparsetorch.fill_rows(x, rows, True)
    assert out.isnan().any(-1).eq(rows).all()
    (grad,) = torch.autograd.grad(out, (x,), up)
    assert torch.equal(grad, up.masked_fill(rows[..., None], 0.0))


def test_fill_unsupported_inputs_say_why():
    x, rows = torch.zeros(1, 2, 8, 16), torch.zeros(1, 2, 8, dtype=torch.bool)
    if ft.triton is None:
        assert ft.fill_unsupported(x, rows) == "Triton is not installed"
        return
    if not ft.interpreting() and not torch.cuda.is_available():
        assert "CUDA" in ft.fill_unsupported(x, rows)
        return
    assert ft.fill_unsupported(x, rows) is None
    assert "bool rows (B, H, n)" in ft.fill_unsupported(x, rows[:, :, :7])
    assert "bool rows (B, H, n)" in ft.fill_unsupported(x, rows.int())
    assert "D <= 256" in ft.fill_unsupported(torch.zeros(1, 2, 8, 512), rows)
    with pytest.raises(ValueError, match="float16/bfloat16/float32"):
        ft.fill_rows_triton(x.double(), rows, True)


def test_poison_off_cuda_is_masked_fill():
    out = torch.randn(1, 2, 5, 4)
    rows = torch.tensor([[[True, False, False, False, True], [False] * 5]])
    got = nonfinite.poison(out, rows)
    assert same_with_nan(got, out.masked_fill(rows[..., None], float("nan")))
    assert got[0, 0, 0].isnan().all() and not got[0, 1].isnan().any()
    assert nonfinite.poison(out, None) is out


@pytest.mark.gpu
def test_poison_on_cuda_uses_the_kernel_and_equals_masked_fill(monkeypatch):
    g = torch.Generator(device="cuda").manual_seed(3)
    out = torch.randn(1, 4, 300, 128, device="cuda", generator=g).bfloat16()
    rows = torch.rand(1, 4, 300, device="cuda", generator=g) < 0.1
    calls = spy(monkeypatch, "fill_rows_triton")
    got = nonfinite.poison(out, rows)
    assert calls == [1]
    assert same_with_nan(got, out.masked_fill(rows[..., None], float("nan")))


@needs_interpreter
def test_ops_pass_torch_library_opcheck():
    """Schema, fake tensors (torch.compile), autograd registration, AOT dispatch."""
    g = torch.Generator().manual_seed(5)
    k = torch.randn(1, 2, 9, 16, generator=g).half()
    v = torch.randn(1, 2, 9, 32, generator=g).half()
    k[0, 0, 1, 1] = float("nan")
    grads = (
        torch.randn(1, 2, 9, 16, generator=g).half(),
        torch.randn(1, 2, 9, 32, generator=g).half(),
    )
    torch.library.opcheck(
        torch.ops.sparsetorch.clean_nonfinite.default,
        (k.clone().requires_grad_(), v.clone().requires_grad_()),
    )
    torch.library.opcheck(torch.ops.sparsetorch.clean_nonfinite_grad.default, (k, v, *grads))
    rows = torch.tensor([[[True] + [False] * 8, [False] * 4 + [True] + [False] * 4]])
    torch.library.opcheck(
        torch.ops.sparsetorch.fill_rows.default, (v.clone().requires_grad_(), rows, False)
    )
