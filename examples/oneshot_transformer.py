"""One-shot pruning of a transformer after training, from a few calibration batches: Wanda
(Sun et al. 2023) keeps the weights with the largest |W_ij| * ||X_j|| of each output row,
2:4 everywhere (the layout sparse tensor cores run).

    python examples/oneshot_transformer.py
"""

import sys

import torch

import sparsetorch as st
from sparsetorch.models.transformer import CausalTransformer
from sparsetorch.patterns import get as get_pattern

if not hasattr(st, "oneshot"):
    print("skipped: this sparsetorch has no one-shot pruning (st.oneshot)", file=sys.stderr)
    sys.exit(77)

torch.manual_seed(0)
model = CausalTransformer(vocab_size=256, context=32, d_model=32, n_layers=2, n_heads=2).eval()
calibration = [torch.randint(0, 256, (4, 32)) for _ in range(4)]  # batches of token ids
probe = torch.randint(0, 256, (2, 32))
with torch.no_grad():
    dense = model(probe)

st.oneshot(model, "wanda", calibration, pattern="2:4")

masks = st.masks(model)
two_four = get_pattern("2:4")
assert masks and all(two_four.is_valid(mask) for mask in masks.values())
print(f"{len(masks)} layers pruned to 2:4, e.g. {sorted(masks)[:2]}")
with torch.no_grad():
    change = ((model(probe) - dense).norm() / dense.norm()).item()
print(f"relative change of the logits: {change:.3f}")
print("ok: one-shot 2:4")
