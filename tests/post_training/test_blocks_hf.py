"""Blocks and layers of Hugging Face models built from tiny configs (no downloads), and of the
project's own models."""

import copy
import sys

import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.models.transformer import CausalTransformer
from sparsetorch.patterns import NM
from sparsetorch.post_training import find_blocks
from sparsetorch.post_training.layers import block_layers
from tests.post_training.helpers import Stack, needs_transformers


def _names(blocks):
    return [name for name, _ in blocks]


def test_the_project_transformer_blocks():
    model = CausalTransformer(256, 16, d_model=16, n_layers=3, n_heads=2)
    assert _names(find_blocks(model)) == ["blocks.0", "blocks.1", "blocks.2"]


def test_the_largest_repeated_list_wins_and_a_model_without_one_is_one_block():
    model = Stack(depth=2)
    model.heads = nn.ModuleList(nn.Linear(16, 2) for _ in range(3))  # repeated but smaller
    assert _names(find_blocks(model)) == ["blocks.0", "blocks.1"]
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))  # mixed types
    assert find_blocks(mlp) == [("", mlp)]
    layers = block_layers("", mlp, None)
    assert [layer.fqn for layer in layers] == ["0", "2"]


def test_linear_layers_inside_multihead_attention_are_left_out():
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    names = [x.fqn for x in block_layers("layers.0", layer, None)]
    assert names == ["layers.0.linear1", "layers.0.linear2"]  # not self_attn.out_proj


def test_transformers_is_not_imported_to_find_layers():
    if "transformers" in sys.modules:
        pytest.skip("transformers already imported in this process")
    st.oneshot(Stack(), "magnitude", sparsity=0.5)
    assert "transformers" not in sys.modules


def _bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    return BertModel(config)


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=99, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    )


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    return LlamaForCausalLM(config)


HF = {
    "bert": (_bert, "encoder.layer", ["attention.self.query", "attention.self.key",
             "attention.self.value", "attention.output.dense", "intermediate.dense",
             "output.dense"]),
    "gpt2": (_gpt2, "transformer.h", ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]),
    "llama": (_llama, "model.layers", ["self_attn.q_proj", "self_attn.k_proj",
              "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
              "mlp.down_proj"]),
}  # fmt: skip


def _batch(seed=0, pad=False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 99, (2, 12), generator=g)
    mask = torch.ones(2, 12, dtype=torch.long)
    if pad:
        mask[0, 8:] = 0
        ids[0, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@needs_transformers
@pytest.mark.parametrize("name", sorted(HF))
def test_hugging_face_blocks_are_found(name):
    build, where, layers = HF[name]
    model = build()
    blocks = find_blocks(model)
    assert _names(blocks) == [f"{where}.0", f"{where}.1"]
    found = [x.fqn for x in block_layers(*blocks[1], None)]
    assert found == [f"{where}.1.{layer}" for layer in layers]


@needs_transformers
@pytest.mark.parametrize("name", sorted(HF))
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_hugging_face_models_are_pruned_2_4_along_their_reduction_axis(name, method):
    build, where, layers = HF[name]
    model = build()
    dense = copy.deepcopy(model).eval()
    batches = [_batch(0, pad=True), _batch(1)]
    use_cache = getattr(model.config, "use_cache", None)
    model.train()
    st.oneshot(model, method, batches, pattern="2:4")
    assert model.training and getattr(model.config, "use_cache", None) == use_cache
    masks = st.masks(model)
    assert sorted(masks) == sorted(f"{where}.{i}.{x}.weight" for i in range(2) for x in layers)
    nm = NM(2, 4)
    for fqn, mask in masks.items():
        module = model.get_submodule(fqn.rpartition(".")[0])
        rows = mask.t() if type(module).__name__ == "Conv1D" else mask  # (out, in)
        assert nm.is_valid(rows) and rows.float().mean() == 0.5, fqn
        assert not model.get_parameter(fqn)[~mask].any()
    if name == "gpt2":  # Conv1D weights are (in, out): groups run along dim 0
        mask = masks["transformer.h.0.attn.c_attn.weight"]
        assert mask.shape == (32, 96)
        assert (mask.view(8, 4, 96).sum(1) == 2).all()
    model.eval()
    with torch.no_grad():
        out, ref = model(**_batch(2)), dense(**_batch(2))
    first = out.last_hidden_state if name == "bert" else out.logits
    expected = ref.last_hidden_state if name == "bert" else ref.logits
    assert not torch.equal(first, expected)
    assert torch.isfinite(first).all()


@needs_transformers
def test_hugging_face_results_are_bitwise_reproducible():
    states = [
        st.oneshot(_llama(), "sparsegpt", [_batch(0, pad=True)], sparsity=0.5).state_dict()
        for _ in range(2)
    ]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
