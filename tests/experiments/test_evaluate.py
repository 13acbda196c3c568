import pytest
import torch

from sparsetorch.data import Split
from sparsetorch.experiments.evaluate import evaluate


def test_evaluate_equals_a_direct_computation_for_any_batch_size():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(7, 5), torch.nn.Linear(5, 7))  # (B, T, 7)
    split = Split(torch.randint(0, 7, (13, 4)), torch.randint(0, 7, (13, 4)))
    with torch.no_grad():
        logits = model(split.x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), split.y.reshape(-1))
        acc = (logits.argmax(-1) == split.y).double().mean().item()
    for batch_size in (None, 1, 5, 13):
        got = evaluate(model, split, batch_size=batch_size)
        assert got["loss"] == pytest.approx(loss.item(), rel=1e-6)
        assert got["acc"] == pytest.approx(acc, abs=1e-12)
    assert model.training
