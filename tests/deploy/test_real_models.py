"""sparsify_ on models as users build them: MultiheadAttention (its parent reads out_proj's
weight), convolutions, copies and pickles of sparsified models, and a first call that stays
bounded (layers of one shape and similar density share one measurement; a time budget)."""

import copy
import pickle
import time

import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.deploy import PATHS, Dispatcher, SparseLinear, sparsify_
from sparsetorch.deploy.compute_paths import TorchCSRPath
from sparsetorch.deploy.dispatch import default_timer, density_bucket
from sparsetorch.deploy.sparsify import CONV_REASON, engines
from tests.kernels.test_nm_reference import random_2to4


def _pruned(model: nn.Module, sparsity: float = 0.8) -> nn.Module:
    st.prune(model, sparsity=sparsity, distribution="uniform")
    st.remove_masks(model)
    return model


class _FixedTimer:
    """Sparse paths 'measure' faster than dense (no timing); records each timed path.
    A class at module level: a dispatcher holding it pickles."""

    def __init__(self, calls: list | None = None) -> None:
        self.calls = calls

    def __call__(self, fn) -> float:
        name = fn.__defaults__[0].name
        if self.calls is not None:
            self.calls.append(name)
        return 1.0 if name == "dense" else 0.5


_fixed_timer = _FixedTimer


def _with_density(lin: nn.Linear, density: float) -> nn.Linear:
    """Keep exactly round(density * numel) weights (the largest random scores)."""
    w = lin.weight
    keep = torch.zeros(w.numel(), dtype=torch.bool)
    keep[torch.randperm(w.numel())[: round(density * w.numel())]] = True
    with torch.no_grad():
        w.mul_(keep.view_as(w))
    return lin


def _encoder() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True, dropout=0.0)
    return _pruned(layer).eval()


def test_encoder_with_multihead_attention_runs_and_reports_out_proj_dense():
    model = _encoder()
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        expected = model(x)
        report = sparsify_(
            model, "csr", dispatcher=Dispatcher(timer=_fixed_timer(), cache_file=None)
        )
        got = model(x)
    assert not report.swapped  # the inference fast path reads every Linear's weight itself
    assert "nn.MultiheadAttention" in report.skipped["self_attn.out_proj"]
    assert "fast path" in report.skipped["linear1"] and "fast path" in report.skipped["linear2"]
    assert isinstance(model.self_attn.out_proj, nn.Linear)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_encoder_without_the_fast_path_runs_its_mlp_sparse():
    model = _encoder()
    x = torch.randn(2, 5, 32)
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            expected = model(x)
            d = Dispatcher(timer=_fixed_timer(), cache_file=None)
            report = sparsify_(model, "csr", dispatcher=d)
            got = model(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(before)
    assert set(report.swapped) == {"linear1", "linear2"}
    assert isinstance(model.linear1, SparseLinear) and model.linear1.choices  # it ran
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_sparse_layer_inside_multihead_attention_exposes_the_weight_its_parent_reads():
    model = _encoder()
    mha = model.self_attn
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        expected = mha(x, x, x)[0]
        dense_w = mha.out_proj.weight.detach().clone()
        mha.out_proj = SparseLinear(mha.out_proj, ["csr"], Dispatcher(cache_file=None))
        assert torch.equal(mha.out_proj.weight, dense_w)  # rebuilt from CSR, bit for bit
        torch.testing.assert_close(mha(x, x, x)[0], expected, rtol=0, atol=0)
    with pytest.raises((AttributeError, KeyError), match="weight"):
        mha.out_proj.weight = nn.Parameter(dense_w)  # read-only


def test_convolutions_are_reported_as_staying_dense():
    torch.manual_seed(0)
    model = _pruned(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        report = sparsify_(
            model, "csr", dispatcher=Dispatcher(timer=_fixed_timer(), cache_file=None)
        )
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert report.skipped == {"0": CONV_REASON} and list(report.swapped) == ["2"]
    assert "0: dense (a convolution" in str(report)
    skip_convs = sparsify_(
        _pruned(nn.Sequential(nn.Conv1d(2, 2, 1))), "csr", filter_fn=lambda m, n: False
    )
    assert skip_convs.skipped == {}  # filter_fn decides what is reported too


@pytest.mark.parametrize("config, paths", [("csr", None), ("2:4", ["dense", "nm_reference"])])
def test_deepcopy_and_pickle_of_a_sparsified_model(config, paths):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.copy_(random_2to4(*layer.weight.shape, seed=layer.in_features))
    dispatcher = Dispatcher(timer=_fixed_timer(), cache_file=None)
    sparsify_(model, config, paths=paths, dispatcher=dispatcher)
    x = torch.randn(3, 32)
    with torch.no_grad():
        expected = model(x)  # measures: choices are made
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert clone[0].choices == model[0].choices and clone[0].choices
            assert clone[0].paths.keys() == model[0].paths.keys()
            assert clone[0].paths is not model[0].paths
            assert torch.equal(clone(x), expected)
            assert torch.equal(clone[0].weight, model[0].weight)
    copied = copy.deepcopy(model)
    with torch.no_grad():
        copied[0].paths["dense"].weight.zero_()
        assert torch.equal(model(x), expected)  # the copy shares no storage with the original


def test_density_buckets():
    assert density_bucket(0.0) == "0"
    assert density_bucket(1.0) == "1" and density_bucket(0.5) == "0.5"
    assert density_bucket(0.1) == "0.105"  # 2^(-13/4)
    assert density_bucket(0.1) == density_bucket(0.108) != density_bucket(0.125)
    assert density_bucket(0.01) != density_bucket(0.1)


def test_layers_of_one_shape_and_similar_density_share_one_measurement():
    """Twelve blocks of two shapes at 10-11% density: one measurement per (shape, candidate)
    and M bucket, not one per layer."""
    torch.manual_seed(0)
    blocks = []
    for i in range(12):
        fc1 = _with_density(nn.Linear(32, 64), 0.10 + 0.001 * i)  # one density bucket
        fc2 = _with_density(nn.Linear(64, 32), 0.10 + 0.001 * i)
        blocks += [fc1, nn.ReLU(), fc2]
    model = nn.Sequential(*blocks)
    calls: list[str] = []
    sparsify_(model, "csr", dispatcher=Dispatcher(timer=_fixed_timer(calls), cache_file=None))
    with torch.no_grad():
        model(torch.randn(4, 32))
    live = ["dense"] + [  # the csr engines this machine runs (cpu_sparse where its kernels build)
        name for name in engines("csr") if PATHS.lookup(name).unsupported(model[0].weight) is None
    ]
    assert {"csr", "csr_torch"} <= set(live)
    assert sorted(calls) == sorted(live * 2)  # 2 shapes, 1 bucket
    keys = {layer.layer_key for layer in model if isinstance(layer, SparseLinear)}
    assert len(keys) == 2
    other = SparseLinear(_with_density(nn.Linear(32, 64), 0.5), live, Dispatcher())
    assert other.layer_key.split("|density")[0] == model[0].layer_key.split("|density")[0]
    assert other.layer_key != model[0].layer_key  # another density: measured anew


def test_time_budget_stops_measuring_and_keeps_dense_out_of_the_disk_cache(tmp_path):
    cache = tmp_path / "d.json"
    calls: list[str] = []
    d = Dispatcher(timer=_fixed_timer(calls), cache_file=cache, time_budget=0.0)
    lin = nn.Linear(16, 8)
    layer = SparseLinear(lin, ["dense", "csr"], d)
    assert layer.tune([1, 4]) == {1: "dense", 4: "dense"} and calls == []
    assert not cache.exists() or cache.read_text().strip() == "{}"
    # a dispatcher with time measures those buckets
    d2 = Dispatcher(timer=_fixed_timer(calls), cache_file=cache)
    assert SparseLinear(lin, ["dense", "csr"], d2).tune([1]) == {1: "csr"}
    with pytest.raises(ValueError, match="time_budget"):
        Dispatcher(time_budget=-1)


def test_default_timer_spends_about_its_target_per_candidate():
    count = []

    def slow():
        count.append(1)
        time.sleep(0.02)

    default_timer(slow, target=0.05)  # one call per batch: 2 warm-ups + 1 + 5 batches of 1
    assert len(count) == 8
    count.clear()
    assert default_timer(slow, target=0.01) >= 0.02  # one call is over the target: timed once
    assert len(count) == 2


def test_a_registered_path_naming_a_config_joins_its_candidates(monkeypatch):
    class MyCSR(TorchCSRPath):
        name = "my_csr"
        configs = ("csr",)

    monkeypatch.setitem(PATHS._named, "my_csr", MyCSR)
    assert engines("csr") == ("csr", "csr_torch", "cpu_sparse", "my_csr")
    assert engines("2:4") == (
        "semi_structured",
        "cslt",
        "cslt_graph",
        "nm_triton",
        "nm_triton_graph",
    )
    lin = _pruned(nn.Linear(16, 8))
    report = sparsify_(
        nn.Sequential(lin), "csr", dispatcher=Dispatcher(timer=_fixed_timer(), cache_file=None)
    )
    live = [n for n in engines("csr") if PATHS.lookup(n).unsupported(lin.weight) is None]
    assert report.swapped["0"] == ["dense", *live] and live[-1] == "my_csr"


@pytest.mark.parametrize("bias", [True, False])
def test_torch_csr_path_equals_dense_and_rebuilds_its_weight(bias):
    torch.manual_seed(0)
    w = torch.randn(24, 40) * (torch.rand(24, 40) < 0.2) + 0.0
    b = torch.randn(24) if bias else None
    path = TorchCSRPath(w, b)
    x = torch.randn(5, 40)
    torch.testing.assert_close(path(x), torch.nn.functional.linear(x, w, b), rtol=1e-5, atol=1e-5)
    assert torch.equal(path.dense_weight(), w)
    assert path.nbytes() == int((w != 0).sum()) * (4 + 8) + 25 * 8  # values, cols, row ptrs


def test_a_parametrized_linear_is_swapped_with_its_computed_weight():
    from torch.nn.utils import parametrize

    class Doubled(nn.Module):
        def forward(self, w):
            return 2 * w

    torch.manual_seed(0)
    model = _pruned(nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8)))
    parametrize.register_parametrization(model[0], "weight", Doubled())
    x = torch.randn(3, 32)
    with torch.no_grad():
        expected = model(x)
        report = sparsify_(
            model, "csr", dispatcher=Dispatcher(timer=_fixed_timer(), cache_file=None)
        )
        assert set(report.swapped) == {"0", "2"} and not report.skipped
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert model[0].chosen == {3: "csr"}


def test_set_choices_given_the_layer_s_own_choices_keeps_them():
    layer = SparseLinear(_with_density(nn.Linear(8, 4), 0.5), ["dense", "csr"],
                         Dispatcher(timer=_fixed_timer(), cache_file=None))  # fmt: skip
    with torch.no_grad():
        layer(torch.randn(2, 8))
    layer.set_choices(layer.choices)
    assert layer.choices == {2: "csr"} and layer.chosen == {2: "csr"}
