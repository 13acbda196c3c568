import copy
import inspect

import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.masking import masks_from_state_dict
from sparsetorch.models.transformer import CausalTransformer
from sparsetorch.patterns import NM
from sparsetorch.post_training import Wanda, make_target
from sparsetorch.post_training.statistics import SquaredNorms
from tests.post_training.helpers import Block, Stack


def _batches(n=3, tokens=6, d=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, tokens, d, generator=g, dtype=dtype) * 2 for _ in range(n)]


def _wanda_mask(layer, inputs, sparsity=0.5):
    stats = SquaredNorms(layer.in_features, torch.device("cpu"), torch.float32)
    for x in inputs:
        stats.add(x.reshape(-1, x.shape[-1]))
    return Wanda().prune(layer.weight.detach().float(), stats, make_target(sparsity, None))[1]


def _reference_wanda(model, batches, sequential):
    """Wanda by hand: block by block, fc1 and fc2 scored on one dense pass of their block."""
    model = copy.deepcopy(model)
    masks = {}
    with torch.no_grad():
        xs = [model.inp(x) for x in batches]
        for i, block in enumerate(model.blocks):
            hidden = [torch.relu(block.fc1(x)) for x in xs]
            dense_out = [block(x) for x in xs]
            for name, layer, inputs in (("fc1", block.fc1, xs), ("fc2", block.fc2, hidden)):
                keep = _wanda_mask(layer, inputs)
                masks[f"blocks.{i}.{name}.weight"] = keep
                layer.weight.mul_(keep)
            xs = [block(x) for x in xs] if sequential else dense_out
    return masks


@pytest.mark.parametrize("sequential", [True, False])
def test_wanda_block_by_block_equals_a_hand_written_reference(sequential):
    model, batches = Stack(), _batches()
    pruned = st.oneshot(copy.deepcopy(model), "wanda", batches, sparsity=0.5, sequential=sequential)
    found = st.masks(pruned)
    expected = _reference_wanda(model, batches, sequential)
    assert list(found) == list(expected)  # inp and out are outside the blocks: not pruned
    for name, mask in expected.items():
        assert torch.equal(found[name], mask), name


def test_sequential_and_dense_inputs_give_different_masks_after_the_first_block():
    model, batches = Stack(), _batches()
    seq = st.masks(st.oneshot(copy.deepcopy(model), "wanda", batches, sparsity=0.5))
    dense = st.masks(
        st.oneshot(copy.deepcopy(model), "wanda", batches, sparsity=0.5, sequential=False)
    )
    assert torch.equal(seq["blocks.0.fc1.weight"], dense["blocks.0.fc1.weight"])
    assert torch.equal(seq["blocks.0.fc2.weight"], dense["blocks.0.fc2.weight"])
    later = [n for n in seq if not n.startswith("blocks.0.")]
    assert any(not torch.equal(seq[n], dense[n]) for n in later)


class KwStack(Stack):
    def forward(self, x, attention_mask=None, scale=1.0):
        return {"logits": super().forward(x) * scale}


def test_tensor_tuple_and_dict_batches_give_the_same_model():
    model, batches = KwStack(), _batches()
    results = []
    for calibration in (
        batches,
        [(x,) for x in batches],
        [[x, None, 1.0] for x in batches],
        [{"x": x} for x in batches],
    ):
        pruned = st.oneshot(copy.deepcopy(model), "sparsegpt", calibration, sparsity=0.5)
        results.append(pruned.state_dict())
    for other in results[1:]:
        assert all(torch.equal(results[0][k], other[k]) for k in results[0])


def test_padded_tokens_are_left_out_of_the_statistics():
    model = KwStack().double()
    g = torch.Generator().manual_seed(1)
    a = torch.randn(1, 3, 16, generator=g, dtype=torch.float64)
    b = torch.randn(1, 5, 16, generator=g, dtype=torch.float64)
    padded = torch.cat([torch.cat([a, torch.full((1, 2, 16), 1e3, dtype=a.dtype)], 1), b])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with_pad = st.oneshot(
        copy.deepcopy(model), "wanda", [{"x": padded, "attention_mask": mask}], sparsity=0.5
    )
    unpadded = st.oneshot(copy.deepcopy(model), "wanda", [{"x": a}, {"x": b}], sparsity=0.5)
    no_mask = st.oneshot(copy.deepcopy(model), "wanda", [{"x": padded}], sparsity=0.5)
    m1, m2, m3 = st.masks(with_pad), st.masks(unpadded), st.masks(no_mask)
    assert all(torch.equal(m1[k], m2[k]) for k in m1)
    assert any(not torch.equal(m1[k], m3[k]) for k in m1)  # the 1e3 padding would count


class TupleBlock(Block):
    def forward(self, x):
        return (super().forward(x), None)


class TupleStack(Stack):
    """Blocks that return tuples, a model that returns a tuple."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(TupleBlock(16, 24) for _ in range(3))
        self.load_state_dict(Stack().state_dict())

    def forward(self, x):
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)[0]
        return (self.out(x), x)


def test_blocks_and_models_returning_tuples_are_handled():
    batches = _batches()
    a = st.masks(st.oneshot(Stack(), "wanda", batches, sparsity=0.5))
    b = st.masks(st.oneshot(TupleStack(), "wanda", batches, sparsity=0.5))
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _transformer(seed=0):
    torch.manual_seed(seed)
    return CausalTransformer(256, 32, d_model=32, n_layers=2, n_heads=2)


def _tokens(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (2, 32), generator=g) for _ in range(n)]


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_the_project_transformer_gets_valid_n_m_masks_in_every_block_layer(method, pattern):
    model = _transformer()
    head = model.head.weight.detach().clone()
    st.oneshot(model, method, _tokens(), pattern=pattern)
    masks = st.masks(model)
    assert sorted(masks) == sorted(
        f"blocks.{i}.{layer}.weight"
        for i in range(2)
        for layer in ("attn.qkv", "attn.proj", "mlp.0", "mlp.2")
    )
    nm = NM(*map(int, pattern.split(":")))
    for name, mask in masks.items():
        weight = model.get_parameter(name)
        assert nm.is_valid(mask), name
        assert mask.float().mean() == nm.n / nm.m
        assert not weight[~mask].any()  # exact zeros where pruned
    assert torch.equal(model.head.weight, head)  # outside the blocks: untouched


def test_the_result_is_bitwise_reproducible():
    states = []
    for _ in range(2):
        model = st.oneshot(_transformer(), "sparsegpt", _tokens(), sparsity=0.6)
        states.append(model.state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_masks_survive_state_dict_and_training():
    model = st.oneshot(_transformer(), "sparsegpt", _tokens(), pattern="2:4")
    fresh = _transformer(seed=1)
    fresh.load_state_dict(model.state_dict(), strict=False)
    st.apply_masks(fresh, masks_from_state_dict(model.state_dict()))
    opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    x = _tokens(1)[0]
    for _ in range(2):
        opt.zero_grad()
        fresh(x).logsumexp(-1).mean().backward()
        opt.step()
    for name, mask in st.masks(fresh).items():
        assert torch.equal(mask, st.masks(model)[name])
        assert not fresh.get_parameter(name)[~mask].any()


def test_training_flags_are_restored_and_dropout_is_off_while_calibrating():
    model = Stack()
    model.blocks[0].drop = nn.Dropout(0.5)
    model.train()
    a = st.oneshot(copy.deepcopy(model), "wanda", _batches(), sparsity=0.5)
    b = st.oneshot(copy.deepcopy(model), "wanda", _batches(), sparsity=0.5)
    assert all(m.training for m in a.modules())
    assert all(torch.equal(x, y) for x, y in zip(st.masks(a).values(), st.masks(b).values()))


def test_filter_fn_gets_the_module_and_its_fully_qualified_name():
    seen = []

    def keep_fc1(module, fqn):
        seen.append((type(module).__name__, fqn))
        return fqn.endswith("fc1")

    model = st.oneshot(Stack(), "wanda", _batches(), sparsity=0.5, filter_fn=keep_fc1)
    assert list(st.masks(model)) == [f"blocks.{i}.fc1.weight" for i in range(3)]
    assert ("Linear", "blocks.1.fc2") in seen


def test_blocks_can_be_named():
    model = st.oneshot(Stack(), "wanda", _batches(), sparsity=0.5, blocks=["blocks.0", "blocks.1"])
    assert len(st.masks(model)) == 4
    model = st.oneshot(Stack(), "wanda", _batches(), sparsity=0.5, blocks="blocks")
    assert len(st.masks(model)) == 6


class Raises(Stack):
    def forward(self, x):
        raise AssertionError("magnitude must not run the model")


def test_magnitude_needs_no_data_and_no_forward_pass():
    model = st.oneshot(Raises(), "magnitude", sparsity=0.5)
    assert len(st.masks(model)) == 6


class Unused(Block):
    def __init__(self, d, hidden):
        super().__init__(d, hidden)
        self.spare = nn.Linear(d, d)


def test_errors():
    model, batches = Stack(), _batches()
    with pytest.raises(ValueError, match="unknown one-shot method 'obs'; known: magnitude"):
        st.oneshot(model, "obs", batches, sparsity=0.5)
    with pytest.raises(ValueError, match="supports the patterns unstructured and N:M"):
        st.oneshot(model, "wanda", batches, sparsity=0.5, pattern="block4x4")
    with pytest.raises(ValueError, match="pattern '2:4' prunes 2 of every 4 weights"):
        st.oneshot(model, "wanda", batches, sparsity=0.3, pattern="2:4")
    with pytest.raises(ValueError, match=r"pass sparsity= in \[0, 1\)"):
        st.oneshot(model, "wanda", batches)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\), got 1.0"):
        st.oneshot(model, "wanda", batches, sparsity=1.0)
    with pytest.raises(ValueError, match="method 'wanda' needs calibration batches"):
        st.oneshot(model, "wanda", sparsity=0.5)
    with pytest.raises(TypeError, match="wrap one batch in a list"):
        st.oneshot(model, "wanda", batches[0], sparsity=0.5)
    with pytest.raises(ValueError, match="calibration holds no batch"):
        st.oneshot(model, "wanda", [], sparsity=0.5)
    with pytest.raises(TypeError, match=r"calibration\[1\] must be a tensor, a tuple/list"):
        st.oneshot(model, "wanda", [batches[0], 3], sparsity=0.5)
    with pytest.raises(ValueError, match=r"no layer to prune.*that filter_fn accepts"):
        st.oneshot(model, "wanda", batches, sparsity=0.5, filter_fn=lambda m, n: False)
    with pytest.raises(TypeError, match=r"model must be an nn.Module"):
        st.oneshot("model", "wanda", batches, sparsity=0.5)
    with pytest.raises(TypeError, match="sequential must be True or False"):
        st.oneshot(model, "wanda", batches, sparsity=0.5, sequential="yes")
    with pytest.raises(ValueError, match="blocks: the model has no module 'layers'"):
        st.oneshot(model, "wanda", batches, sparsity=0.5, blocks="layers")
    model.spare = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"never called block 'spare'; pass blocks="):
        st.oneshot(model, "wanda", batches, sparsity=0.5, blocks=["spare", "blocks.0"])
    with pytest.raises(ValueError, match="blocks: Linear is not a submodule of the model"):
        st.oneshot(model, "wanda", batches, sparsity=0.5, blocks=[nn.Linear(2, 2)])
    with pytest.raises(ValueError, match=r"'blocks.0.fc1' is listed twice or lies inside"):
        st.oneshot(model, "wanda", batches, sparsity=0.5, blocks=["blocks.0", "blocks.0.fc1"])
    assert not st.masks(model)  # every check above left the model as it was
    unused = Stack()
    unused.blocks[1] = Unused(16, 24)
    with pytest.raises(ValueError, match=r"layers \['blocks.1.spare'\] received no input"):
        st.oneshot(unused, "wanda", batches, sparsity=0.5)


class KwOnlyBlocks(Stack):
    def forward(self, x):
        x = self.inp(x)
        for block in self.blocks:
            x = block(x=x)
        return self.out(x)


def test_blocks_that_cannot_be_chained_fail_before_anything_is_pruned():
    model = KwOnlyBlocks()
    with pytest.raises(ValueError, match="neither a positional input nor hidden_states="):
        st.oneshot(model, "wanda", _batches(), sparsity=0.5)
    assert not st.masks(model)


def test_st_oneshot_is_the_function_whatever_was_imported_first():
    import sparsetorch.post_training as package

    assert st.oneshot is package.oneshot and inspect.isfunction(st.oneshot)
    model = st.oneshot(Stack(), "magnitude", sparsity=0.5)
    assert len(st.masks(model)) == 6


def test_offloading_puts_the_outside_modules_then_one_block_at_a_time_on_the_device(
    monkeypatch,
):
    """The placement's moves, in order (on the CPU both moves are no-ops; tests/post_training/
    test_gpu.py checks the real ones): the modules outside the blocks around the recording
    pass, in which each block but the last is on the device while it runs, then each block
    around its own forward passes, and nothing else."""
    from sparsetorch.post_training import offload, pipeline

    model = Stack(depth=2)
    names = {id(m): n for n, m in model.named_modules()}
    events = []
    real_move = offload._move_own_

    def move(module, device):
        events.append(("move", names[id(module)]))
        real_move(module, device)

    monkeypatch.setattr(offload, "_move_own_", move)
    for i, block in enumerate(model.blocks):
        block.register_forward_pre_hook(lambda m, a, i=i: events.append(("run", f"blocks.{i}")))
    blocks = pipeline.resolve_blocks(model, None)
    layers = [pipeline.block_layers(n, b, None) for n, b in blocks]
    placement = offload.Placement(model, [b for _, b in blocks], torch.device("cpu"))
    with pipeline._inference(model):
        pipeline._sequential(model, blocks, layers, [((x,), {}) for x in _batches(n=2)],
                             Wanda(), make_target(0.5, None), True, None, placement)  # fmt: skip
    outside = [("move", "inp"), ("move", "out")]  # the modules that own tensors
    block = [[("move", f"blocks.{i}.fc1"), ("move", f"blocks.{i}.fc2")] for i in range(2)]
    run = [("run", f"blocks.{i}") for i in range(2)]
    recording = [run[0], *block[0], *block[0], run[1]]  # block 0 on the device; 1 stops
    assert events == (
        outside + recording * 2 + outside  # every block's call recorded, per batch
        + block[0] + [run[0]] * 4 + block[0]  # statistics, then the pruned block's outputs
        + block[1] + [run[1]] * 2 + block[1]  # the last block: statistics only
    )  # fmt: skip
