import json

import pytest
import torch
from torch import nn

from sparsetorch.deploy import Dispatcher, SparseLinear, m_bucket, sparsify_
from sparsetorch.deploy.dispatch import default_timer
from tests.kernels.test_nm_reference import random_2to4


class FakePath:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def __call__(self, x):
        self.log.append(self.name)
        return x


def fake_timer(times):
    def timer(fn):
        log = []
        fn.__defaults__[0].log = log  # the path called by the probe
        fn()
        return times[log[0]]

    return timer


def _paths(names):
    log = []
    return {n: FakePath(n, log) for n in names}


def test_m_bucket():
    assert [m_bucket(m) for m in (1, 2, 3, 16, 17, 2048)] == [1, 2, 4, 16, 32, 2048]


def test_picks_fastest_and_caches(tmp_path):
    cache = tmp_path / "d.json"
    d = Dispatcher(timer=fake_timer({"dense": 2.0, "a": 1.0, "b": 1.5}), cache_file=cache)
    x = torch.zeros(5, 8)
    assert d.choose("L", _paths(["dense", "a", "b"]), x) == "a"
    stored = json.loads(cache.read_text())
    (key,) = stored
    assert key.endswith("|L|M8") and stored[key]["choice"] == "a"
    # a second dispatcher reads the cache and never measures
    d2 = Dispatcher(timer=lambda fn: pytest.fail("measured again"), cache_file=cache)
    assert d2.choose("L", _paths(["dense", "a", "b"]), torch.zeros(7, 8)) == "a"


def test_falls_back_to_dense_when_sparse_is_slower(tmp_path):
    d = Dispatcher(timer=fake_timer({"dense": 1.0, "a": 1.2}), cache_file=None)
    assert d.choose("L", _paths(["dense", "a"]), torch.zeros(1, 8)) == "dense"
    # margin: sparse must beat dense by the margin
    d = Dispatcher(timer=fake_timer({"dense": 1.0, "a": 0.97}), cache_file=None, margin=1.05)
    assert d.choose("L", _paths(["dense", "a"]), torch.zeros(1, 8)) == "dense"


def test_buckets_are_measured_separately():
    calls = []

    def timer(fn):
        calls.append(1)
        return 1.0

    d = Dispatcher(timer=timer, cache_file=None)
    paths = _paths(["dense"])
    for m in (1, 1, 2, 3, 4, 5):
        d.choose("L", paths, torch.zeros(m, 4))
    assert len(calls) == 4  # buckets 1, 2, 4, 8


def test_corrupt_cache_is_remeasured(tmp_path):
    cache = tmp_path / "d.json"
    cache.write_text("{not json")
    d = Dispatcher(timer=fake_timer({"dense": 1.0, "a": 0.5}), cache_file=cache)
    assert d.choose("L", _paths(["dense", "a"]), torch.zeros(2, 8)) == "a"


def _model(w1, w2):
    model = nn.Sequential(nn.Linear(w1.shape[1], w1.shape[0]), nn.ReLU(), nn.Linear(w2.shape[1], 3))
    with torch.no_grad():
        model[0].weight.copy_(w1)
        model[2].weight.copy_(w2)
    return model


def test_sparsify_csr_equals_dense_on_cpu(tmp_path):
    w1 = torch.randn(64, 32) * (torch.rand(64, 32) < 0.1)
    w2 = torch.randn(3, 64) * (torch.rand(3, 64) < 0.1)
    model = _model(w1, w2)
    x = torch.randn(10, 32)
    expected = model(x)
    report = sparsify_(model, "csr", dispatcher=Dispatcher(cache_file=tmp_path / "c.json"))
    assert set(report.swapped) == {"0", "2"} and not report.skipped
    assert isinstance(model[0], SparseLinear)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert set(model[0].chosen.values()) <= {"dense", "csr", "csr_torch", "cpu_sparse"}


def test_sparsify_forced_reference_twin_equals_dense():
    w1 = random_2to4(16, 32)
    w2 = random_2to4(3, 16)
    model = _model(w1, w2)
    x = torch.randn(4, 2, 32)
    expected = model(x)
    report = sparsify_(model, "2:4", paths=["nm_reference"])
    assert report.swapped == {"0": ["nm_reference"], "2": ["nm_reference"]}
    torch.testing.assert_close(model(x), expected)


def test_sparsify_2to4_rejects_invalid_layer_by_name():
    model = _model(torch.randn(16, 32), random_2to4(3, 16))
    with pytest.raises(ValueError, match=r"layer\(s\) 0 are not 2:4"):
        sparsify_(model, "2:4")
    assert isinstance(model[0], nn.Linear)  # model untouched


def test_sparsify_unsupported_shape_stays_dense_with_reason():
    # CPU fp32: no 2:4 engine can run here; every layer stays dense with the reasons listed
    model = _model(random_2to4(16, 32), random_2to4(3, 16))
    report = sparsify_(model, "2:4")
    assert not report.swapped and set(report.skipped) == {"0", "2"}
    assert "needs a CUDA device" in report.skipped["0"]
    assert isinstance(model[0], nn.Linear)


def test_unknown_config():
    with pytest.raises(ValueError, match="known: 2:4, bsr, csr"):
        sparsify_(nn.Linear(4, 4), "3:7")


def test_a_path_that_raises_is_never_chosen():
    class Broken:
        def __call__(self, x):
            raise RuntimeError("CUDA error: operation not supported\nmore")

    def timer(fn):
        fn()
        return 1.0

    d = Dispatcher(timer=timer, cache_file=None)
    paths = {"dense": lambda x: x, "broken": Broken()}
    assert d.choose("L", paths, torch.zeros(1, 4)) == "dense"
    (decision,) = d.decisions.values()
    assert decision["errors"] == {"broken": "CUDA error: operation not supported"}


def _density_timer(calls):
    """csr takes (its weight's density) s, dense 0.5 s: csr wins below 50% density."""

    def timer(fn):
        path = fn.__defaults__[0]
        calls.append(path.name)
        if path.name == "csr":
            return path.weight._nnz() / path.weight.shape[0] / path.weight.shape[1]
        return 0.5

    return timer


def test_same_shape_different_sparsity_is_measured_again(tmp_path):
    # one decision per weight shape would hand the 99%-sparse layer the dense layer's choice
    # (in this process, and from the disk cache in every later one)
    dense_lin, sparse_lin = nn.Linear(64, 32), nn.Linear(64, 32)
    with torch.no_grad():
        sparse_lin.weight.mul_(torch.rand(32, 64) < 0.01)
    calls: list[str] = []
    cache = tmp_path / "d.json"
    d = Dispatcher(timer=_density_timer(calls), cache_file=cache)
    x = torch.randn(4, 64)
    assert SparseLinear(dense_lin, ["dense", "csr"], d).tune([4]) == {4: "dense"}
    assert SparseLinear(sparse_lin, ["dense", "csr"], d).tune([4]) == {4: "csr"}
    assert calls == ["dense", "csr", "dense", "csr"]
    # a later process with the same two layers reads both decisions, measuring nothing
    d2 = Dispatcher(timer=lambda fn: pytest.fail("measured again"), cache_file=cache)
    with torch.no_grad():
        assert SparseLinear(sparse_lin, ["dense", "csr"], d2).tune([4]) == {4: "csr"}
        torch.testing.assert_close(SparseLinear(sparse_lin, ["dense", "csr"], d2)(x), sparse_lin(x))


def test_a_triton_upgrade_changes_the_cuda_environment_key(monkeypatch):
    """Decisions cached on disk are keyed by the Triton version too: our kernels' timings
    change with it, so an upgrade measures again instead of reusing old choices."""
    import sys
    import types

    from sparsetorch.deploy.dispatch import environment_key

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    keys = []
    for version in ("3.6.0", "3.7.0"):
        monkeypatch.setitem(sys.modules, "triton", types.SimpleNamespace(__version__=version))
        keys.append(environment_key(torch.device("cuda", 0)))
    assert keys[0].startswith("Fake GPU|torch ") and keys[0].endswith("|triton 3.6.0")
    assert keys[0] != keys[1]


def test_the_cpu_environment_key_names_the_thread_count():
    from sparsetorch.deploy.dispatch import environment_key

    threads = torch.get_num_threads()
    try:
        keys = []
        for n in (1, 2):
            torch.set_num_threads(n)
            keys.append(environment_key(torch.device("cpu")))
    finally:
        torch.set_num_threads(threads)
    assert ", 1 threads|" in keys[0] and keys[0] != keys[1]


def test_a_timer_of_another_kind_keeps_its_own_decisions(tmp_path):
    """graph_timer (GPU time in a CUDA graph) and the host-inclusive default disagree for small
    M; sharing a cache file, neither may reuse the other's choice."""
    cache = tmp_path / "d.json"
    graph_like = fake_timer({"dense": 2.0, "a": 1.0})
    graph_like.kind = "graph"
    assert (
        Dispatcher(timer=graph_like, cache_file=cache).choose(
            "L", _paths(["dense", "a"]), torch.zeros(1, 8)
        )
        == "a"
    )
    eager = Dispatcher(timer=fake_timer({"dense": 1.0, "a": 2.0}), cache_file=cache)
    assert eager.choose("L", _paths(["dense", "a"]), torch.zeros(1, 8)) == "dense"
    keys = sorted(json.loads(cache.read_text()))
    assert [k.rsplit("|", 1)[-1] for k in keys] == ["M1", "graph"]
    # and each reads its own back without measuring
    again = Dispatcher(timer=lambda fn: pytest.fail("measured again"), cache_file=cache)
    again.timer.kind = "graph"
    assert again.choose("L", _paths(["dense", "a"]), torch.zeros(1, 8)) == "a"


def test_a_chosen_bucket_is_served_without_any_capture_check(monkeypatch):
    """The eager hot path (decode is host bound) is a dictionary lookup once a bucket is
    chosen: no stream-capture query, no dispatcher."""
    from sparsetorch.deploy import sparse_linear

    lin = nn.Linear(32, 16)
    with torch.no_grad():
        lin.weight.copy_(random_2to4(16, 32))
    layer = SparseLinear(lin, ["dense", "nm_reference"], Dispatcher(cache_file=None))
    layer.tune([1, 4])
    monkeypatch.setattr(sparse_linear, "in_outer_graph", lambda x: pytest.fail("checked"))
    layer.dispatcher.choose = lambda *a: pytest.fail("asked the dispatcher")
    with torch.no_grad():
        for m in (1, 3, 4):
            x = torch.randn(m, 32)
            torch.testing.assert_close(layer(x), lin(x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(layer(x[None]), lin(x[None]), rtol=1e-5, atol=1e-5)
    assert set(layer.chosen) == {1, 3, 4}


def test_a_graph_timer_measures_decode_sized_buckets_only(tmp_path):
    graph_like = fake_timer({"dense": 2.0, "a": 1.0})  # in graphs "a" wins
    graph_like.kind = "graph"
    d = Dispatcher(timer=graph_like, cache_file=None)
    assert d.timer_for(64) is graph_like and d.timer_for(65) is default_timer
    d.timer_for = lambda m: graph_like if m <= 64 else fake_timer({"dense": 1.0, "a": 2.0})
    assert d.choose("L", _paths(["dense", "a"]), torch.zeros(64, 8)) == "a"
    assert d.choose("L", _paths(["dense", "a"]), torch.zeros(65, 8)) == "dense"
    assert sorted(k[k.index("|L|") + 1 :] for k in d.decisions) == ["L|M128", "L|M64|graph"]
