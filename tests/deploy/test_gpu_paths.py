"""GPU paths equal the dense result (run on the GPU machine: pytest -m gpu tests/deploy)."""

import copy

import pytest
import torch
from torch import nn

from sparsetorch.deploy import PATHS, Dispatcher, SparseLinear, sparsify_
from sparsetorch.deploy.graphed import capture
from tests.kernels.test_nm_reference import random_2to4

pytestmark = pytest.mark.gpu

DEV = "cuda"


def _weight_2to4(n=256, k=512, dtype=torch.bfloat16):
    return random_2to4(n, k).to(device=DEV, dtype=dtype)


@pytest.mark.parametrize(
    "name",
    ["semi_structured", "cslt", "cslt_graph", "nm_triton", "nm_triton_graph", "nm_reference"],
)
@pytest.mark.parametrize("m", [1, 3, 8, 16, 128, 1000])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_2to4_paths_equal_dense(name, m, dtype):
    w = _weight_2to4(dtype=dtype)
    b = torch.randn(w.shape[0], device=DEV, dtype=dtype)
    reason = PATHS.lookup(name).unsupported(w)
    assert reason is None, reason
    path = PATHS.lookup(name)(w, b)
    x = torch.randn(m, w.shape[1], device=DEV, dtype=dtype)
    expected = torch.nn.functional.linear(x.float(), w.float(), b.float())
    torch.testing.assert_close(path(x).float(), expected, rtol=2e-2, atol=2e-1)


def test_bsr_and_csr_paths_equal_dense():
    w = torch.randn(256, 512, device=DEV)
    blocks = torch.rand(4, 8, device=DEV) < 0.2
    w = w * blocks.repeat_interleave(64, 0).repeat_interleave(64, 1)
    x = torch.randn(33, 512, device=DEV)
    for name, dtype, tol in (("bsr", torch.bfloat16, 2e-1), ("csr", torch.float32, 1e-4)):
        wd = w.to(dtype)
        path = PATHS.lookup(name)(wd, None)
        expected = x.to(dtype).float() @ wd.float().T
        torch.testing.assert_close(path(x.to(dtype)).float(), expected, rtol=2e-2, atol=tol)


def test_sparsify_on_gpu_never_slower_choice_and_equal(tmp_path):
    model = nn.Sequential(nn.Linear(512, 256), nn.GELU(), nn.Linear(256, 512))
    model = model.to(DEV, torch.bfloat16)
    with torch.no_grad():
        model[0].weight.copy_(_weight_2to4(256, 512))
        model[2].weight.copy_(_weight_2to4(512, 256))
    x = torch.randn(64, 512, device=DEV, dtype=torch.bfloat16)
    expected = model(x).float()
    report = sparsify_(model, "2:4", dispatcher=Dispatcher(cache_file=tmp_path / "d.json"))
    assert set(report.swapped) == {"0", "2"}
    torch.testing.assert_close(model(x).float(), expected, rtol=2e-2, atol=2e-1)
    decisions = model[0].dispatcher.decisions
    for d in decisions.values():
        assert d["seconds"][d["choice"]] <= d["seconds"]["dense"]


def _expected(x, w, b):
    return torch.nn.functional.linear(x.float(), w.float(), None if b is None else b.float())


@pytest.mark.parametrize("name", ["nm_triton_graph", "cslt_graph"])
def test_graphed_replay_keeps_each_result(name):
    # one graph per bucket: a second call of the same bucket must not overwrite the first result
    w = _weight_2to4()
    path = PATHS.lookup(name)(w, None)
    x1, x2 = (torch.randn(3, w.shape[1], device=DEV, dtype=torch.bfloat16) for _ in range(2))
    y1 = path(x1)
    y2 = path(x2)
    assert list(path._graphs) == [4]
    for x, y in ((x1, y1), (x2, y2)):
        torch.testing.assert_close(y.float(), _expected(x, w, None), rtol=2e-2, atol=2e-1)


@pytest.mark.parametrize("name", ["nm_triton_graph", "cslt_graph"])
def test_graphed_path_inside_an_outer_graph_runs_plain(name):
    w = _weight_2to4()
    path = PATHS.lookup(name)(w, None)
    static_x = torch.randn(16, w.shape[1], device=DEV, dtype=torch.bfloat16)
    # the warm-ups (outside capture) use the path's own graph; inside the outer capture it runs
    # its plain kernel (a nested replay would make the capture fail)
    graph, static_y = capture(lambda: path(static_x))
    static_x.copy_(torch.randn_like(static_x))
    graph.replay()
    torch.testing.assert_close(static_y.float(), _expected(static_x, w, None), rtol=2e-2, atol=2e-1)


@pytest.mark.parametrize("name", ["dense", "nm_triton", "nm_triton_graph", "cslt", "cslt_graph"])
@pytest.mark.parametrize("m", [1, 24])
def test_single_path_layer_compiles_fullgraph_on_gpu(name, m):
    torch._dynamo.reset()
    lin = nn.Linear(512, 256, device=DEV, dtype=torch.bfloat16)
    with torch.no_grad():
        lin.weight.copy_(_weight_2to4())
    layer = SparseLinear(lin, [name], Dispatcher(cache_file=None))
    x = torch.randn(m, 512, device=DEV, dtype=torch.bfloat16)
    with torch.no_grad():
        layer(x)  # eager first: autotuning and the cuSPARSELt algorithm search
        y = torch.compile(layer, fullgraph=True)(x)
    torch.testing.assert_close(y.float(), _expected(x, lin.weight, lin.bias), rtol=2e-2, atol=2e-1)


def test_sparsified_model_under_reduce_overhead_equals_dense(tmp_path):
    torch._dynamo.reset()
    model = nn.Sequential(nn.Linear(512, 256), nn.GELU(), nn.Linear(256, 512))
    model = model.to(DEV, torch.bfloat16)
    with torch.no_grad():
        model[0].weight.copy_(_weight_2to4(256, 512))
        model[2].weight.copy_(_weight_2to4(512, 256))
    xs = {m: torch.randn(m, 512, device=DEV, dtype=torch.bfloat16) for m in (1, 16)}
    with torch.no_grad():
        expected = {m: model(x).float() for m, x in xs.items()}
        sparsify_(model, "2:4", dispatcher=Dispatcher(cache_file=tmp_path / "d.json"))
        for x in xs.values():
            model(x)  # eager: the dispatcher measures each M bucket once
        decisions = dict(model[0].dispatcher.decisions)
        compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
        for _ in range(3):  # warm-up, record, replay
            for m, x in xs.items():
                torch.testing.assert_close(
                    compiled(x).float().clone(), expected[m], rtol=2e-2, atol=2e-1
                )
    assert model[0].dispatcher.decisions == decisions  # nothing measured under compile


# ---- bsr_triton (kernels/bsr_triton.py) ----------------------------------------------------


def _block_sparse(out=256, inn=512, bs=64, density=0.25, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(out + inn)
    keep = torch.rand(out // bs, inn // bs, generator=g) < density  # (out/bs, in/bs)
    keep[1] = False  # an empty block row: its outputs are the bias
    keep[0, 0] = True
    w = torch.randn(out, inn, generator=g) * keep.repeat_interleave(bs, 0).repeat_interleave(bs, 1)
    return w.to(DEV, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m", [1, 1000])
def test_bsr_triton_path_equals_dense(dtype, m):
    w = _block_sparse(dtype=dtype)
    b = torch.randn(w.shape[0], device=DEV, dtype=dtype)
    cls = PATHS.lookup("bsr_triton")
    assert cls.unsupported(w) is None
    path = cls(w, b)
    assert path.blocksize == 64  # whole 64-blocks: no finer size stores less, 128 adds fill
    x = torch.randn(m, w.shape[1], device=DEV, dtype=dtype)
    y = path(x)
    torch.testing.assert_close(y.float(), _expected(x, w, b), rtol=2e-2, atol=2e-1)
    assert torch.equal(y[:, 64:128], b[64:128].expand(m, 64))


def test_bsr_triton_path_refuses_with_reasons():
    cls = PATHS.lookup("bsr_triton")
    assert cls.unsupported(torch.zeros(64, 64, device=DEV)) == (
        "needs float16/bfloat16, weight is torch.float32"
    )
    assert "not divisible by any block size" in cls.unsupported(
        torch.zeros(64, 72, device=DEV, dtype=torch.bfloat16)
    )


def test_sparsify_bsr_offers_bsr_triton_and_matches(tmp_path):
    def model_():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(512, 256), nn.GELU(), nn.Linear(256, 512))
        m = m.to(DEV, torch.bfloat16)
        with torch.no_grad():
            m[0].weight.copy_(_block_sparse(256, 512))
            m[2].weight.copy_(_block_sparse(512, 256))
        return m

    def error(y):  # relative to the same model in float64
        return ((y.double() - exact).norm() / exact.norm()).item()

    model, forced = model_(), model_()
    x = torch.randn(64, 512, device=DEV, dtype=torch.bfloat16)
    exact = copy.deepcopy(model).double()(x.double())
    # bf16 rounds the hidden layer (|h| ~ 10) and the outputs (|y| ~ 60): a path that sums in
    # another order moves single outputs by ~1 whatever its accuracy, so each path is held to
    # the dense bf16 model's own error against float64, not to its outputs element by element
    dense = error(model(x))
    report = sparsify_(model, "bsr", dispatcher=Dispatcher(cache_file=tmp_path / "d.json"))
    assert report.swapped == {n: ["dense", "bsr", "bsr_triton"] for n in ("0", "2")}
    assert error(model(x)) <= 2 * dense + 1e-4, (error(model(x)), dense)
    report = sparsify_(forced, "bsr", paths=["bsr_triton"], dispatcher=Dispatcher(cache_file=None))
    assert report.swapped == {n: ["bsr_triton"] for n in ("0", "2")}
    assert error(forced(x)) <= 2 * dense + 1e-4, (error(forced(x)), dense)


def test_bsr_triton_path_compiles_fullgraph():
    w = _block_sparse()
    b = torch.randn(w.shape[0], device=DEV, dtype=w.dtype)
    path = PATHS.lookup("bsr_triton")(w, b)
    x = torch.randn(40, w.shape[1], device=DEV, dtype=w.dtype)
    compiled = torch.compile(lambda t: path(t) * 2, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), path(x) * 2)


# ---- a sparsified model as an nn.Module: dense_weight, state_dict, load, .to ----------------

_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


def _bits(t):
    """Bit patterns with -0.0 read as 0.0 (a sparse format drops zeros and their sign)."""
    return (t + 0).view(_BITS[t.dtype])


@pytest.mark.parametrize(
    "name",
    ["semi_structured", "cslt", "cslt_graph", "nm_triton", "nm_triton_graph", "nm_reference"],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_2to4_paths_rebuild_their_dense_weight_bitwise(name, dtype):
    w = _weight_2to4(256, 2048 + 512, dtype)  # the identity-based rebuilds take two chunks
    b = torch.randn(256, device=DEV, dtype=dtype)  # never added to the rebuilt weight
    rebuilt = PATHS.lookup(name)(w, b).dense_weight()
    assert rebuilt.dtype == dtype and rebuilt.device == w.device
    assert torch.equal(_bits(rebuilt), _bits(w))


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("bsr", torch.bfloat16),
        ("bsr_triton", torch.bfloat16),
        ("bsr_triton", torch.float16),
        ("csr", torch.float32),
    ],
)
def test_block_and_csr_paths_rebuild_their_dense_weight_bitwise(name, dtype):
    w = _block_sparse(dtype=dtype)
    rebuilt = PATHS.lookup(name)(w, None).dense_weight()
    assert rebuilt.dtype == dtype and rebuilt.device == w.device
    assert torch.equal(_bits(rebuilt), _bits(w))


def _dense_2to4_model(seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(512, 256), nn.GELU(), nn.Linear(256, 512))
    m = m.to(DEV, torch.bfloat16)
    with torch.no_grad():
        m[0].weight.copy_(random_2to4(256, 512, seed=seed).to(DEV, torch.bfloat16))
        m[2].weight.copy_(random_2to4(512, 256, seed=seed + 1).to(DEV, torch.bfloat16))
    return m


def _dense_only_warnings(record):
    return [w for w in record if "runs only its dense path" in str(w.message)]


def test_sparsified_gpu_model_state_dict_load_save_and_moves(tmp_path):
    import sparsetorch as st

    sparse = _dense_2to4_model(0)
    # no dense path: state_dict's weights are rebuilt from cuSPARSELt's compressed blob
    sparsify_(sparse, "2:4", paths=["cslt", "nm_triton"], dispatcher=Dispatcher(cache_file=None))
    for key, value in _dense_2to4_model(0).state_dict().items():
        assert torch.equal(_bits(sparse.state_dict()[key]), _bits(value)), key
    other = _dense_2to4_model(2)
    sparse.load_state_dict(other.state_dict(), strict=True)
    x = torch.randn(64, 512, device=DEV, dtype=torch.bfloat16)
    with torch.no_grad():
        expected = other(x).float()
        torch.testing.assert_close(sparse(x).float(), expected, rtol=2e-2, atol=2e-1)
    back = _dense_2to4_model(3)
    back.load_state_dict(st.load(st.save(sparse, tmp_path / "m.safetensors")), strict=True)
    for key, value in other.state_dict().items():
        assert torch.equal(_bits(back.state_dict()[key]), _bits(value)), key
    # to the CPU: no 2:4 engine there, dense runs, one warning for the model
    with pytest.warns(RuntimeWarning) as record:
        sparse.cpu()
    assert len(_dense_only_warnings(record)) == 1
    assert list(sparse[0].paths) == ["dense"] and set(sparse[0].dropped) == {"cslt", "nm_triton"}
    with torch.no_grad():
        torch.testing.assert_close(sparse(x.cpu()), other.cpu()(x.cpu()), rtol=0, atol=0)
    sparse.cuda()  # back: both engines again, choices measured anew
    assert list(sparse[0].paths) == ["cslt", "nm_triton"] and sparse[0].dropped == {}
    with torch.no_grad():
        torch.testing.assert_close(sparse(x).float(), expected, rtol=2e-2, atol=2e-1)
        with pytest.warns(RuntimeWarning) as record:
            sparse.float()  # the 2:4 engines need half types
        assert len(_dense_only_warnings(record)) == 1
        assert "needs float16/bfloat16" in sparse[2].dropped["cslt"]
        # float32 now: against the same weights in float32 (bf16 values are exact there)
        expected32 = copy.deepcopy(other).to(DEV, torch.float32)(x.float())  # other: on the CPU
        torch.testing.assert_close(sparse(x.float()), expected32, rtol=1e-3, atol=1e-3)


def test_graph_timer_refuses_what_cannot_be_captured_and_keys_its_decisions():
    from sparsetorch.deploy import graph_timer

    with pytest.raises(RuntimeError):
        graph_timer(torch.cuda.synchronize)  # not allowed while capturing
    assert graph_timer(lambda: torch.ones(4, device=DEV) + 1) > 0  # the stream still works
    model, reference = _dense_2to4_model(0), _dense_2to4_model(0)
    dispatcher = Dispatcher(timer=graph_timer, cache_file=None)
    sparsify_(model, "2:4", paths=["dense", "nm_triton", "nm_triton_graph"], dispatcher=dispatcher)
    x = torch.randn(1, 512, device=DEV, dtype=torch.bfloat16)
    with torch.no_grad():
        torch.testing.assert_close(model(x).float(), reference(x).float(), rtol=2e-2, atol=2e-1)
    assert dispatcher.decisions and all(k.endswith("|graph") for k in dispatcher.decisions)
    for decision in dispatcher.decisions.values():  # every candidate timed inside a graph
        assert all(0 < t < float("inf") for t in decision["seconds"].values()), decision
