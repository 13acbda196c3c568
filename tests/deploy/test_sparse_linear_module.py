"""A sparsified model is a proper nn.Module: state_dict / load_state_dict under nn.Linear's names,
.to() / .double() / .half() re-prepare the compute paths, every path rebuilds its dense weight
(CPU paths here; the CUDA paths at the end of test_gpu_paths.py)."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst
from torch import nn

import sparsetorch as st
from sparsetorch.deploy import PATHS, Dispatcher, SparseLinear, sparsify_
from sparsetorch.deploy.compute_paths import _dense_by_identity
from tests.kernels.test_nm_reference import random_2to4

_INT = {torch.float64: torch.int64, torch.float32: torch.int32}
_INT.update({torch.float16: torch.int16, torch.bfloat16: torch.int16})


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The bit patterns of ``t`` with -0.0 read as 0.0 (a sparse format drops zeros)."""
    return (t + 0).view(_INT[t.dtype])


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _pruned(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """A 2:4 (so 50% sparse) weight without -0.0: bitwise round trips hold for every format."""
    return random_2to4(n, k, seed=seed) + 0.0


def _dense_only(record) -> list:
    return [w for w in record if "runs only its dense path" in str(w.message)]


def _sparse_timer(fn):
    """Sparse paths 'measure' faster than dense: the dispatcher picks them, no timing."""
    return 1.0 if fn.__defaults__[0].name == "dense" else 0.5


def _dispatcher():
    return Dispatcher(timer=_sparse_timer, cache_file=None)


def _dense_model(seed: int = 0, bias: bool = True) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, 16, bias=bias), nn.GELU(), nn.Linear(16, 8, bias=bias))
    with torch.no_grad():
        model[0].weight.copy_(_pruned(16, 32, seed))
        model[2].weight.copy_(_pruned(8, 16, seed + 1))
    return model


def _sparsified(paths: list[str], seed: int = 0, bias: bool = True) -> nn.Sequential:
    model = _dense_model(seed, bias)
    sparsify_(model, "2:4", paths=paths, dispatcher=_dispatcher())
    return model


# --- every path rebuilds its dense weight ------------------------------------------------


def _random_sparse(n, k, density, dtype, seed, block=1):
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(n // block, k // block, generator=g) < density
    keep = keep.repeat_interleave(block, 0).repeat_interleave(block, 1)
    return (torch.randn(n, k, generator=g) * keep).to(dtype)  # -0.0 where a negative is pruned


@settings(max_examples=25, deadline=None)
@given(
    rows=hst.integers(1, 6),
    cols=hst.integers(1, 6),
    density=hst.sampled_from([0.0, 0.05, 0.3, 1.0]),
    dtype=hst.sampled_from([torch.float32, torch.float64]),
    seed=hst.integers(0, 10_000),
)
def test_dense_and_csr_paths_rebuild_their_weight(rows, cols, density, dtype, seed):
    w = _random_sparse(8 * rows, 8 * cols, density, dtype, seed)
    for name in ("dense", "csr"):
        path = PATHS.lookup(name)(w, None)
        assert _same_bits(path.dense_weight(), w), name
    assert PATHS.lookup("dense")(w, None).dense_weight() is w  # no copy for dense


@settings(max_examples=10, deadline=None)
@given(
    rows=hst.integers(1, 3),
    cols=hst.integers(1, 3),
    block=hst.sampled_from([16, 32, 64]),
    density=hst.sampled_from([0.0, 0.25, 1.0]),
    dtype=hst.sampled_from([torch.float32, torch.bfloat16]),
    seed=hst.integers(0, 10_000),
)
def test_bsr_paths_rebuild_their_weight(rows, cols, block, density, dtype, seed):
    w = _random_sparse(64 * rows, 64 * cols, density, dtype, seed, block)
    names = ["bsr_triton"] + (["bsr"] if dtype == torch.float32 else [])  # CPU BSR: float
    for name in names:
        assert _same_bits(PATHS.lookup(name)(w, None).dense_weight(), w), name


@settings(max_examples=25, deadline=None)
@given(
    n=hst.integers(1, 24),
    groups8=hst.integers(1, 6),
    dtype=hst.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    seed=hst.integers(0, 10_000),
)
def test_2to4_paths_rebuild_their_weight(n, groups8, dtype, seed):
    w = random_2to4(n, 8 * groups8, dtype, seed)  # has -0.0 where a negative was pruned
    for name in ("nm_reference", "nm_triton", "nm_triton_graph"):  # CPU-constructible
        assert _same_bits(PATHS.lookup(name)(w, None).dense_weight(), w), name


def test_dense_by_identity_assembles_every_chunk():
    w = _random_sparse(24, 40, 0.4, torch.float64, 3)
    seen = []

    def matmul(x):  # x (c, in) = rows of the identity
        seen.append(x.shape[0])
        return x @ w.T

    rebuilt = _dense_by_identity(matmul, (24, 40), torch.float64, w.device, chunk=16)
    assert seen == [16, 16, 8]
    assert _same_bits(rebuilt, w)


def test_cuda_only_2to4_paths_rebuild_through_their_matmul(monkeypatch):
    # no CUDA here: cuSPARSELt and semi-structured stand-ins keep the dense weight and
    # multiply like the real ops; what is tested is the call and the identity assembly
    def cslt_mm(compressed, xt, bias=None, transpose_result=False, alg_id=0):
        assert bias is None and transpose_result and xt.shape[1] % 16 == 0
        return xt.T @ compressed.T  # (c, out)

    monkeypatch.setattr(torch, "_cslt_compress", lambda w: w.clone(), raising=False)
    monkeypatch.setattr(torch, "_cslt_sparse_mm", cslt_mm, raising=False)
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", lambda w: w.clone())
    w = random_2to4(64, 2048 + 64, torch.float32)  # two identity chunks: 1024 + 1088 - 1024
    for name in ("cslt", "cslt_graph", "semi_structured"):
        assert _same_bits(PATHS.lookup(name)(w, None).dense_weight(), w), name


# --- state_dict and load_state_dict ---------------------------------------------------------


@pytest.mark.parametrize("paths", [["csr"], ["nm_reference"], ["dense", "csr"]])
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_equals_the_dense_models(paths, bias):
    dense = _dense_model(bias=bias)
    sparse = _sparsified(paths, bias=bias)
    assert isinstance(sparse[0], SparseLinear) and list(sparse[0].paths) == paths
    expected, got = dense.state_dict(), sparse.state_dict()
    assert list(got) == list(expected)  # same keys, same order
    for key in expected:
        assert _same_bits(got[key], expected[key]), key
        assert got[key].layout == torch.strided and not got[key].requires_grad


@pytest.mark.parametrize("paths", [["csr"], ["nm_reference"]])
def test_load_state_dict_round_trips_between_dense_and_sparsified(paths):
    x = torch.randn(5, 32)
    source = _dense_model(seed=1)
    sparse = _sparsified(paths, seed=0)
    assert sparse.load_state_dict(source.state_dict(), strict=True).missing_keys == []
    back = _dense_model(seed=2)
    back.load_state_dict(sparse.state_dict(), strict=True)
    for key, value in source.state_dict().items():
        assert _same_bits(back.state_dict()[key], value), key
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), source(x))
        torch.testing.assert_close(back(x), source(x), rtol=0, atol=0)


@pytest.mark.parametrize("paths", [["csr"], ["nm_reference"], ["dense", "nm_reference"]])
def test_loading_another_weight_computes_like_a_layer_built_from_it(paths):
    x = torch.randn(2, 3, 32)
    sparse = _sparsified(paths, seed=0)
    with torch.no_grad():
        before = sparse(x)
    key_before, chosen_before = sparse[0].layer_key, dict(sparse[0].choices)
    assert bool(chosen_before) == (len(paths) > 1)  # a single path is never dispatched
    other = _dense_model(seed=7)
    with torch.no_grad():
        other[0].weight[:, :8] = 0.0  # another sparsity: another nonzero count in the key
    sparse.load_state_dict(other.state_dict())
    fresh = _sparsified(paths, seed=7)
    fresh.load_state_dict(other.state_dict())  # the same weights, prepared once
    rebuilt = _dense_model(seed=0)
    rebuilt.load_state_dict(other.state_dict())
    sparsify_(rebuilt, "2:4", paths=paths, dispatcher=_dispatcher())
    assert sparse[0].choices == {} and sparse[0].layer_key != key_before
    with torch.no_grad():
        after = sparse(x)
        assert not torch.equal(after, before)
        assert torch.equal(after, rebuilt(x))  # bitwise: same paths, same weights
        torch.testing.assert_close(after, other(x))
    assert sparse[0].choices == chosen_before  # measured again for the new weight


def test_an_invalid_loaded_weight_names_the_layer_and_leaves_it():
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Sequential(nn.Linear(32, 16)))
    with torch.no_grad():
        model[0].weight.copy_(_pruned(32, 32))
        model[2][0].weight.copy_(_pruned(16, 32, 1))
    sparsify_(model, "2:4", paths=["nm_reference"], dispatcher=_dispatcher())
    x = torch.randn(4, 32)
    with torch.no_grad():
        before = model(x)
    state = model.state_dict()
    state["2.0.weight"] = torch.randn(16, 32)  # dense: not 2:4 any more
    with pytest.raises(RuntimeError, match=r"SparseLinear '2\.0'.*not 2:4 sparse") as info:
        model.load_state_dict(state)
    assert "2.0.weight" in str(info.value) and "'0'" not in str(info.value)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_a_weight_only_dense_can_run_falls_back_to_dense_with_one_warning():
    model = _sparsified(["dense", "nm_reference"])
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}  # not 2:4
    with pytest.warns(RuntimeWarning, match="runs only its dense path") as record:
        model.load_state_dict(state)
    assert len(_dense_only(record)) == 1  # once per model, two layers dropped nm_reference
    for i in (0, 2):
        assert list(model[i].paths) == ["dense"] and "not 2:4" in model[i].dropped["nm_reference"]
    dense = _dense_model()
    dense.load_state_dict(state)
    x = torch.randn(3, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), dense(x), rtol=0, atol=0)


def test_load_state_dict_reports_missing_unexpected_and_size_mismatch():
    model = _sparsified(["csr"])
    state = model.state_dict()
    del state["2.bias"]
    state["2.extra"] = torch.zeros(1)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["2.extra"]
    state = _dense_model().state_dict()
    state["0.weight"] = torch.zeros(16, 31)
    with pytest.raises(RuntimeError, match=r"size mismatch for 0\.weight.*\[16, 31\]"):
        model.load_state_dict(state)


def test_loaded_tensors_are_copied_and_cast_like_nn_linear():
    model = _sparsified(["dense", "csr"])
    state = {k: v.double() for k, v in _dense_model(seed=3).state_dict().items()}
    model.load_state_dict(state)
    state["0.weight"].zero_()  # the model never aliases the loaded dict
    assert model[0].dtype == torch.float32 and torch.count_nonzero(model[0].dense_weight()) > 0
    assert model.state_dict()["0.weight"].dtype == torch.float32


def test_checkpoint_save_load_round_trips_a_sparsified_model(tmp_path):
    sparse = _sparsified(["nm_reference"], seed=4)
    path = st.save(sparse, tmp_path / "sparse.safetensors")
    state = st.load(path)
    dense = _dense_model(seed=4)
    for key, value in dense.state_dict().items():
        assert _same_bits(state[key], value), key
    target = _sparsified(["nm_reference"], seed=5)
    st.load(path, model=target)  # into a sparsified model, and into a dense one
    st.load(path, model=_dense_model(seed=6))
    x = torch.randn(4, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x), sparse(x), rtol=0, atol=0)


# --- .to() / .double() / .half() --------------------------------------------------------


@pytest.mark.parametrize("paths", [["csr"], ["nm_reference"], ["dense", "csr"]])
@pytest.mark.parametrize("move", ["double", "to"])
def test_double_equals_the_dense_model_in_float64(paths, move):
    dense = _dense_model(seed=2)
    sparse = _sparsified(paths, seed=2)
    x = torch.randn(6, 32, dtype=torch.float64)
    with torch.no_grad():
        sparse(x.float())  # a choice in float32, forgotten by the move
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every candidate runs float64: no warning
        sparse = sparse.double() if move == "double" else sparse.to(torch.float64)
    assert list(sparse[0].paths) == paths and sparse[0].dropped == {}
    assert sparse[0].choices == {} and sparse[0].dtype == torch.float64
    for key, value in dense.double().state_dict().items():
        assert _same_bits(sparse.state_dict()[key], value), key
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), dense(x), rtol=1e-12, atol=1e-12)


def test_half_drops_what_cannot_run_there_and_float_brings_it_back():
    model = _sparsified(["dense", "csr"])
    with pytest.warns(RuntimeWarning, match="runs only its dense path") as record:
        model.half()
    assert len(_dense_only(record)) == 1  # one warning for the model, not one per layer
    layer = model[0]
    assert list(layer.paths) == ["dense"] and layer.dtype == torch.float16
    assert "float32/float64 only" in layer.dropped["csr"]
    assert "dropped={'csr':" in repr(layer)
    model.float()
    assert list(layer.paths) == ["dense", "csr"] and layer.dropped == {}
    for key, value in _dense_model().half().float().state_dict().items():
        assert _same_bits(model.state_dict()[key], value), key  # rounded like nn.Linear's


def test_a_forced_path_that_cannot_move_is_replaced_by_dense():
    model = _sparsified(["csr"])
    with pytest.warns(RuntimeWarning, match="csr: torch CSR matmul"):
        model.to(torch.bfloat16)
    assert list(model[0].paths) == ["dense"] and list(model[2].paths) == ["dense"]
    x = torch.randn(3, 32)
    with torch.no_grad():
        expected = _dense_model().to(torch.bfloat16)(x.bfloat16())
        torch.testing.assert_close(model(x.bfloat16()), expected, rtol=0, atol=0)


def test_a_move_that_converts_nothing_keeps_paths_and_choices():
    model = _sparsified(["dense", "csr"])
    with torch.no_grad():
        model(torch.randn(3, 32))
    paths, choices = model[0].paths, dict(model[0].choices)
    model.to("cpu").float()
    assert model[0].paths is paths and model[0].choices == choices


def test_extra_repr_shows_features_paths_and_choices():
    layer = _sparsified(["dense", "csr"])[0]
    assert repr(layer) == (
        "SparseLinear(in_features=32, out_features=16, bias=True, paths=['dense', 'csr'])"
    )
    with torch.no_grad():
        layer(torch.randn(3, 32))
        layer(torch.randn(1, 32))
    assert repr(layer).endswith("paths=['dense', 'csr'], choices={M<=1: csr, M<=4: csr})")


def test_assign_takes_the_loaded_dtype_and_storage():
    model = _sparsified(["csr"])
    state = {k: v.double() for k, v in _dense_model(seed=3).state_dict().items()}
    model.load_state_dict(state, assign=True)
    assert model[0].dtype == torch.float64 and model[0].bias.dtype == torch.float64
    assert model[0].bias.data_ptr() == state["0.bias"].data_ptr()  # assigned, not copied
    x = torch.randn(2, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _dense_model(seed=3).double()(x))


def test_a_loaded_and_moved_model_still_compiles_fullgraph():
    torch._dynamo.reset()
    model = _sparsified(["nm_reference"])
    model.load_state_dict(_dense_model(seed=5).state_dict())
    model.double()
    x = torch.randn(3, 32, dtype=torch.float64)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _dense_model(seed=5).double()(x))
    torch._dynamo.reset()
