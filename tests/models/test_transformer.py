"""CausalTransformer: causal, receptive field set by the pattern, backends agree, it learns."""

import pytest
import torch

import sparsetorch.attention as A
from sparsetorch.models import build
from sparsetorch.models.transformer import CausalTransformer


def _model(attention=None, backend="reference", layers=2, context=64, seed=0):
    torch.manual_seed(seed)
    return CausalTransformer(
        50, context, d_model=32, n_layers=layers, n_heads=4, attention=attention, backend=backend
    ).eval()


def _influence(model, n, p):
    """Which output positions change when the token at position p changes."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 50, (1, n), generator=g)
    y = x.clone()
    y[0, p] = (x[0, p] + 1) % 50
    with torch.no_grad():
        diff = (model(x) - model(y)).abs().amax(-1)[0]  # (n,)
    return diff > 1e-6


def test_logits_shape_and_context_limit():
    model = _model()
    assert model(torch.zeros(3, 20, dtype=torch.long)).shape == (3, 20, 50)
    with pytest.raises(ValueError, match="exceeds the context 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_dense_attention_is_causal():
    changed = _influence(_model(), 40, 17)
    assert not changed[:17].any() and changed[17:].all()


def test_local_attention_limits_the_receptive_field_to_layers_times_window():
    w, layers, p = 3, 2, 10
    changed = _influence(_model(A.local(w), layers=layers), 40, p)
    reach = p + layers * w  # two hops of at most w back
    assert not changed[:p].any()
    assert changed[p : reach + 1].all()
    assert not changed[reach + 1 :].any()


def test_global_tokens_carry_information_past_the_window():
    changed = _influence(_model(A.local(2) | A.global_tokens([0])), 40, 0)
    assert changed.all()  # everyone attends to token 0


def test_pattern_is_always_intersected_with_causal():
    assert _model(A.local(5)).pattern == A.band(0, 5)
    assert _model("strided(4)").pattern == A.causal() & A.strided(4)
    assert _model(None).pattern == A.causal()


def test_backends_give_the_same_logits():
    x = torch.randint(0, 50, (2, 48), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = _model(A.local(6) | A.strided(8), backend="reference")(x)
        dense = _model(A.local(6) | A.strided(8), backend="dense")(x)
    torch.testing.assert_close(ref, dense, atol=1e-5, rtol=0)


def test_a_few_steps_fit_a_fixed_batch():
    model = _model(A.local(8), context=32).train()
    x = torch.randint(0, 50, (4, 33), generator=torch.Generator().manual_seed(3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(50.0)).item(), abs=0.1)
    assert losses[-1] < 0.5 * losses[0]


def test_registered_as_a_model_with_pattern_options():
    model = build(
        "transformer", input_shape=(32,), num_classes=40, d_model=16, attention="local(4)"
    )
    assert isinstance(model, CausalTransformer)
    assert model.pattern == A.band(0, 4) and model.context == 32
    with pytest.raises(ValueError, match="vocab_size must be an int >= 1"):
        CausalTransformer(0, 8)
