"""SparseAttention: the same block as torch's MultiheadAttention with the pattern as mask."""

import pytest
import torch
from torch import nn

import sparsetorch.attention as A


def _pair(pattern, embed=32, heads=4, dropout=0.0):
    ours = A.SparseAttention(embed, heads, pattern, backend="reference", dropout=dropout)
    theirs = nn.MultiheadAttention(embed, heads, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.proj.weight)
        theirs.out_proj.bias.copy_(ours.proj.bias)
    return ours, theirs


@pytest.mark.parametrize(
    "pattern", [A.causal() & A.local(4), A.local(3) | A.global_tokens([0]), A.strided(5)], ids=repr
)
def test_equals_multihead_attention_with_the_pattern_as_mask(pattern):
    n = 45
    ours, theirs = _pair(pattern)
    x = torch.randn(3, n, 32)
    expected, _ = theirs(x, x, x, attn_mask=~pattern.mask(n), need_weights=False)  # True = blocked
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=0)


def test_accepts_pattern_strings_and_reports_them():
    block = A.SparseAttention(16, 2, "causal() & local(8)")
    assert block.pattern == A.band(0, 8)
    assert "band(0, 8)" in repr(block)


def test_dropout_acts_on_the_output_in_training_only():
    torch.manual_seed(0)
    block = A.SparseAttention(16, 2, A.local(2), backend="reference", dropout=0.5)
    x = torch.randn(2, 10, 16)
    block.eval()
    a, b = block(x), block(x)
    assert torch.equal(a, b)
    block.train()
    y = block(x)
    dropped = y == 0
    assert 0.3 < dropped.float().mean() < 0.7
    torch.testing.assert_close(y[~dropped], 2 * a[~dropped])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embed_dim": 30, "num_heads": 4}, "multiple of num_heads"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"backend": "magic"}, "unknown attention backend"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"embed_dim": 32, "num_heads": 4, "pattern": A.causal(), **kwargs}
    with pytest.raises(ValueError, match=message):
        A.SparseAttention(**args)


def test_a_wrong_input_shape_is_one_clear_error():
    block = A.SparseAttention(16, 2, A.local(2))
    for shape in ((2, 5, 8), (5, 16), (1, 2, 5, 16)):
        with pytest.raises(ValueError, match=r"x of shape \(batch, n, embed_dim=16\), got"):
            block(torch.zeros(shape))
