"""Every compute path that runs on this machine takes the inputs models give their layers:
row slices (``hidden[:, 0, :]``, a classifier's input; ``hidden[:, -1:, :]``, a language
model head's during ``generate``) and transposed views, not only contiguous tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsetorch.deploy import PATHS, Dispatcher, SparseLinear

G = torch.Generator().manual_seed(0)
WEIGHT = torch.randn(24, 40, generator=G) * (torch.rand(24, 40, generator=G) < 0.2)
BIAS = torch.randn(24, generator=G)
RUNNABLE = [n for n in PATHS.names() if PATHS.lookup(n).unsupported(WEIGHT) is None]


def strided_inputs() -> dict[str, torch.Tensor]:
    hidden = torch.randn(5, 7, 40, generator=G)
    return {
        "first token of each row": hidden[:, 0, :],  # (5, 40), row stride 7*40
        "every other column block": torch.randn(5, 80, generator=G)[:, ::2],
        "transposed": torch.randn(40, 5, generator=G).t(),
        "one row of a batch": hidden[2, 3:4, :],
        "one row, strided": torch.randn(40, 3, generator=G)[:, 1:2].t(),  # stride (1, 3)
    }


@pytest.mark.parametrize("name", RUNNABLE)
@pytest.mark.parametrize("what", list(strided_inputs()))
def test_path_equals_f_linear_on_non_contiguous_inputs(name, what):
    x = strided_inputs()[what]
    assert not x.is_contiguous() or what == "one row of a batch"
    path = PATHS.lookup(name)(WEIGHT, BIAS)
    torch.testing.assert_close(path(x), F.linear(x, WEIGHT, BIAS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", RUNNABLE)
def test_path_gives_an_empty_output_for_an_empty_batch(name):
    out = PATHS.lookup(name)(WEIGHT, BIAS)(torch.zeros(0, 40))
    assert out.shape == (0, 24) and out.dtype == WEIGHT.dtype


@pytest.mark.parametrize("name", RUNNABLE)
def test_a_sparse_linear_takes_the_slices_heads_are_given(name):
    linear = nn.Linear(40, 24)
    with torch.no_grad():
        linear.weight.copy_(WEIGHT)
        linear.bias.copy_(BIAS)
    layer = SparseLinear(linear, [name], Dispatcher(cache_file=None))
    hidden = torch.randn(3, 9, 40, generator=G)
    with torch.no_grad():
        for x in (hidden[:, -1:, :], hidden[:, 0, :]):  # generate's LM head, a classifier
            torch.testing.assert_close(layer(x), F.linear(x, WEIGHT, BIAS), rtol=1e-5, atol=1e-5)
