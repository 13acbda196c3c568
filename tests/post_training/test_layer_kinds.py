"""One-shot pruning reads how a layer is laid out from the one registry of prunable kinds."""

from __future__ import annotations

import torch
from torch import nn

import sparsetorch as st
from sparsetorch.masking.prunable import register_prunable, unregister_prunable
from sparsetorch.post_training.layers import block_layers


class FrozenLinear(nn.Linear):
    """A Linear subclass a user declares as kept dense."""


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = FrozenLinear(16, 8)
        self.emb = nn.Embedding(10, 8)  # a 2-D weight, but a lookup: never a matrix layer
        self.conv = nn.Conv1d(8, 8, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_a_type_registered_as_dense_is_left_alone_and_others_follow_the_registry():
    block = Block()
    assert [layer.fqn for layer in block_layers("blk", block, None)] == ["blk.a", "blk.b"]
    register_prunable(FrozenLinear, params=())
    try:
        layers = block_layers("blk", block, None)
        assert [layer.fqn for layer in layers] == ["blk.a"]
        calibration = [torch.randn(4, 8) for _ in range(2)]
        st.oneshot(nn.Sequential(block), "wanda", calibration=calibration, sparsity=0.5)
        assert st.masks(block).keys() == {"a.weight"}
        assert bool((block.b.weight != 0).all())  # untouched
        assert (block.a.weight == 0).float().mean().item() == 0.5
    finally:
        unregister_prunable(FrozenLinear)


def test_a_registered_reduction_axis_is_the_one_its_rows_use():
    block = Block()
    register_prunable(FrozenLinear, in_dim=0)  # as if stored (in, out), like Conv1D
    try:
        layer = {lay.fqn: lay for lay in block_layers("", block, None)}["b"]
        assert layer.in_dim == 0
        assert torch.equal(layer.rows(), block.b.weight.detach().t())
    finally:
        unregister_prunable(FrozenLinear)
