"""Compute paths for y = x @ W.T + b: dense and each sparse engine, behind one interface.

A path is prepared once per weight (compression, format conversion) and then called with a
2-D input (M, in). ``PATHS`` maps the names used by the dispatcher to path classes; each class
says, for a given weight, whether it can run and if not why (the reason is reported).

Every path that keeps a sparse representation of its own builds it with ``sparsetorch.formats``
(``CSR``, ``BSR``, ``NM``) and keeps that container as ``format``: its arrays are what the engine
reads, its ``nbytes`` what the path stores, its ``to_dense()`` the weight the path rebuilds. The
2:4 validity check is ``formats.nm.is_nm``. Only the cuSPARSELt and semi-structured engines pack
the dense weight themselves (what they store is torch's, opaque).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sparsetorch._registry import Registry
from sparsetorch.deploy.dispatch import m_bucket
from sparsetorch.deploy.graphed import GraphedPath, in_outer_graph
from sparsetorch.formats import BSR, CSR, NM, SparseFormat
from sparsetorch.formats.nm import is_nm
from sparsetorch.kernels import bsr_triton, nm_triton
from sparsetorch.kernels.nm_reference import nm_linear_reference

PATHS: Registry[type] = Registry("compute path")


class ComputePath:
    """One way to compute y = x @ W.T + b for a fixed weight: prepared once, called per input."""

    name = "path"

    @classmethod
    def unsupported(cls, weight: torch.Tensor) -> str | None:
        """None if this path can run ``weight``; otherwise the reason why not."""
        return None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.bias = bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # x (M, in) -> (M, out)
        raise NotImplementedError

    def nbytes(self) -> int:
        raise NotImplementedError

    def dense_weight(self) -> torch.Tensor:
        """The dense (out, in) weight this path was prepared from, rebuilt from what the path
        stores (equal bit for bit, except that a zero's sign is not kept: -0.0 comes back as
        0.0 where the format drops zeros)."""
        raise NotImplementedError


class FormatPath(ComputePath):
    """A path whose stored weight is a ``sparsetorch.formats`` container (``self.format``)."""

    format: SparseFormat

    def nbytes(self):
        return self.format.nbytes

    def dense_weight(self):
        return self.format.to_dense()


def _dense_by_identity(
    matmul, shape: tuple[int, int], dtype: torch.dtype, device: torch.device, chunk: int = 1024
) -> torch.Tensor:
    """Dense (out, in) W of an engine that can only multiply (what it stores is opaque):
    ``matmul(x) = x @ W.T`` on blocks of rows of the identity, ``chunk`` rows at a time (the
    full identity would be in x in). Exact for finite weights: each output is one product
    w * 1 plus products with zero."""
    out, k = shape
    weight = torch.empty(out, k, dtype=dtype, device=device)
    for j in range(0, k, chunk):
        c = min(chunk, k - j)
        eye = torch.zeros(c, k, dtype=dtype, device=device)  # rows j..j+c of the identity
        eye[:, j : j + c] = torch.eye(c, dtype=dtype, device=device)
        weight[:, j : j + c] = matmul(eye).T  # (c, out) -> (out, c)
    return weight


def _cuda_half(weight: torch.Tensor) -> str | None:
    if weight.device.type != "cuda":
        return "needs a CUDA device"
    if weight.dtype not in (torch.float16, torch.bfloat16):
        return f"needs float16/bfloat16, weight is {weight.dtype}"
    return None


@PATHS.register("dense")
class DensePath(ComputePath):
    name = "dense"

    def __init__(self, weight, bias):
        super().__init__(weight, bias)
        self.weight = weight

    def __call__(self, x):
        return F.linear(x, self.weight, self.bias)

    def nbytes(self):
        return self.weight.numel() * self.weight.element_size()

    def dense_weight(self):
        return self.weight


class _TorchCompressedPath(FormatPath):
    """A weight in one of torch's compressed sparse layouts (CSR, BSR), viewed from our format's
    arrays (int32 indices where they fit): y^T = W @ x^T."""

    weight: torch.Tensor  # sparse_csr or sparse_bsr, sharing self.format's arrays

    def __call__(self, x):
        y = (self.weight @ x.T).T
        return y if self.bias is None else y + self.bias


def _unsupported_csr(weight: torch.Tensor) -> str | None:
    if weight.dtype not in (torch.float32, torch.float64):
        return f"torch CSR matmul is used for float32/float64 only, weight is {weight.dtype}"
    return None


@PATHS.register("csr")
class CSRPath(_TorchCompressedPath):
    """torch's CSR kernels (MKL on CPU, cuSPARSE on CUDA) on ``formats.CSR``'s int32 arrays:
    y^T = W_csr @ x^T."""

    name = "csr"

    @classmethod
    def unsupported(cls, weight):
        return _unsupported_csr(weight)

    def __init__(self, weight, bias):
        super().__init__(weight, bias)
        self.format = CSR.from_dense(weight)
        self.weight = self.format.to_torch()


@PATHS.register("csr_torch")
class TorchCSRPath(_TorchCompressedPath):
    """torch's own CSR tensor, as a user would write it: ``weight.to_sparse_csr()`` (int64
    indices) and ``addmm``. The same kernels as ``csr`` on other index types; whichever is
    faster on this machine is chosen, so ``"csr"`` is never slower than torch's CSR matmul."""

    name = "csr_torch"

    @classmethod
    def unsupported(cls, weight):
        return _unsupported_csr(weight)

    def __init__(self, weight, bias):
        super().__init__(weight, bias)
        self.weight = weight.to_sparse_csr()
        self.format = CSR.from_dense(weight)  # nbytes and the rebuilt weight
        self._bias_col = None if bias is None else bias[:, None]  # (out, 1)

    def __call__(self, x):
        if self._bias_col is None:
            return (self.weight @ x.T).T
        return torch.addmm(self._bias_col, self.weight, x.T).T

    def nbytes(self):
        w = self.weight
        parts = (w.values(), w.crow_indices(), w.col_indices())
        return sum(t.numel() * t.element_size() for t in parts)


def _cpu_sparse_linear(kernels, x, rowptr, cols, vals, bias) -> torch.Tensor:
    """(M, in) -> (M, out): ``x @ W.T + bias`` with W's nonzeros packed as CSR rows (``rowptr``
    (out + 1,), ``cols``, ``vals``) by sparsetorch's CPU kernels (``kernels``: their ops)."""
    m = x.shape[0]
    if m == 0:  # the kernel divides by M: an empty batch never reaches it
        return x.new_empty(0, rowptr.numel() - 1)
    if m == 1:
        xt = x.reshape(-1, 1).float().contiguous()  # (in, 1): one column, unit stride
    else:  # the kernel reads x's rows in place: a slice or a transposed view is copied
        xt = kernels.transpose_pad(x.contiguous(), -(-m // 8) * 8)
    return kernels.spmm(xt, m, rowptr, cols, vals, None, bias, x.dtype)


@torch.library.custom_op("sparsetorch::cpu_sparse_linear", mutates_args=())
def cpu_sparse_linear(
    x: torch.Tensor,
    rowptr: torch.Tensor,
    cols: torch.Tensor,
    vals: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """The CPU kernels' product as one opaque op (with a fake kernel below), so that
    ``torch.compile`` calls the kernels instead of tracing into them (their ops have no fake
    kernels). Eager calls go to the kernels directly: the op's dispatch costs microseconds."""
    from sparsetorch.kernels.cpu import ops

    return _cpu_sparse_linear(ops("cpp"), x, rowptr, cols, vals, bias)


@cpu_sparse_linear.register_fake
def _(x, rowptr, cols, vals, bias):
    return x.new_empty(x.shape[0], rowptr.shape[0] - 1)


@PATHS.register("cpu_sparse")
class CPUSparsePath(ComputePath):
    """sparsetorch's CPU kernels (kernels/cpu): the weight's nonzeros as CSR with 16-bit column
    indices where they fit, multiplied vectorised and threaded (float32 and bfloat16). The
    training kernels of ``st.accelerate_``, forward only."""

    name = "cpu_sparse"

    @classmethod
    def unsupported(cls, weight):
        from sparsetorch.kernels.cpu import load, status

        if weight.device.type != "cpu":
            return "the sparse CPU kernels need a CPU weight"
        if weight.dtype not in (torch.float32, torch.bfloat16):
            return f"the sparse CPU kernels take float32/bfloat16, weight is {weight.dtype}"
        if weight.dim() != 2:
            return f"weight must be 2-D, got {weight.dim()} dims"
        if not load(warn=False):
            return f"the sparse CPU kernels are not built ({status()['error']})"
        return None

    def __init__(self, weight, bias):
        from sparsetorch.kernels.cpu import Packed, ops

        super().__init__(weight, bias)
        self.packed = Packed.from_mask(weight != 0, csc=False)
        self.ops = ops("cpp")
        self.vals = self.ops.gather(weight.contiguous(), self.packed.rowptr, self.packed.cols)
        self.dtype = weight.dtype

    def __call__(self, x):  # (M, in) -> (M, out)
        p = self.packed
        if torch.compiler.is_compiling():
            return cpu_sparse_linear(x, p.rowptr, p.cols, self.vals, self.bias)
        return _cpu_sparse_linear(self.ops, x, p.rowptr, p.cols, self.vals, self.bias)

    def nbytes(self):
        p = self.packed
        return self.vals.numel() * self.vals.element_size() + p.nbytes()

    def dense_weight(self):
        p = self.packed
        out = torch.zeros(p.shape, dtype=self.dtype)
        out.view(-1)[p.flat()] = self.vals
        return out


@PATHS.register("bsr")
class BSRPath(_TorchCompressedPath):
    """torch's block-sparse (BSR) matmul, Triton kernels on CUDA for half types."""

    name = "bsr"
    blocksize = 64

    @classmethod
    def unsupported(cls, weight):
        reason = _cuda_half(weight)
        if reason:
            return reason
        if any(s % cls.blocksize for s in weight.shape):
            return f"shape {tuple(weight.shape)} not divisible by block {cls.blocksize}"
        return None

    def __init__(self, weight, bias):
        super().__init__(weight, bias)
        self.format = BSR.from_dense(weight, (self.blocksize, self.blocksize))
        self.weight = self.format.to_torch()


@PATHS.register("bsr_triton")
class BSRTritonPath(FormatPath):
    """Our Triton block-sparse matmul (kernels/bsr_triton.py) on the weight's nonzero blocks,
    at the largest block size in 16..128 that adds little zero fill (choose_blocksize)."""

    name = "bsr_triton"

    @classmethod
    def unsupported(cls, weight):
        if not bsr_triton.available():
            return "Triton is not installed"
        reason = _cuda_half(weight)
        if reason:
            return reason
        if weight.dim() != 2 or any(s % min(bsr_triton.BLOCK_SIZES) for s in weight.shape):
            return (
                f"shape {tuple(weight.shape)} not divisible by any block size in "
                f"{bsr_triton.BLOCK_SIZES}"
            )
        return None

    def __init__(self, weight, bias):
        super().__init__(weight, bias)
        self.blocksize = bsr_triton.choose_blocksize(weight)
        self.format = BSR.from_dense(weight, (self.blocksize, self.blocksize))
        # the kernel's arguments, read on every call
        self.values, self.crow, self.col = (
            self.format.values,
            self.format.row_ptr,
            self.format.col_indices,
        )
        self.out_features = weight.shape[0]

    def __call__(self, x):
        return torch.ops.sparsetorch.bsr_linear(
            x, self.values, self.crow, self.col, self.bias, self.out_features
        )


def _cslt_search(compressed, xt, bias):
    """cuSPARSELt's algorithm search: ``torch._C._cusparselt.mm_search`` where torch has it
    (2.11 warns that ``torch._cslt_sparse_mm_search`` is deprecated); an algorithm id, or a
    tuple led by one. It searches the untransposed product: with ``transpose_result=True``
    cuSPARSELt 0.8 failed the search ("internal error", float16, M = 16, on an H200)."""
    cusparselt = getattr(torch._C, "_cusparselt", None)
    if cusparselt is not None and hasattr(cusparselt, "mm_search"):
        return cusparselt.mm_search(compressed, xt, bias, None, None, False)
    return torch._cslt_sparse_mm_search(compressed, xt, bias=bias)


def _unsupported_2to4(weight: torch.Tensor) -> str | None:
    reason = _cuda_half(weight)
    if reason:
        return reason
    if weight.shape[0] % 64 or weight.shape[1] % 64:
        return f"2:4 engines need both dims divisible by 64, shape is {tuple(weight.shape)}"
    if not is_nm(weight, 2, 4):
        return "weight is not 2:4 sparse"
    return None


@PATHS.register("semi_structured")
class SemiStructuredPath(ComputePath):
    """torch.sparse.to_sparse_semi_structured: cuSPARSELt (or CUTLASS) sparse tensor cores."""

    name = "semi_structured"

    @classmethod
    def unsupported(cls, weight):
        return _unsupported_2to4(weight)

    def __init__(self, weight, bias):
        super().__init__(weight, bias)
        from torch.sparse import to_sparse_semi_structured

        self.weight = to_sparse_semi_structured(weight)
        self._bytes = weight.numel() * weight.element_size() * 9 // 16
        self.shape = tuple(weight.shape)

    def __call__(self, x):
        return F.linear(x, self.weight, self.bias)

    def nbytes(self):
        return self._bytes

    def dense_weight(self):
        # torch's own to_dense multiplies by the whole (in, in) identity at once
        w = self.weight
        return _dense_by_identity(lambda x: F.linear(x, w), self.shape, w.dtype, w.device)


class _Compressed2to4Path(FormatPath):
    """A weight kept as ``formats.NM`` 2:4: values (out, in/2) and 2-bit positions (out, in/8)."""

    def __init__(self, weight, bias):
        super().__init__(weight, bias)
        self.format = NM.from_dense(weight, 2, 4)
        self.values, self.meta = self.format.values, self.format.meta  # the kernel's arguments


@PATHS.register("nm_triton")
class NMTritonPath(_Compressed2to4Path):
    """Our Triton 2:4 skinny GEMM (kernels/nm_triton.py); decode-sized M."""

    name = "nm_triton"

    @classmethod
    def unsupported(cls, weight):
        if not nm_triton.available():
            return "Triton is not installed"
        return _unsupported_2to4(weight)

    def __call__(self, x):
        return nm_triton.nm_linear_2to4(x, self.values, self.meta, self.bias)  # a torch op


@PATHS.register("nm_reference")
class NMReferencePath(_Compressed2to4Path):
    """The 2:4 reference twin (any device): decompress, then dense matmul. Never fast; it is
    the correctness anchor and is only dispatched to when forced."""

    name = "nm_reference"

    @classmethod
    def unsupported(cls, weight):
        if weight.dim() != 2 or weight.shape[1] % 8 or not is_nm(weight, 2, 4):
            return "weight is not 2:4 sparse with in_features divisible by 8"
        return None

    def __call__(self, x):
        return nm_linear_reference(x, self.values, self.meta, self.bias)


@PATHS.register("cslt")
class CuSparseLtPath(ComputePath):
    """cuSPARSELt called directly: weight compressed once, the algorithm searched once per
    M bucket and cached (torch's wrapper re-plans on every call)."""

    name = "cslt"

    @classmethod
    def unsupported(cls, weight):
        reason = _unsupported_2to4(weight)
        if reason:
            return reason
        if not hasattr(torch, "_cslt_compress"):
            return "this torch build has no cuSPARSELt"
        return None

    def __init__(self, weight, bias):
        super().__init__(weight, bias)
        self.compressed = torch._cslt_compress(weight)
        self._bytes = weight.numel() * weight.element_size() * 9 // 16
        self._alg: dict[int, int] = {}
        self.shape, self.dtype = tuple(weight.shape), weight.dtype

    def _alg_id(self, xt: torch.Tensor) -> int:
        bucket = m_bucket(xt.shape[1])  # the dispatcher's M buckets: tune() searches each one
        if bucket not in self._alg:
            if in_outer_graph(xt):  # no search while tracing or capturing: tune() in eager first
                return 0  # cuSPARSELt's default algorithm
            found = _cslt_search(self.compressed, xt, self.bias)
            self._alg[bucket] = int(found[0] if isinstance(found, tuple) else found)
        return self._alg[bucket]

    def __call__(self, x):
        m = x.shape[0]
        if m % 16:  # cuSPARSELt refuses dense operands whose M is not a multiple of 16
            x = F.pad(x, (0, 0, 0, 16 - m % 16))
        xt = x.T  # (in, M), column-major view
        # (out, M) result transposed back to (M, out)
        y = torch._cslt_sparse_mm(
            self.compressed, xt, bias=self.bias, transpose_result=True, alg_id=self._alg_id(xt)
        )
        return y[:m]

    def nbytes(self):
        return self._bytes

    def dense_weight(self):
        # cuSPARSELt's compressed blob is opaque: multiply it by the identity (chunks of 1024
        # rows, a multiple of 16 like every 2:4 in_features), default algorithm, no graph
        def matmul(x):  # (c, in) -> (c, out)
            return torch._cslt_sparse_mm(self.compressed, x.T, transpose_result=True)

        return _dense_by_identity(matmul, self.shape, self.dtype, self.compressed.device)


@PATHS.register("cslt_graph")
class GraphedCuSparseLtPath(GraphedPath, CuSparseLtPath):
    """cuSPARSELt replayed from a CUDA graph captured once per M bucket: the per-call host
    work (descriptor and plan set-up inside torch's wrapper) is paid once at capture."""

    name = "cslt_graph"


@PATHS.register("nm_triton_graph")
class GraphedNMTritonPath(GraphedPath, NMTritonPath):
    """Our Triton 2:4 kernel replayed from a CUDA graph captured once per M bucket: at decode
    sizes the eager call is bound by Python and the launch, not by the kernel."""

    name = "nm_triton_graph"
