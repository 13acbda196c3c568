"""Hugging Face models built from tiny configs (no download): every weight covered and pruned
along its reduction axis, FLOPs, the data-driven criteria on ModelOutput/dict batches,
save_pretrained / from_pretrained and the compressed export."""

import copy

import pytest
import torch
from safetensors import safe_open
from torch.utils.flop_counter import FlopCounterMode

import sparsetorch as st
from sparsetorch.criteria.snip import snip_scores
from sparsetorch.formats.nm import is_exactly_nm
from sparsetorch.masking import uncovered_weights
from tests.checkpoint.helpers import read_raw

transformers = pytest.importorskip(
    "transformers", reason="needs transformers (pip install 'sparsetorch[hf]')"
)
transformers.logging.set_verbosity_error()

VOCAB = 96


def gpt2():
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=32, bos_token_id=0,
        eos_token_id=0, attn_implementation="eager",
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def bert():
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=3,
        attn_implementation="eager",
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def llama():
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, attn_implementation="eager",
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


MODELS = {"gpt2": gpt2, "bert": bert, "llama": llama}


def build(name, seed=0):
    torch.manual_seed(seed)
    return MODELS[name]().eval()


def batch(name, seed=0, labels=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # a left-padded example
    out = {"input_ids": ids, "attention_mask": mask}
    if labels:
        out["labels"] = (
            torch.tensor([0, 2, 1]) if name == "bert" else ids.masked_fill(mask == 0, -100)
        )
    return out


def kept(model):
    return sum(int(m.sum()) for m in st.masks(model).values())


def weights_2d(model):
    """Every distinct parameter of 2+ dims, under its first name."""
    return {n for n, p in model.named_parameters() if p.dim() >= 2}


@pytest.mark.parametrize("name", MODELS)
def test_every_weight_is_covered_and_the_sparsity_is_exact(name):
    model = build(name)
    assert uncovered_weights(model) == []
    st.prune(model, 0.5)
    assert set(st.masks(model)) == weights_2d(model)
    total = sum(p.numel() for n, p in model.named_parameters() if n in weights_2d(model))
    assert kept(model) == round(0.5 * total)
    zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if n in weights_2d(model))
    assert st.sparsity(model) == zeros / total  # what st.sparsity counts: the same weights


def test_gpt2_nm_groups_run_along_each_weights_reduction_axis():
    model = build("gpt2")
    conv1d = type(model.transformer.h[0].attn.c_attn)
    st.prune(model, pattern="2:4")
    for full, mask in st.masks(model).items():
        module = model.get_submodule(full.rpartition(".")[0])
        rows = mask.T if isinstance(module, conv1d) else mask  # Conv1D weight is (in, out)
        assert is_exactly_nm(rows, 2, 4), full
    x = batch("gpt2", labels=False)
    assert torch.isfinite(model(**x).logits).all()


@pytest.mark.parametrize("name", MODELS)
def test_report_flops_are_the_matmuls_torch_counts(name):
    model = build(name)
    inputs = batch(name, labels=False)
    rep = st.report(model, example_input=inputs)
    with FlopCounterMode(display=False) as counter:
        model(**inputs)
    ops = counter.get_flop_counts()["Global"]
    aten = torch.ops.aten
    projections = sum(ops.get(op, 0) for op in (aten.mm, aten.addmm))  # attention is bmm
    assert rep.total.flops == projections > 0
    assert rep.input_shape == (3, 10)


def _manual_snip(model, inputs):
    model.zero_grad(set_to_none=True)
    model(**inputs).loss.backward()
    out = {n: (p.detach() * p.grad).abs() for n, p in model.named_parameters() if p.dim() >= 2}
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("name", MODELS)
def test_snip_and_taylor_equal_a_plain_backward_on_the_models_own_loss(name):
    model = build(name)
    inputs = batch(name)
    names = sorted(weights_2d(model))
    scores = snip_scores(model, names, inputs)
    expected = _manual_snip(model, inputs)
    for n in names:
        torch.testing.assert_close(scores[n], expected[n], rtol=1e-4, atol=1e-9)
    taylor = st.criteria.get("taylor").scores(model, names, batch=inputs)
    assert all(torch.equal(taylor[n], scores[n]) for n in names)
    padded = copy.deepcopy(inputs)
    padded["attention_mask"][:] = 1  # attention masks reach the model
    other = snip_scores(model, names, padded)
    assert any(not torch.equal(other[n], scores[n]) for n in names)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("criterion", ["grasp", "synflow", "gradient"])
def test_data_driven_criteria_prune_hf_models(name, criterion):
    model = build(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if criterion == "grasp" and name == "bert":  # a pair: the temperature applies
        inputs = batch(name, labels=False)
        data = (inputs, torch.tensor([0, 2, 1]))
    else:
        data = batch(name)
    if criterion == "grasp" and name != "bert":
        with pytest.warns(UserWarning, match="temperature 200 is not applied"):
            st.prune(model, 0.5, criterion=criterion, batch=data)
    else:
        st.prune(model, 0.5, criterion=criterion, batch=data)
    assert set(st.masks(model)) == weights_2d(model)
    total = sum(m.numel() for m in st.masks(model).values())
    assert kept(model) == round(0.5 * total)
    assert all(p.grad is None for p in model.parameters())
    masks = {model.get_parameter(n).data_ptr(): m for n, m in st.masks(model).items()}
    for key, value in model.state_dict().items():  # only pruned entries changed
        if key.endswith("_mask"):
            continue
        mask = masks.get(value.data_ptr())  # a tied weight is masked under its first name
        expected = before[key] if mask is None else before[key].masked_fill(~mask, 0)
        assert torch.equal(value, expected), key


def _train(model, name, steps=3):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        opt.zero_grad()
        model(**batch(name, seed=step)).loss.backward()
        opt.step()
    model.eval()


@pytest.mark.parametrize("name", MODELS)
def test_save_pretrained_round_trip_keeps_zeros_and_reattaches_masks(name, tmp_path):
    model = build(name)
    st.prune(model, 0.6)
    _train(model, name)
    masks = {k: v.clone() for k, v in st.masks(model).items()}
    assert any(k.endswith("_mask") for k in model.state_dict())  # torch users keep them
    copy.deepcopy(model).save_pretrained(tmp_path)  # a copy leaves its own masks out too
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if k.endswith("_mask")]  # noqa: SIM118
    loaded, info = type(model).from_pretrained(tmp_path, output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}  # nothing missing, unexpected, mismatched
    plain = {k: v for k, v in model.state_dict().items() if not k.endswith("_mask")}
    assert set(loaded.state_dict()) == set(plain)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in plain.items())
    st.reattach_masks(loaded)
    assert set(st.masks(loaded)) == set(masks)
    assert all(torch.equal(st.masks(loaded)[k], m) for k, m in masks.items())
    _train(loaded, name, steps=2)  # sparse training goes on: the zeros stay
    for full, mask in st.masks(loaded).items():
        assert bool((loaded.get_parameter(full)[~mask] == 0).all()), full


@pytest.mark.parametrize("name", MODELS)
def test_compressed_export_loads_back_into_the_hf_model(name, tmp_path):
    model = build(name)
    st.prune(model, pattern="2:4")
    path = st.save(model, tmp_path / "model.safetensors")
    _, meta = read_raw(path)
    for full, mask in st.masks(model).items():  # half the values, 2-bit indices, (in, out) too
        entry = meta["tensors"][full]
        if mask.numel() < 1024:  # tiny (BERT's 2 token types): dense is smaller
            continue
        assert (entry["encoding"], entry["pattern"]) == ("nm", "2:4"), full
        conv1d = type(model.get_submodule(full.rpartition(".")[0])).__name__ == "Conv1D"
        assert entry["params"]["view"] == ("cols" if conv1d else "rows"), full
    fresh = build(name, seed=1)
    st.load(path, model=fresh)
    assert set(fresh.state_dict()) == set(model.state_dict())
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())
    inputs = batch(name, labels=False)
    assert torch.equal(fresh(**inputs).logits, model(**inputs).logits)
