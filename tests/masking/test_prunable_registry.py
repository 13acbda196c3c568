"""The registry of prunable kinds: which weights of which module types are pruned, along which
axis, and what is reported as uncovered."""

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.masking import (
    in_dim_of,
    kind_of,
    prunable_parameters,
    register_prunable,
    uncovered_weights,
    unregister_prunable,
)


class Conv1D(nn.Module):
    """transformers' Conv1D, as GPT-2 uses it: ``x @ weight + bias`` with weight (in, out)."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(
            *x.shape[:-1], self.nf
        )


Conv1D.__module__ = "transformers.pytorch_utils"  # the path the registry matches, no import


def names(model, **kwargs):
    return [full for full, _, _ in prunable_parameters(model, **kwargs)]


def test_builtin_kinds_and_their_axes():
    model = nn.ModuleDict(
        {
            "linear": nn.Linear(4, 3),
            "conv": nn.Conv2d(4, 8, 3, groups=2),
            "depthwise": nn.Conv1d(4, 4, 3, groups=4),
            "deconv": nn.ConvTranspose2d(4, 6, 2),
            "hf": Conv1D(6, 4),
            "mha": nn.MultiheadAttention(8, 2),
            "mha_kv": nn.MultiheadAttention(8, 2, kdim=4, vdim=6),
            "embed": nn.Embedding(10, 4),
            "norm": nn.LayerNorm(4),
        }
    )
    assert names(model) == [
        "linear.weight",
        "conv.weight",
        "depthwise.weight",
        "deconv.weight",
        "hf.weight",
        "mha.in_proj_weight",
        "mha.out_proj.weight",  # a Linear subclass: covered through the MRO
        "mha_kv.q_proj_weight",
        "mha_kv.k_proj_weight",
        "mha_kv.v_proj_weight",
        "mha_kv.out_proj.weight",
        "embed.weight",
    ]
    axes = {full: in_dim_of(m, n) for full, m, n in prunable_parameters(model)}
    assert axes["hf.weight"] == 0 and axes["deconv.weight"] == 0
    assert all(a == 1 for f, a in axes.items() if f not in ("hf.weight", "deconv.weight"))
    assert kind_of(model["norm"]) is None and uncovered_weights(model) == []


def test_conv1d_is_matched_without_importing_transformers():
    code = (
        "import sys, torch, sparsetorch as st\n"
        "from torch import nn\n"
        "m = nn.Linear(4, 4)\n"
        "st.prune(m, 0.5)\n"
        "print('transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_registered_type_is_pruned_reported_and_restorable():
    class Bilinear2(nn.Module):  # a custom layer whose weight (out, a, b) reduces over dim 2
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 4, 8))

    model = nn.Sequential(nn.Linear(8, 8), Bilinear2())
    assert uncovered_weights(model) == [("1.w", torch.Size([3, 4, 8]))]
    with pytest.warns(UserWarning, match=r"1 weight\(s\) of 2\+ dims .*1\.w \(3, 4, 8\)"):
        st.prune(model, 0.5)
    assert list(st.masks(model)) == ["0.weight"]

    old = register_prunable(Bilinear2, "w", in_dim=2)
    try:
        assert old is None and uncovered_weights(model) == []
        model = nn.Sequential(nn.Linear(8, 8), Bilinear2())
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing uncovered any more: no warning
            st.prune(model, pattern="2:4")
        mask = st.masks(model)["1.w"]
        groups = mask.reshape(3, 4, 2, 4).sum(-1)  # 4 consecutive along dim 2
        assert bool((groups == 2).all())
    finally:
        unregister_prunable(Bilinear2)
    assert kind_of(Bilinear2()) is None


def test_params_empty_marks_a_type_known_and_dense():
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8))
    old = register_prunable(nn.Embedding, params=())
    try:
        assert names(model) == ["1.weight"] and uncovered_weights(model) == []
    finally:
        register_prunable(nn.Embedding, old.params, old.in_dim, old.macs)
    assert names(model) == ["0.weight", "1.weight"]


def test_uncovered_parameters_are_listed_once():
    class ViTish(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(1, 5, 8))
            self.cls = nn.Parameter(torch.zeros(1, 1, 8))
            self.scale = nn.Parameter(torch.ones(8))  # 1-D: never a weight to report
            self.head = nn.Linear(8, 2)
            self.alias = self.pos

    assert [n for n, _ in uncovered_weights(ViTish())] == ["pos", "cls"]


def test_bad_registrations():
    with pytest.raises(TypeError, match="module_type must be"):
        register_prunable("Conv1D")  # a bare name: no dotted path
    with pytest.raises(TypeError, match="module_type must be"):
        register_prunable(int)
    with pytest.raises(ValueError, match="in_dim must be an int >= 0"):
        register_prunable(nn.Linear, in_dim=-1)
    assert kind_of(nn.Linear(2, 2)).in_dim == 1  # a failed call changes nothing
