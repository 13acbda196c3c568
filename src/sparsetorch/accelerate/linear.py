"""``AcceleratedLinear``: an ``nn.Linear`` whose masked weight trains through the CPU sparse
kernels (``sparsetorch.kernels.cpu``).

``accelerate_`` turns a model's ``nn.Linear`` modules into this class in place (the object, its
parameters, mask buffers, hooks and state_dict keys stay the same). Per call of ``forward``:

* sparse path (a ``weight_sparsity_mask`` is attached, CPU, float32/bfloat16 weight and input of one
  dtype, density <= ``max_density``, eager mode, no CPU autocast):
  forward ``y = x W^T + b`` over the kept entries; backward ``dx = dy W`` over the kept entries
  and the weight gradient at the kept positions only (sampled dense-dense), handed to autograd
  as a dense-shaped tensor that is zero where pruned (``state.py``: the buffer is reused, so a
  step writes O(kept), not O(weight)); when ``weight.grad`` already holds a gradient
  (accumulation) the kept gradients arrive as a sparse COO tensor and are added in O(kept).
* dense path otherwise: ``F.linear``, exactly ``nn.Linear``.

A sparsity algorithm that needs the dense gradient of a step (RigL grows on it) sets the
module attribute ``_sparsetorch_dense_grad`` to True before that step's forward
(``DynamicSparsity`` does, from its step counter); that backward then computes the full
``dy^T x`` as masked dense training does (``last_grad_dense`` records which kind the last
backward gave).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from sparsetorch.accelerate.state import SparseState
from sparsetorch.masking import SUFFIX

DTYPES = (torch.float32, torch.bfloat16)
DENSE_GRAD_ATTR = "_sparsetorch_dense_grad"


_OPS: dict = {}  # backend name (None: the best available) -> its operators


def kernel_ops(backend: str | None = None):
    """The CPU kernels' operators (``sparsetorch.kernels.cpu.ops``), looked up once."""
    found = _OPS.get(backend)
    if found is None:
        from sparsetorch.kernels.cpu import ops

        found = _OPS[backend] = ops(backend)
    return found


def _padded(batch: int) -> int:
    """Columns of the transposed activations: 1 for one row, else a multiple of 8."""
    return 1 if batch == 1 else -(-batch // 8) * 8


def _columns(t: torch.Tensor, ops) -> torch.Tensor:
    """(B, n) -> (n, bp) float32, the kernels' activation layout."""
    if t.shape[0] == 1:
        return t.reshape(-1, 1).float().contiguous()
    return ops.transpose_pad(t, _padded(t.shape[0]))


class _SparseLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, layer):  # x (M, in) -> (M, out)
        ops, st = layer._sparse_ops, layer._sparse_state
        packed = st.packed
        xt = _columns(x, ops)  # (in, bp)
        y = ops.spmm(xt, x.shape[0], packed.rowptr, packed.cols, st.vals, None, bias, x.dtype)
        ctx.layer, ctx.packed, ctx.vals = layer, packed, st.vals
        ctx.dense_grad = bool(layer.__dict__.get(DENSE_GRAD_ATTR, False))
        ctx.save_for_backward(x, xt)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):  # dy (M, out)
        x, xt = ctx.saved_tensors
        layer, packed = ctx.layer, ctx.packed
        ops, st = layer._sparse_ops, layer._sparse_state
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dy = dy.contiguous()
        dx = dw = db = None
        dyt = _columns(dy, ops) if need_x or (need_w and not ctx.dense_grad) else None
        if need_x:
            # (nnz,) CSC order; cached per layer, unless the mask changed since the forward
            same = st.packed is packed
            vals_t = st.transposed_vals(ops) if same else ops.permute(ctx.vals, packed.perm)
            dx = ops.spmm(
                dyt, dy.shape[0], packed.colptr, packed.rows, vals_t, None, None, dy.dtype
            )
        if need_w:
            dw = layer._weight_grad(dy, x, dyt, xt, packed, ctx.dense_grad)
        if need_b:
            db = dy.sum(0)
        return dx, dw, db, None


class AcceleratedLinear(nn.Linear):
    """An ``nn.Linear`` trained through the sparse CPU kernels while it carries a mask (see
    the module docstring). Made by :func:`sparsetorch.accelerate_` from an existing
    ``nn.Linear`` (never constructed directly: the class is swapped in place)."""

    max_density: float = 0.5
    backend: str | None = None  # kernels backend: None = best available ("cpp", else "torch")

    @property
    def _sparse_state(self) -> SparseState:
        st = self.__dict__.get("_accel_state")
        if st is None:
            st = self.__dict__["_accel_state"] = SparseState()
        return st

    @property
    def _sparse_ops(self):
        found = _OPS.get(self.backend)
        return kernel_ops(self.backend) if found is None else found

    def sparse_mask(self) -> torch.Tensor | None:
        """The weight's live mask when the module has one, else None."""
        if "weight" not in getattr(self, "_sparsetorch_masked", ()):
            return None
        return self._buffers.get("weight" + SUFFIX)

    def _use_sparse(self, x: torch.Tensor) -> bool:
        """Whether this call runs the sparse kernels (refreshing the packed state if so)."""
        d = self.__dict__
        if "weight" not in d.get("_sparsetorch_masked", ()):
            return False  # no mask (yet)
        mask = self._buffers.get("weight" + SUFFIX)
        w, b = self._parameters["weight"], self._parameters["bias"]
        if (
            mask is None
            or x.device.type != "cpu"
            or w.device.type != "cpu"
            or w.dtype not in DTYPES
            or x.dtype != w.dtype
            or (b is not None and b.dtype != w.dtype)
            or w.layout != torch.strided
            or hasattr(w, "_local_tensor")  # a DTensor (FSDP2): dense path
            or x.numel() == 0
            or torch.compiler.is_compiling()
            or torch.jit.is_scripting()
            or torch.is_autocast_enabled("cpu")  # F.linear follows autocast's dtype rules
        ):
            return False
        packed = self._sparse_state.refresh(self, mask, self._sparse_ops)
        return packed.density <= self.max_density

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.__dict__
        if not self._use_sparse(x):
            d["last_path"] = "dense"
            d["last_grad_dense"] = True  # F.linear's gradient is dense
            return F.linear(x, self.weight, self.bias)
        d["last_path"] = "sparse"
        w, b = self._parameters["weight"], self._parameters["bias"]
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).contiguous()  # (M, in)
        if torch.is_grad_enabled() and (
            x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)
        ):
            y = _SparseLinearFn.apply(x2, w, b, self)
        else:  # inference: the kernel alone, no autograd node
            st, ops = self._sparse_state, self._sparse_ops
            packed = st.packed
            xt = _columns(x2, ops)
            y = ops.spmm(xt, x2.shape[0], packed.rowptr, packed.cols, st.vals, None, b, x.dtype)
        return y if x.dim() == 2 else y.reshape(*lead, self.out_features)

    # ---------------------------------------------------------------- weight gradient
    def _weight_grad(self, dy, x, dyt, xt, packed, dense_grad: bool) -> torch.Tensor:
        st, ops, w = self._sparse_state, self._sparse_ops, self.weight
        self.__dict__["last_grad_dense"] = dense_grad
        if dense_grad:  # the full dy^T x (a sparsity algorithm asked for it)
            return dy.t().mm(x)
        if w.grad is None:
            buf = st.clean_buffer(w, ops)
            g = ops.sddmm(dyt, xt, packed.rowptr, packed.cols, buf, w.dtype)
            st.wrote_buffer(buf, g)
            return buf.view(buf.shape)  # autograd keeps this view as weight.grad
        g = ops.sddmm(dyt, xt, packed.rowptr, packed.cols, None, w.dtype)
        return torch.sparse_coo_tensor(
            st.coo_indices(), g, w.shape, is_coalesced=True, check_invariants=False
        )

    def extra_repr(self) -> str:
        st = self.__dict__.get("_accel_state")
        parts = [super().extra_repr()]
        if st is not None and st.packed is not None:
            parts.append(f"density={st.packed.density:.4f}")
        parts.append(f"max_density={self.max_density}")
        return ", ".join(parts)


__all__ = ["AcceleratedLinear"]
