import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sparsetorch.formats import best_format
from sparsetorch.model_report import Report, report


def _convnet():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)
    )
    with torch.no_grad():
        model[4].weight[model[4].weight.abs() < 0.05] = 0
    return model


def test_rows_bytes_and_formats():
    model = _convnet()
    rep = report(model)
    assert [row.name for row in rep.layers] == ["0.weight", "4.weight"]
    for row, weight in zip(rep.layers, (model[0].weight, model[4].weight)):
        assert row.shape == tuple(weight.shape)
        assert row.nnz == int((weight != 0).sum()) and row.numel == weight.numel()
        assert row.dense_bytes == weight.numel() * 4
        assert (row.format, row.sparse_bytes) == best_format(weight)
        assert row.flops is None and row.sparse_flops is None
    total = rep.total
    assert total.nnz == sum(r.nnz for r in rep.layers)
    assert total.sparse_bytes == sum(r.sparse_bytes for r in rep.layers)
    assert total.density == total.nnz / (36 + 1440)


def test_flops_golden_and_equal_to_torch_flop_counter():
    model = _convnet()
    x = torch.zeros(2, 1, 8, 8)
    rep = report(model, input_shape=(2, 1, 8, 8))
    conv, linear = rep.layers
    assert conv.flops == 2 * (2 * 4 * 6 * 6) * (1 * 3 * 3)  # outputs x MACs per output
    assert linear.flops == 2 * 2 * 144 * 10
    with FlopCounterMode(display=False) as counter:
        model.eval()(x)
    assert rep.total.flops == counter.get_total_flops()
    assert linear.sparse_flops == linear.flops * linear.nnz // linear.numel
    assert rep.input_shape == (2, 1, 8, 8)


def test_dummy_forward_leaves_the_model_as_it_was():
    model = _convnet().train()
    model[1].eval()  # a mixed-mode model keeps each module's own flag
    stats = model[1].running_mean.clone()
    report(model, (4, 1, 8, 8))
    assert model.training and not model[1].training and model[2].training
    assert torch.equal(model[1].running_mean, stats)
    assert not model[0]._forward_hooks and not model[4]._forward_hooks


class _TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, tokens):
        return self.head(self.embed(tokens))


def test_token_model_with_example_input_and_tied_weights():
    tokens = torch.randint(0, 20, (3, 5))
    rep = report(_TiedLM(), example_input=tokens)
    (row,) = rep.layers  # the shared weight is listed once
    assert row.name == "embed.weight"
    assert row.flops == 2 * 15 * 8 * 20  # the lookup is free, the head is 15 rows x 8 x 20
    assert rep.input_shape == (3, 5)


def test_table_markdown_and_dict():
    rep = report(_convnet(), (1, 1, 8, 8))
    lines = str(rep).splitlines()
    assert lines[0].split() == [
        "layer",
        "shape",
        "density",
        "nnz",
        "dense",
        "best",
        "format",
        "FLOPs",
        "sparse",
        "FLOPs",
    ]
    assert len({len(line) for line in lines}) == 1  # aligned: the last column is right-aligned
    assert lines[2].startswith("0.weight  ") and "4x1x3x3" in lines[2]
    assert lines[-1].startswith("total") and set(lines[1]) == set(lines[-2]) == {"-", " "}
    md = rep.to_markdown().splitlines()
    assert len(md) == 2 + 2 + 1 and all(line.count("|") == 10 for line in md)
    assert md[-1].startswith("| **total** |")
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["input_shape"] == [1, 1, 8, 8]
    assert data["layers"][1]["nnz"] == rep.layers[1].nnz
    assert data["total"]["flops"] == rep.total.flops
    no_flops = str(report(_convnet())).splitlines()[0]
    assert "FLOPs" not in no_flops


def test_errors():
    model = _convnet()
    with pytest.raises(ValueError, match="input_shape or example_input, not both"):
        report(model, (1, 1, 8, 8), example_input=torch.zeros(1, 1, 8, 8))
    with pytest.raises(
        ValueError, match=r"input_shape must be positive ints, batch dim included, got \(1, 0\)"
    ):
        report(model, (1, 0))
    with pytest.raises(ValueError, match="no prunable weights"):
        report(nn.Sequential(nn.ReLU()))
    tokens = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))  # takes token ids, not zeros
    with pytest.raises(ValueError, match=r"does not run on zeros of shape \(1, 3\).*example_in"):
        report(tokens, (1, 3))


def test_public_name_stays_callable_after_importing_the_module():
    import sparsetorch
    import sparsetorch.model_report  # binds the attribute to the module

    assert isinstance(sparsetorch.report(nn.Linear(3, 3)), Report)
