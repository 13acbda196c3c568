"""Batches of any model (sparsetorch.batches) and the data-driven criteria on them: tensors,
positional tuples, dicts of keyword inputs (attention masks), outputs that are dicts, tuples
or carry their own loss."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsetorch as st
from sparsetorch.batches import (
    batch_size,
    call_model,
    logits_of,
    loss_of,
    map_logits,
    split_batch,
)
from sparsetorch.criteria.snip import snip_scores


class Output(OrderedDict):
    """A ModelOutput stand-in: a dict whose entries are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Tagger(nn.Module):
    """A token model taking keyword inputs, with an attention mask that drops padded
    positions, returning a dict output with its own loss when labels are given."""

    def __init__(self, vocab=11, d=8, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.mix = nn.Linear(d, d)
        self.head = nn.Linear(d, classes)

    def forward(self, input_ids, attention_mask=None, labels=None):
        h = torch.relu(self.mix(self.embed(input_ids)))  # (B, T, d)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1)
        logits = self.head(h.mean(1))  # (B, classes)
        out = Output(logits=logits)
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


def _batch(seed=0, pad=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 11, (4, 6), generator=g)
    mask = torch.ones(4, 6, dtype=torch.long)
    if pad:
        mask[:, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 1])}


def _manual_snip(model, batch):
    """|w * dL/dw| by a plain backward on the model's own loss."""
    model.zero_grad()
    model(**batch).loss.backward()
    out = {
        n: (p.detach() * p.grad).abs() for n, p in model.named_parameters() if n.endswith("weight")
    }
    model.zero_grad(set_to_none=True)
    return out


def test_split_and_call_rules():
    x, y = torch.randn(3, 2), torch.tensor([0, 1, 0])
    assert split_batch((x, y)) == (x, y)
    d = {"input_ids": x}
    assert split_batch(d) == (d, None) and split_batch(x)[1] is None
    assert split_batch(((x, x), y))[0] == (x, x)
    assert split_batch(((x, x), None))[1] is None
    with pytest.raises(TypeError, match=r"positional inputs inside it: \(\(a, b\), targets\)"):
        split_batch((x, x, x))
    with pytest.raises(TypeError, match="string keys"):
        split_batch({0: x})
    seen = []
    fn = lambda *a, **k: seen.append((len(a), sorted(k))) or 0  # noqa: E731
    call_model(fn, x), call_model(fn, (x, x)), call_model(fn, {"a": x, "b": x})
    assert seen == [(1, []), (2, []), (0, ["a", "b"])]
    assert batch_size({"input_ids": torch.zeros(5, 7)}) == 5 and batch_size(((x, x), y)) == 3


def test_outputs_logits_and_losses():
    logits = torch.randn(3, 4)
    y = torch.tensor([0, 3, 1])
    ce = F.cross_entropy(logits, y)
    for output in (logits, {"logits": logits}, Output(logits=logits, hidden=logits), (logits,)):
        assert logits_of(output) is logits
        torch.testing.assert_close(loss_of(output, (torch.zeros(3, 2), y)), ce)
    own = Output(loss=torch.tensor(1.5), logits=logits)
    assert float(loss_of(own, {"input_ids": y})) == 1.5  # the model's own loss
    assert float(loss_of(own, (torch.zeros(3), y))) == float(ce)  # targets win over it
    custom = loss_of(own, {"input_ids": y}, lambda out, batch: out.logits.sum() * 0)
    assert float(custom) == 0.0
    with pytest.raises(ValueError, match="has no targets and the model computed no loss"):
        loss_of({"logits": logits}, {"input_ids": y})
    with pytest.raises(ValueError, match="no 'logits' and 2 tensors"):
        logits_of({"a": logits, "b": logits})
    scaled = map_logits(own, lambda t: t / 2)
    assert torch.equal(scaled.logits, logits / 2) and own.logits is logits  # a copy
    assert torch.equal(map_logits((logits, logits), lambda t: t * 0)[1], logits)


def test_snip_on_dict_batches_equals_a_plain_backward():
    torch.manual_seed(0)
    model = Tagger()
    batch = _batch()
    names = ["embed.weight", "mix.weight", "head.weight"]
    scores = snip_scores(model, names, batch)
    expected = _manual_snip(model, batch)
    for n in names:
        torch.testing.assert_close(scores[n], expected[n], rtol=1e-5, atol=1e-8)
    assert all(p.grad is None for p in model.parameters())  # nothing left behind
    # the attention mask is used: padded positions change the scores
    unpadded = snip_scores(model, names, _batch(pad=False))
    assert not torch.allclose(unpadded["mix.weight"], scores["mix.weight"])


def test_pairs_with_dict_inputs_and_several_batches_weighted_by_size():
    torch.manual_seed(0)
    model = Tagger()
    a, b = _batch(1), _batch(2)
    b = {k: v[:2] for k, v in b.items()}  # 4 + 2 examples
    names = ["mix.weight"]
    labels_a, labels_b = a.pop("labels"), b.pop("labels")
    scores = snip_scores(model, names, [(a, labels_a), (b, labels_b)])
    merged = {k: torch.cat([a[k], b[k]]) for k in a}
    merged["labels"] = torch.cat([labels_a, labels_b])
    # per-batch mean losses weighted by size = the mean loss of the union
    torch.testing.assert_close(scores["mix.weight"], _manual_snip(model, merged)["mix.weight"])


def test_prune_criteria_on_a_keyword_model():
    for criterion in ("snip", "taylor", "gradient", "grasp", "synflow"):
        torch.manual_seed(0)
        model = Tagger()
        if criterion == "grasp":
            with pytest.warns(UserWarning, match="temperature 200 is not applied"):
                st.prune(model, 0.5, criterion=criterion, batch=_batch())
        else:
            st.prune(model, 0.5, criterion=criterion, batch=_batch())
        assert st.sparsity(model) == 0.5, criterion
        assert all(p.grad is None for p in model.parameters())


def test_synflow_builds_its_input_from_token_ids():
    torch.manual_seed(0)
    model = Tagger(vocab=40)  # the batch holds ids < 11 only
    scores = st.criteria.get("synflow").scores(model, ["embed.weight"], batch=_batch())
    # every token is looked up at once (the all-ones one-hot input): every row has flow,
    # also the rows of tokens absent from the batch
    absent = sorted(set(range(40)) - set(_batch()["input_ids"].flatten().tolist()))
    assert absent and bool((scores["embed.weight"][absent] > 0).all())
    # the flow into row r is |E_r| times the same column flow for every row
    ratio = scores["embed.weight"] / model.embed.weight.detach().double().abs()
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio))
