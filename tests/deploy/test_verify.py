"""Never slower end to end: verify_ times the whole model as it is served and pins layers to
dense where their choice, made alone, loses in the model. A path that is fast alone but slow in
context is simulated by a path that sleeps while its dispatcher's timer calls it faster."""

import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsetorch.deploy import PATHS, Dispatcher, SparseLinear, sparsify_, verify_
from sparsetorch.deploy.compute_paths import DensePath


class _Sleepy(DensePath):
    """Computes what dense computes, then sleeps: slow in any model."""

    name = "sleepy"

    def __call__(self, x):
        time.sleep(0.004)
        return F.linear(x, self.weight, self.bias)


class _Twin(DensePath):
    """Computes exactly what dense computes, as fast."""

    name = "twin"


def _liar(fn):
    """The per-layer timer: every sparse path 'measures' twice as fast as dense."""
    return 1.0 if fn.__defaults__[0].name == "dense" else 0.5


@pytest.fixture
def paths(monkeypatch):
    monkeypatch.setitem(PATHS._named, "sleepy", _Sleepy)
    monkeypatch.setitem(PATHS._named, "twin", _Twin)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8)
    )


def _swap(model, per_layer):
    d = Dispatcher(timer=_liar, cache_file=None)
    for i, path in per_layer.items():
        model[i] = SparseLinear(model[i], ["dense", path], d, name=str(i))
    return model


def test_a_layer_slower_in_context_is_pinned_to_dense(paths):
    model = _swap(_model(), {0: "sleepy", 2: "twin", 4: "sleepy"})
    x = torch.randn(4, 16)
    expected = model(x)
    result = verify_(model, lambda m: m(x), "eager", target_seconds=0.05, repeats=3)
    assert {"0", "4"} <= set(result.reverted)  # the sleeping layers lost in the model
    assert model[0].choices == {4: "dense"} and model[4].choices == {4: "dense"}
    assert model[2].choices[4] in ("twin", "dense")
    assert result.sparse_seconds <= 0.5 * result.tried[1][1]  # far below "as chosen"
    assert [what for what, _ in result.tried][:2] == ["all dense", "as chosen"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    assert "verified in eager mode" in str(result)


def test_other_buckets_keep_their_choice(paths):
    model = _swap(_model(), {0: "sleepy"})
    with torch.no_grad():
        model(torch.randn(1, 16))  # bucket 1 chooses sleepy (the liar says it is faster)
    x = torch.randn(4, 16)
    verify_(model, lambda m: m(x), "eager", target_seconds=0.05, repeats=3)
    assert model[0].choices == {1: "sleepy", 4: "dense"}  # only the verified bucket is pinned
    assert set(model[0].chosen) == {1, 4}


def test_tune_and_compact_follow_the_pinned_choice(paths):
    """verify_ pins a bucket's choice; tune reports and compact_ keeps what then runs (before,
    both read a stale record: compact_ dropped dense and the next call raised KeyError)."""
    model = _swap(_model(), {0: "sleepy", 2: "twin", 4: "sleepy"})
    x = torch.randn(4, 16)
    assert model[0].tune([4]) == {4: "sleepy"}
    verify_(model, lambda m: m(x), "eager", target_seconds=0.05, repeats=3)
    assert model[0].tune([4]) == {4: "dense"} and model[0].chosen == {4: "dense"}
    expected = model(x)
    for i in (0, 2, 4):
        model[i].compact_()
    assert [list(model[i].paths) for i in (0, 4)] == [["dense"], ["dense"]]
    assert list(model[2].paths) == [model[2].choices[4]]  # twin, or dense if pinned too
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_nothing_sparse_chosen_measures_once(paths):
    model = _swap(_model(), {})
    result = verify_(model, lambda m: m(torch.randn(2, 16)), "eager", target_seconds=0.02)
    assert [what for what, _ in result.tried] == ["all dense"] and result.speedup == 1.0


def test_sparsify_with_example_inputs_verifies_in_the_whole_model(paths):
    model = _model()
    x = torch.randn(4, 16)
    report = sparsify_(
        model,
        "csr",
        paths=["dense", "sleepy"],
        dispatcher=Dispatcher(timer=_liar, cache_file=None),
        example_inputs=(x,),
    )
    assert report.verification is not None and report.verification.mode == "eager"
    assert {"0", "2", "4"} == set(report.verification.reverted)
    assert all(model[i].choices == {4: "dense"} for i in (0, 2, 4))
    assert "verified in eager mode" in str(report)


def test_compile_mode_traces_the_kept_choices(paths):
    model = _swap(_model(), {0: "sleepy", 2: "twin"})
    x = torch.randn(4, 16)
    result = verify_(
        model, lambda m: m(x), "compile", target_seconds=0.05, repeats=3,
        compile_kwargs={"backend": "eager"},  # time.sleep breaks the graph: runs eagerly
    )  # fmt: skip
    assert "0" in result.reverted and model[0].choices == {4: "dense"}


class _Stepper(nn.Module):
    """A model served through a method that is not forward, as a decode step is."""

    def __init__(self):
        super().__init__()
        self.body = _model()

    def step(self, x):
        return self.body[4](self.body[2](self.body[0](x)))


def test_compile_mode_traces_a_workload_that_does_not_call_forward(paths):
    from torch._dynamo.testing import CompileCounter

    model = _Stepper()
    _swap(model.body, {0: "twin", 2: "twin", 4: "twin"})
    counter = CompileCounter()
    x = torch.randn(4, 16)
    verify_(
        model, lambda m: m.step(x), "compile", target_seconds=0.02, repeats=2,
        compile_kwargs={"backend": counter},
    )  # fmt: skip
    # torch.compile(model).step(x) would run eagerly: nothing traced, no frame counted
    assert counter.frame_count >= 1 and counter.op_count >= 3


def test_bad_arguments():
    model = _model()
    with pytest.raises(ValueError, match="mode must be one of eager, graph, compile"):
        verify_(model, lambda m: m, "jit")
    with pytest.raises(ValueError, match="serve must be one of"):
        sparsify_(model, "csr", serve="onnx")
    with pytest.raises(ValueError, match="not both"):
        sparsify_(model, "csr", example_inputs=(1,), workload=lambda m: m)
