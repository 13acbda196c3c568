"""Prune a Hugging Face model: half of every encoder Linear by magnitude (each layer on its
own), check what that does to its outputs, and save it as a compressed checkpoint.

The model is a small BERT built from a config (random weights, nothing downloaded); a model
from ``from_pretrained(path)`` prunes the same way. Needs transformers:
``pip install 'sparsetorch[hf]'``.

    python examples/prune_hf_model.py
"""

import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

import sparsetorch as st

try:
    from transformers import BertConfig, BertForSequenceClassification
except ImportError:
    print("skipped: needs transformers (pip install 'sparsetorch[hf]')", file=sys.stderr)
    sys.exit(77)

torch.manual_seed(0)
config = BertConfig(
    vocab_size=1000,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    num_labels=3,
)
model = BertForSequenceClassification(config).eval()
ids = torch.randint(0, config.vocab_size, (4, 16))  # (batch, tokens)
with torch.no_grad():
    dense_logits = model(input_ids=ids).logits


def encoder_linear(module: nn.Module, fqn: str) -> bool:
    """Prune the encoder's Linear layers; embeddings, pooler and classifier stay dense."""
    return isinstance(module, nn.Linear) and fqn.startswith("bert.encoder.")


st.prune(model, sparsity=0.5, distribution="uniform", filter_fn=encoder_linear)

masks = st.masks(model)
print(f"{len(masks)} pruned layers, e.g. {sorted(masks)[0]}")
for name, mask in masks.items():
    weight = model.get_parameter(name)
    assert mask.float().mean() == 0.5, name  # half of every layer
    assert (weight[~mask] == 0).all(), name  # pruned weights are exact zeros
print(st.report(model, example_input=ids))

with torch.no_grad():
    sparse_logits = model(input_ids=ids).logits
change = (sparse_logits - dense_logits).norm() / dense_logits.norm()
print(f"relative change of the logits: {change:.3f}")

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "bert-50.safetensors"
    st.save(model, path)
    restored = st.load(path)  # plain dict of dense tensors
    plain = {k: v for k, v in model.state_dict().items() if not k.endswith("_mask")}
    dense_bytes = sum(t.numel() * t.element_size() for t in plain.values())
    print(f"checkpoint: {path.stat().st_size / dense_bytes:.2f}x the dense model's bytes")
    fresh = BertForSequenceClassification(config).eval()
    fresh.load_state_dict({k: restored[k] for k in plain})
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids).logits, sparse_logits)
print("ok: pruned, saved and reloaded")
