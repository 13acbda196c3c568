"""sparsify_ on GPT-2, whose attention and MLP layers are transformers' Conv1D (``x @ weight +
bias``, weight stored ``(in, out)``): swapped like a Linear, computing the same logits, with
the Hugging Face layout kept in ``.weight``, the state dict, ``load_state_dict``,
``save_pretrained``, copies and ``unwrap_dense_``."""

import copy
import pickle

import pytest
import torch

import sparsetorch as st
from sparsetorch.deploy import Dispatcher, SparseLinear, sparsify_, unwrap_dense_
from tests.deploy.test_real_models import _fixed_timer

transformers = pytest.importorskip(
    "transformers", reason="needs transformers (pip install 'sparsetorch[hf]')"
)
from tests.hf.test_hf_models import batch, build  # noqa: E402

Conv1D = transformers.pytorch_utils.Conv1D


def conv1d_names(model) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, Conv1D)]


def pruned_gpt2(pattern: str = "unstructured"):
    model = build("gpt2")
    if pattern == "2:4":
        st.prune(model, pattern="2:4")
    else:
        st.prune(model, 0.5)
    st.remove_masks(model)
    return model


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch("gpt2", labels=False)).logits


def sparsified(config: str = "csr", paths=None, pattern: str = "unstructured"):
    """(sparsified model, its report, the dense model's state dict and logits)."""
    model = pruned_gpt2(pattern)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    expected = logits(model)
    dispatcher = Dispatcher(timer=_fixed_timer(), cache_file=None)  # sparse paths win
    report = sparsify_(model, config, paths=paths, dispatcher=dispatcher)
    return model, report, state, expected


def test_every_conv1d_is_swapped_runs_sparse_and_computes_the_same_logits():
    model, report, state, expected = sparsified()
    names = conv1d_names(build("gpt2"))
    assert len(names) == 8 and set(names) <= set(report.swapped)
    assert not set(names) & set(report.skipped)
    torch.testing.assert_close(logits(model), expected, rtol=1e-5, atol=1e-5)
    for name in names:
        layer = model.get_submodule(name)
        assert isinstance(layer, SparseLinear) and layer.transposed
        assert set(layer.chosen.values()) == {"csr"}  # a sparse path ran
        assert torch.equal(layer.weight, state[f"{name}.weight"])  # (in, out), as stored


def test_state_dict_keeps_the_hugging_face_layout_and_loads_it_back():
    model, _, state, _ = sparsified()
    saved = model.state_dict()
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) for k in state)
    assert all(saved[k].is_contiguous() for k in saved)  # what safetensors requires
    # a Hugging Face state dict, (in, out) weights, loads into the sparsified model
    changed = dict(state)
    changed["transformer.h.0.mlp.c_fc.weight"] = 2 * state["transformer.h.0.mlp.c_fc.weight"]
    dense = pruned_gpt2()
    dense.load_state_dict(changed)
    model.load_state_dict(changed)
    layer = model.transformer.h[0].mlp.c_fc
    assert torch.equal(layer.weight, changed["transformer.h.0.mlp.c_fc.weight"])
    torch.testing.assert_close(logits(model), logits(dense), rtol=1e-5, atol=1e-5)
    rows = dict(changed, **{"transformer.h.0.mlp.c_fc.weight": layer.weight.t()})  # (out, in)
    with pytest.raises(RuntimeError, match=r"size mismatch for transformer\.h\.0\.mlp\.c_fc"):
        model.load_state_dict(rows)


def test_save_pretrained_of_a_sparsified_gpt2_loads_into_a_plain_one(tmp_path):
    model, _, _, expected = sparsified()
    model.save_pretrained(tmp_path)
    plain = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager")
    assert all(isinstance(plain.get_submodule(n), Conv1D) for n in conv1d_names(model))
    torch.testing.assert_close(logits(plain.eval()), expected, rtol=1e-5, atol=1e-5)


def test_copies_and_pickles_keep_the_layout():
    model, _, state, expected = sparsified()
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        layer = clone.transformer.h[1].attn.c_attn
        assert layer.transposed and layer.replaced[0] is Conv1D
        assert torch.equal(layer.weight, state["transformer.h.1.attn.c_attn.weight"])
        torch.testing.assert_close(logits(clone), expected, rtol=1e-5, atol=1e-5)


def test_unwrap_dense_gives_back_the_conv1d_it_replaced():
    model, _, state, expected = sparsified(paths=["dense"])  # dense only: unwrappable
    replaced = unwrap_dense_(model)
    conv = [n for n in replaced if n != "lm_head"]
    assert len(conv) == 8
    for name in conv:
        layer = model.get_submodule(name)
        assert type(layer) is Conv1D
        assert (layer.nx, layer.nf) == tuple(state[f"{name}.weight"].shape)
        assert torch.equal(layer.weight, state[f"{name}.weight"]) and layer.weight.is_contiguous()
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state)
    torch.testing.assert_close(logits(model), expected, rtol=1e-5, atol=1e-5)


def test_two_four_is_checked_along_each_conv1d_reduction_axis():
    model, report, _, expected = sparsified("2:4", paths=["dense", "nm_reference"], pattern="2:4")
    assert set(conv1d_names(build("gpt2"))) <= set(report.swapped)
    torch.testing.assert_close(logits(model), expected, rtol=1e-5, atol=1e-5)
    chosen = {model.get_submodule(n).chosen[30] for n in conv1d_names(build("gpt2"))}
    assert chosen == {"nm_reference"}
    # 2:4 along the stored weight's dim 1 (the output axis) is not 2:4 along the input
    wrong = build("gpt2")
    c_fc = wrong.transformer.h[0].mlp.c_fc
    with torch.no_grad():
        c_fc.weight.mul_(torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat(c_fc.weight.shape[1] // 4))
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.mlp\.c_fc"):
        sparsify_(wrong, "2:4", filter_fn=lambda m, n: n == "transformer.h.0.mlp.c_fc")
