"""SparseLinear under torch.compile(fullgraph=True): no graph breaks, no timing while tracing,
the eager choice per M bucket is what the compiled graph runs (CPU; GPU twins in
test_gpu_paths.py)."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend
from torch._subclasses.fake_tensor import FakeTensorMode

from sparsetorch.deploy import Dispatcher, SparseLinear, sparsify_
from sparsetorch.deploy.compute_paths import DensePath, NMReferencePath, NMTritonPath
from sparsetorch.deploy.graphed import GraphedPath
from sparsetorch.formats import NM
from sparsetorch.kernels import nm_linear_reference, nm_triton
from tests.kernels.test_nm_reference import random_2to4


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _linear(n=16, k=32):
    lin = nn.Linear(k, n)
    with torch.no_grad():
        lin.weight.copy_(random_2to4(n, k))
    return lin


def _failing_timer(fn):
    pytest.fail("the dispatcher measured while compiling")


def _compiled(fn, backend="eager"):
    counter = CompileCounterWithBackend(backend)
    return torch.compile(fn, backend=counter, fullgraph=True), counter


def _graph_calls(counter):
    """Names of every call in the FX graphs Dynamo produced."""
    return [str(n.target) for gm in counter.graphs for n in gm.graph.nodes]


@pytest.mark.parametrize("path", ["dense", "nm_reference"])
@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_single_path_layer_compiles_to_one_graph(path, backend):
    lin = _linear()
    layer = SparseLinear(lin, [path], Dispatcher(timer=_failing_timer, cache_file=None))
    x = torch.randn(2, 3, 32)  # (B, T, in): SparseLinear flattens the leading dims
    compiled, counter = _compiled(layer, backend)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), lin(x))
    assert counter.frame_count == 1  # fullgraph=True would have raised on a break
    assert not layer.chosen  # nothing recorded while tracing


def _stepped_timer(fast):
    """A timer under which the path named by ``fast[0]`` takes 1 s and every other 2 s."""

    def timer(fn):
        path = fn.__defaults__[0]  # Dispatcher.choose times ``lambda p=path: p(probe)``
        return 1.0 if path.name == fast[0] else 2.0

    return timer


def test_compile_runs_the_eager_choice_of_each_bucket():
    lin = _linear()
    fast = ["nm_reference"]
    dispatcher = Dispatcher(timer=_stepped_timer(fast), cache_file=None)
    layer = SparseLinear(lin, ["dense", "nm_reference"], dispatcher)
    assert layer.tune([4]) == {4: "nm_reference"}  # bucket 4 (M = 3, 4)
    fast[0] = "dense"
    assert layer.tune([1]) == {4: "nm_reference", 1: "dense"}
    dispatcher.timer = _failing_timer
    decisions = dict(dispatcher.decisions)
    for m, scatters in ((3, True), (1, False), (8, False)):  # M = 8: never measured -> dense
        torch._dynamo.reset()
        compiled, counter = _compiled(layer)
        x = torch.randn(m, 32)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), lin(x))
        # the reference twin decompresses with scatter_; the dense path is one linear
        assert ("scatter_" in _graph_calls(counter)) is scatters, m
    assert dispatcher.decisions == decisions and set(layer.chosen) == {1, 4}


def test_eager_layer_asks_the_dispatcher_once_per_bucket():
    asked = []

    class CountingDispatcher(Dispatcher):
        def choose(self, layer_key, paths, x):
            asked.append(x.shape[0])
            return super().choose(layer_key, paths, x)

    layer = SparseLinear(
        _linear(), ["dense", "nm_reference"], CountingDispatcher(lambda fn: 1.0, cache_file=None)
    )
    with torch.no_grad():
        for m in (3, 4, 3, 1, 4, 2):
            layer(torch.randn(m, 32))
    assert asked == [3, 1, 2]  # buckets 4, 1, 2
    assert layer.chosen == {3: "dense", 4: "dense", 1: "dense", 2: "dense"}


def test_path_tensors_are_static_graph_inputs():
    # cudagraphs (mode="reduce-overhead") copy every non-static input on each replay: the
    # compressed weights must enter the graph as static, like parameters
    model = nn.Sequential(_linear(), nn.GELU())
    sparsify_(model, "2:4", paths=["nm_reference"])
    compiled, counter = _compiled(model)
    with torch.no_grad():
        compiled(torch.randn(3, 32))
    inputs = {
        n.name: n.meta.get("tensor_dict", {}).get("_dynamo_static_input_type")
        for n in counter.graphs[0].graph.nodes
        if n.op == "placeholder"
    }
    path_inputs = {k: v for k, v in inputs.items() if "paths_nm_reference" in k}
    assert len(path_inputs) == 3  # values, meta, bias
    assert all(v is not None for v in path_inputs.values()), inputs


def test_dispatcher_refuses_to_measure_under_compile():
    dispatcher = Dispatcher(timer=lambda fn: 1.0, cache_file=None)
    paths = {"dense": DensePath(torch.eye(4), None)}
    compiled = torch.compile(
        lambda x: dispatcher.choose("L", paths, x), backend="eager", fullgraph=True
    )
    with pytest.raises(Exception, match="eager mode only"):
        compiled(torch.zeros(2, 4))
    assert not dispatcher.decisions


class _GraphedReference(GraphedPath, NMReferencePath):
    name = "graphed_reference"


def test_graphed_path_runs_its_plain_path_while_compiling():
    w, b = random_2to4(16, 32), torch.randn(16)
    path = _GraphedReference(w, b)
    compiled, counter = _compiled(lambda x: path(x))
    x = torch.randn(5, 32)
    torch.testing.assert_close(compiled(x), x @ w.T + b)
    assert path._graphs == {} and counter.frame_count == 1  # no CUDA graph, no break


def test_sparsified_model_compiles_fullgraph():
    model = nn.Sequential(_linear(64, 32), nn.GELU(), _linear(32, 64))
    x = torch.randn(4, 7, 32)
    with torch.no_grad():
        expected = model(x)
        report = sparsify_(model, "2:4", paths=["nm_reference"])
        assert set(report.swapped) == {"0", "2"}
        compiled, counter = _compiled(model, "aot_eager")
        torch.testing.assert_close(compiled(x), expected)
    assert counter.frame_count == 1


def test_triton_op_has_a_fake_implementation():
    w = random_2to4(24, 64)
    nm = NM.from_dense(w, 2, 4)
    values, meta = nm.values, nm.meta
    with FakeTensorMode() as mode:
        x = mode.from_tensor(torch.randn(5, 64))
        y = torch.ops.sparsetorch.nm_linear_2to4(
            x, mode.from_tensor(values), mode.from_tensor(meta), None
        )
    assert y.shape == (5, 24) and y.dtype == torch.float32


def test_triton_path_is_one_opaque_op_in_the_graph(monkeypatch):
    # Dynamo must see torch.ops.sparsetorch.nm_linear_2to4, never Triton's launcher; the op's
    # body (the launch) is swapped for the reference twin so the graph also runs on CPU
    monkeypatch.setattr(nm_triton, "nm_linear_triton", nm_linear_reference)
    lin = _linear()
    layer = SparseLinear(lin, ["nm_triton"], Dispatcher(timer=_failing_timer, cache_file=None))
    compiled, counter = _compiled(layer, "aot_eager")
    x = torch.randn(3, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), lin(x))
    assert counter.frame_count == 1
    assert "sparsetorch.nm_linear_2to4.default" in _graph_calls(counter)


@pytest.mark.skipif(
    not __import__("sparsetorch.kernels.cpu", fromlist=["available"]).available(),
    reason="the compiled CPU kernels did not build on this machine",
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_cpu_kernel_path_is_one_opaque_op_in_the_graph(dtype, backend):
    """The CPU kernels' ops have no fake kernels: traced into, they failed under compile
    ("data is not allocated yet"); the path calls them through one custom op."""
    lin = nn.Linear(64, 48).to(dtype)
    with torch.no_grad():
        lin.weight.mul_(torch.rand(48, 64) < 0.1)
    layer = SparseLinear(lin, ["cpu_sparse"], Dispatcher(timer=_failing_timer, cache_file=None))
    compiled, counter = _compiled(layer, backend)
    with torch.no_grad():
        for m in (1, 8, 13):
            x = torch.randn(m, 64).to(dtype)
            torch.testing.assert_close(compiled(x), layer(x), rtol=0, atol=0)
            torch.testing.assert_close(compiled(x), lin(x), rtol=2e-2, atol=2e-2)
    assert "sparsetorch.cpu_sparse_linear.default" in _graph_calls(counter)


@pytest.mark.skipif(
    not nm_triton.available() or not __import__("os").environ.get("TRITON_INTERPRET"),
    reason="needs Triton; on CPU run with TRITON_INTERPRET=1 (see docs/deploy.md)",
)
def test_triton_op_under_interpreter_equals_reference():
    # the skinny kernel (M > 16); the autotuned GEMV needs a GPU to benchmark its configs
    w, b = random_2to4(8, 128), torch.randn(8)
    nm = NM.from_dense(w, 2, 4)
    values, meta = nm.values, nm.meta
    x = torch.randn(20, 128)
    op = torch.ops.sparsetorch.nm_linear_2to4.default
    torch.testing.assert_close(op(x, values, meta, b), x @ w.T + b, rtol=1e-4, atol=1e-4)
    torch.library.opcheck(
        op, (x, values, meta, None), test_utils=("test_schema", "test_faketensor")
    )
    path = NMTritonPath(w, b)
    compiled, _ = _compiled(lambda x: path(x), "aot_eager")
    torch.testing.assert_close(compiled(x), x @ w.T + b, rtol=1e-4, atol=1e-4)


def test_python_blocks_of_the_deploy_docs_run():
    doc = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) == 5
    namespace: dict = {}
    for i, block in enumerate(blocks):  # the eager backend: Dynamo's tracing, no C++ build
        code = block.replace("fullgraph=True)", 'fullgraph=True, backend="eager")')
        exec(compile(code, f"{doc}:block{i}", "exec"), namespace)
    assert isinstance(namespace["model"][0], SparseLinear)
    assert isinstance(namespace["served"][0], SparseLinear)
    assert namespace["report"].verification.mode == "eager"
