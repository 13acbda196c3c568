"""What an accelerated layer keeps besides its parameters: the packed index structure of its
mask, the kept weights in that order, and the reusable weight-gradient buffer.

Everything here is derived state, rebuilt lazily and checked cheaply on every use:

* the mask: its buffer's identity, version counter and data pointer, and the module's mask
  version (``attach_mask`` bumps it); a change re-packs (``Packed.from_mask``: O(weight));
* the kept weights ``vals``: the weight's data pointer and version counter. The fused optimizer
  steps write ``vals`` with the weight, so they stay valid; any other in-place change of the
  weight (a torch optimizer, ``load_state_dict``, ``copy_``) bumps the version and the next
  forward gathers them again (O(kept));
* the gradient buffer: a dense (out, in) tensor that is zero at every pruned position. A
  backward with ``weight.grad is None`` writes the kept gradients into it (O(kept)) and hands
  autograd a view of it, which becomes ``weight.grad``. It is reused only when nothing else
  holds its storage (the previous ``weight.grad`` was dropped, as ``zero_grad()`` does) and its
  version counter shows no in-place change since our last write; otherwise a zeroed one is
  used (O(weight), as dense training pays every step).

Deep copies and pickles of a module carry none of it (it is rebuilt on first use).
"""

from __future__ import annotations

import torch

from sparsetorch.kernels.cpu import Packed


def dense_zeros(like: torch.Tensor, ops) -> torch.Tensor:
    """Contiguous zeros shaped like ``like`` (the weight's gradient buffer), backed by huge
    pages where the kernels can ask for them: the sparse backward writes it at scattered
    positions, and larger pages mean fewer TLB misses."""
    t = torch.empty(like.shape, dtype=like.dtype, device=like.device)
    ops.advise_huge_pages(t)
    return t.zero_()


def _use_count(t: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


_HAS_USE_COUNT = hasattr(torch._C, "_storage_Use_Count")
_FREE = _use_count(torch.zeros(1)) if _HAS_USE_COUNT else 0  # the count of an unshared tensor


def storage_shared(t: torch.Tensor) -> bool:
    """True when a tensor other than ``t`` (a view, ``param.grad``) holds its storage; True
    also when this torch cannot tell."""
    return not _HAS_USE_COUNT or _use_count(t) > _FREE


class SparseState:
    """Derived state of one accelerated layer (see the module docstring)."""

    def __init__(self) -> None:
        self.packed: Packed | None = None
        self.mask_key: tuple | None = None
        self.vals: torch.Tensor | None = None  # (nnz,) kept weights, CSR order
        self.vals_key: tuple | None = None
        self.vals_epoch = 0  # bumped whenever vals are rewritten (gathered, or stepped)
        self._vals_t: tuple[int, torch.Tensor] | None = None  # (epoch, vals in CSC order)
        self.grad_buffer: torch.Tensor | None = None  # (out, in), zero where pruned
        self.grad_version: int | None = None  # its version after our last write
        self.grad_packed: torch.Tensor | None = None  # (nnz,) what was written there
        self._coo: torch.Tensor | None = None
        self.repacks = 0  # how many times the mask was packed (tests and reports)

    # deep copies and pickles start empty: everything is rebuilt from the module on first use
    def __deepcopy__(self, memo: dict) -> SparseState:
        return SparseState()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    @staticmethod
    def mask_key_of(module: torch.nn.Module, mask: torch.Tensor) -> tuple:
        return (
            id(mask),
            mask._version,
            mask.data_ptr(),
            module.__dict__.get("_sparsetorch_version", 0),
        )

    def refresh(self, module: torch.nn.Module, mask: torch.Tensor, ops) -> Packed:
        """Re-pack when the mask changed and re-gather the kept weights when the weight did."""
        key = self.mask_key_of(module, mask)
        if key != self.mask_key:
            self._repack(mask, ops)
            self.mask_key = key
        weight = module._parameters["weight"]
        wkey = (weight.data_ptr(), weight._version)
        if wkey != self.vals_key:
            self.vals = ops.gather(weight.detach(), self.packed.rowptr, self.packed.cols)
            self.vals_key = wkey
            self.vals_epoch += 1
        return self.packed

    def transposed_vals(self, ops) -> torch.Tensor:
        """The kept weights in CSC order (W^T's CSR values), for the input gradient: gathered
        once per change of ``vals`` (reading ``vals[perm]`` inside the kernel would miss the
        cache at every entry once the values outgrow it)."""
        if self._vals_t is None or self._vals_t[0] != self.vals_epoch:
            self._vals_t = (self.vals_epoch, ops.permute(self.vals, self.packed.perm))
        return self._vals_t[1]

    def _repack(self, mask: torch.Tensor, ops) -> None:
        old, self.packed = self.packed, Packed.from_mask(mask)
        self.repacks += 1
        self.vals_key = None
        self._vals_t = None
        self.grad_packed = None
        self._coo = None
        buf = self.grad_buffer
        if buf is None:
            return
        if old is not None and not storage_shared(buf) and buf._version == self.grad_version:
            # zero the positions kept under the old mask: the buffer is zero where pruned again
            ops.fill_kept(buf, old.rowptr, old.cols, 0.0)
            self.grad_version = buf._version
        else:
            self.grad_buffer = self.grad_version = None

    def coo_indices(self) -> torch.Tensor:
        if self._coo is None:
            self._coo = self.packed.coo_indices()
        return self._coo

    def clean_buffer(self, weight: torch.Tensor, ops) -> torch.Tensor:
        """A dense buffer like ``weight``, zero at every pruned position, that nothing else
        holds: the kept one when it qualifies, else a zeroed one."""
        buf = self.grad_buffer
        if (
            buf is None
            or buf.shape != weight.shape
            or buf.dtype != weight.dtype
            or storage_shared(buf)
        ):
            buf = dense_zeros(weight, ops)
        elif buf._version != self.grad_version:
            buf.zero_()  # changed in place since our last write: pruned zeros not guaranteed
        self.grad_buffer = buf
        return buf

    def wrote_buffer(self, buf: torch.Tensor, packed_grad: torch.Tensor) -> None:
        self.grad_version = buf._version
        self.grad_packed = packed_grad

    def grad_source(self, param: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """(gradient, packed): the packed kept gradients when ``param.grad`` is still exactly
        what the last backward wrote, else ``param.grad`` itself (read at kept positions)."""
        grad = param.grad
        buf = self.grad_buffer
        if (
            self.grad_packed is not None
            and buf is not None
            and grad.data_ptr() == buf.data_ptr()
            and grad.shape == buf.shape
            and buf._version == self.grad_version
        ):
            return self.grad_packed, True
        grad = grad.detach()
        if grad.layout != torch.strided:
            grad = grad.to_dense()
        return grad.contiguous(), False

    def stepped(self, weight: torch.Tensor) -> None:
        """After a fused optimizer step wrote the weight and ``vals`` together."""
        self.vals_key = (weight.data_ptr(), weight._version)
        self.vals_epoch += 1
