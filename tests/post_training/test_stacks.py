"""One-shot pruning of models whose blocks get different arguments per layer and of models with
several stacks of blocks (an encoder and a decoder): every stack is pruned, every block is
calibrated on the arguments the model's own forward pass gives it, against a hand-written
Wanda that does the same; T5's decoder stack (its own config copy, with a cache) and Qwen2 with
sliding and full attention layers."""

import copy
import warnings

import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.post_training import find_blocks
from tests.post_training.helpers import needs_transformers
from tests.post_training.test_pipeline import _wanda_mask

D = 16


class Layer(nn.Module):
    """A residual MLP whose update is scaled by a per-layer ``gate`` (its parent gives it)."""

    def __init__(self, d: int = D) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x, gate):
        return x + self.fc2(torch.relu(self.fc1(x))) * gate


class CrossLayer(Layer):
    """Reads the encoder's output, ``memory``, as a decoder block does."""

    def forward(self, x, memory):
        return x + self.fc2(torch.relu(self.fc1(x + memory)))


class EncoderDecoder(nn.Module):
    def __init__(self, depth: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(D, D)
        self.enc = nn.ModuleList(Layer() for _ in range(depth))
        self.dec = nn.ModuleList(CrossLayer() for _ in range(depth))
        self.out = nn.Linear(D, 4)
        self.register_buffer(
            "gates", torch.stack([torch.full((D,), 0.2), torch.linspace(-3, 3, D)])
        )

    def forward(self, x, y):
        h = self.inp(x)
        for i, layer in enumerate(self.enc):
            h = layer(h, gate=self.gates[i % 2])  # each layer its own argument
        g = self.inp(y)
        for layer in self.dec:
            g = layer(g, memory=h)
        return self.out(g)


def batches(n: int = 3):
    g = torch.Generator().manual_seed(1)
    return [tuple(torch.randn(2, 5, D, generator=g) * 2 for _ in range(2)) for _ in range(n)]


def reference(model, data, sequential: bool, gates_of_block_0: bool = False) -> dict:
    """Wanda by hand: the encoder's blocks, each with its own gate (or block 0's), then the
    decoder's, reading the encoder's output (pruned with ``sequential``, else dense)."""
    model, masks = copy.deepcopy(model), {}

    def prune(name, layer, inputs):
        keep = _wanda_mask(layer, inputs)
        masks[f"{name}.weight"] = keep
        layer.weight.mul_(keep)

    with torch.no_grad():
        hs = [model.inp(x) for x, _ in data]
        for i, layer in enumerate(model.enc):
            gate = model.gates[0 if gates_of_block_0 else i % 2]
            dense, hidden = [layer(h, gate) for h in hs], [torch.relu(layer.fc1(h)) for h in hs]
            prune(f"enc.{i}.fc1", layer.fc1, hs)  # both scored on one dense pass of the block
            prune(f"enc.{i}.fc2", layer.fc2, hidden)
            hs = [layer(h, gate) for h in hs] if sequential else dense
        gs = [model.inp(y) for _, y in data]
        for i, layer in enumerate(model.dec):
            dense = [layer(g, m) for g, m in zip(gs, hs)]
            ins = [g + m for g, m in zip(gs, hs)]
            hidden = [torch.relu(layer.fc1(x)) for x in ins]
            prune(f"dec.{i}.fc1", layer.fc1, ins)
            prune(f"dec.{i}.fc2", layer.fc2, hidden)
            gs = [layer(g, m) for g, m in zip(gs, hs)] if sequential else dense
    return masks


def test_both_stacks_are_found_in_order_and_small_or_nested_lists_are_not():
    model = EncoderDecoder()
    model.heads = nn.ModuleList(nn.Linear(D, 2) for _ in range(3))  # repeated, small: no stack
    for layer in model.enc:
        layer.experts = nn.ModuleList(nn.Linear(D, D) for _ in range(2))  # inside a stack
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # heads and experts are not layers left dense
        names = [name for name, _ in find_blocks(model)]
    assert names == ["enc.0", "enc.1", "dec.0", "dec.1"]


def test_a_small_or_one_block_decoder_is_named_in_a_warning():
    model = EncoderDecoder(depth=12)
    del model.dec[1:]  # one block: no repeated list
    with pytest.warns(UserWarning, match=r"\['dec'\] stay dense: \['dec'\] hold one block"):
        assert {name.split(".")[0] for name, _ in find_blocks(model)} == {"enc"}
    model = EncoderDecoder(depth=12)
    model.dec = nn.ModuleList(CrossLayer(2) for _ in range(2))  # < 10% of the encoder's
    with pytest.warns(UserWarning, match=r"\['dec'\] hold less than 10%"):
        find_blocks(model)


@pytest.mark.parametrize("sequential", [True, False])
def test_every_stack_and_block_is_calibrated_as_the_model_calls_it(sequential):
    model, data = EncoderDecoder(), batches()
    pruned = st.oneshot(copy.deepcopy(model), "wanda", data, sparsity=0.5, sequential=sequential)
    found, expected = st.masks(pruned), reference(model, data, sequential)
    assert list(found) == list(expected)  # both stacks; inp and out are outside them
    for name, mask in expected.items():
        assert torch.equal(found[name], mask), name
    # block 0's arguments for every block (the papers' code) would give other masks
    wrong = reference(model, data, sequential, gates_of_block_0=True)
    assert not torch.equal(wrong["dec.0.fc1.weight"], expected["dec.0.fc1.weight"])


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(Layer() for _ in range(2))


class Rescaled(TwoLayers):
    """A parent that changes the hidden states between its blocks."""

    def forward(self, x):
        for block in self.blocks:
            x = block(x, gate=1.0) * 0.5
        return x


def test_a_block_whose_input_the_parent_changed_gets_the_recorded_input_and_a_warning():
    model, data = Rescaled(), [x for x, _ in batches()]
    with pytest.warns(UserWarning, match=r"between blocks before \['blocks.1'\]"):
        found = st.masks(st.oneshot(copy.deepcopy(model), "wanda", data, sparsity=0.5))
    with torch.no_grad():
        dense_inputs = [model.blocks[0](x, 1.0) * 0.5 for x in data]  # what blocks.1 is given
    expected = _wanda_mask(model.blocks[1].fc1, dense_inputs)
    assert torch.equal(found["blocks.1.fc1.weight"], expected)
    # not the pruned block 0's outputs (what feeding outputs to inputs would give)
    pruned_0 = copy.deepcopy(model.blocks[0])
    with torch.no_grad():
        for name in ("fc1", "fc2"):
            getattr(pruned_0, name).weight.mul_(found[f"blocks.0.{name}.weight"])
        chained = [pruned_0(x, 1.0) for x in data]
    assert not torch.equal(_wanda_mask(model.blocks[1].fc1, chained), expected)


@needs_transformers
def test_t5_encoder_and_decoder_are_pruned_and_every_cache_flag_restored():
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
        num_heads=4, decoder_start_token_id=0,
    )  # fmt: skip
    model = transformers.T5ForConditionalGeneration(config)
    assert model.decoder.config is not model.config and model.decoder.config.use_cache
    g = torch.Generator().manual_seed(0)
    data = [
        {"input_ids": torch.randint(1, 64, (2, 10), generator=g),
         "decoder_input_ids": torch.randint(1, 64, (2, 5), generator=g)}
        for _ in range(2)
    ]  # fmt: skip
    st.oneshot(model, "wanda", data, sparsity=0.5)
    stacks = {name.split(".block.")[0] for name in st.masks(model)}
    assert stacks == {"encoder", "decoder"}
    assert len(st.masks(model)) == 2 * 6 + 2 * 10  # q k v o wi wo, + cross q k v o: decoder
    assert all(float(m.float().mean()) == 0.5 for m in st.masks(model).values())
    assert model.config.use_cache and model.decoder.config.use_cache


@needs_transformers
def test_qwen2_sliding_and_full_layers_are_calibrated_on_their_own_masks():
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=32,
        layer_types=["full_attention", "sliding_attention"], sliding_window=2,
        use_sliding_window=True, attn_implementation="eager",
    )  # fmt: skip
    model = transformers.Qwen2ForCausalLM(config).eval()
    ids = torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(5))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    seen = []
    o_proj = model.model.layers[1].self_attn.o_proj
    hook = o_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    with torch.no_grad():
        model(**batch)
    st.oneshot(model, "wanda", [batch], sparsity=0.5, sequential=False)
    hook.remove()
    real, calibrated = seen[0], seen[1]  # the statistics pass: dense inputs, sequential=False
    torch.testing.assert_close(calibrated, real, rtol=0, atol=1e-6)


def _offload_on_the_side(monkeypatch) -> list[str]:
    """Offloading emulated on the CPU: a module 'moved to the device' is flagged, and every
    Linear that runs while its block is not there is listed."""
    from sparsetorch.post_training import offload, pipeline

    device = torch.device("meta")  # never really used: moves only set the flag

    def move(module, to):
        module._on_device = to == device

    monkeypatch.setattr(offload, "_move_own_", move)
    monkeypatch.setattr(
        pipeline,
        "_placement",
        lambda model, blocks, _, __: offload.Placement(model, [b for _, b in blocks], device),
    )
    return []


def _watch(model, off: list[str]) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            module.register_forward_pre_hook(
                lambda m, a, name=name: (
                    None if getattr(m, "_on_device", False) else off.append(name)
                )
            )


@pytest.mark.parametrize("sequential", [True, False])
def test_offloading_puts_every_running_block_on_the_device(monkeypatch, sequential):
    """Recording the decoder runs the encoder's blocks too: each on the device while it runs
    (before, only the recorded stack's blocks were moved)."""
    off = _offload_on_the_side(monkeypatch)
    model = EncoderDecoder()
    _watch(model, off)
    expected = st.masks(st.oneshot(EncoderDecoder(), "wanda", batches(), sparsity=0.5,
                                   sequential=sequential))  # fmt: skip
    found = st.masks(st.oneshot(model, "wanda", batches(), sparsity=0.5, sequential=sequential))
    assert off == [] and all(torch.equal(found[n], m) for n, m in expected.items())


class Reversed(EncoderDecoder):
    """The decoder stack runs first in the forward pass, though registered after (CLIP's
    towers are so)."""

    def forward(self, x, y):
        g = self.inp(y)
        for layer in self.dec:
            g = layer(g, memory=0.0)
        h = self.inp(x)
        for i, layer in enumerate(self.enc):
            h = layer(h, gate=self.gates[i % 2])
        return self.out(g + h)


def test_stacks_recorded_together_need_not_run_in_the_order_they_are_registered():
    pruned = st.oneshot(Reversed(), "wanda", batches(), sparsity=0.5, sequential=False)
    assert len(st.masks(pruned)) == 8


class Masked(EncoderDecoder):
    def forward(self, x, y, attention_mask=None, decoder_attention_mask=None):
        return super().forward(x, y)


@pytest.mark.parametrize("decoder_mask", [False, True])
def test_the_attention_mask_counts_the_first_stack_s_tokens_only(monkeypatch, decoder_mask):
    from sparsetorch.post_training import pipeline

    tokens = {}
    prune = pipeline._prune_layers

    def spy(layers, method, target, stats):
        tokens.update({layer.fqn: stats[layer.fqn].tokens for layer in layers})
        return prune(layers, method, target, stats)

    monkeypatch.setattr(pipeline, "_prune_layers", spy)
    x, y = batches(1)[0]
    batch = {"x": x, "y": y, "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1] * 5])}
    if decoder_mask:
        batch["decoder_attention_mask"] = torch.tensor([[1] * 5, [1, 1, 0, 0, 0]])
    st.oneshot(Masked(), "wanda", [batch], sparsity=0.5)
    assert {n: t for n, t in tokens.items() if n.startswith("enc")} == dict.fromkeys(
        ["enc.0.fc1", "enc.0.fc2", "enc.1.fc1", "enc.1.fc2"], 8
    )
    decoder = {t for n, t in tokens.items() if n.startswith("dec")}
    assert decoder == {7 if decoder_mask else 10}  # its own mask, or every position


class Twice(TwoLayers):
    """Block 0 applied twice (shared weights), then block 1."""

    def forward(self, x):
        return self.blocks[1](self.blocks[0](self.blocks[0](x, 1.0), 1.0), 1.0)


def test_a_block_called_twice_is_on_the_device_and_the_next_gets_its_real_input(monkeypatch):
    off = _offload_on_the_side(monkeypatch)
    model, data = Twice(), [x for x, _ in batches()]
    with torch.no_grad():
        real = [model.blocks[0](model.blocks[0](x, 1.0), 1.0) for x in data]  # blocks.1's input
    _watch(model, off)
    found = st.masks(st.oneshot(model, "wanda", data, sparsity=0.5, sequential=False))
    assert off == []
    assert torch.equal(found["blocks.1.fc1.weight"], _wanda_mask(Twice().blocks[1].fc1, real))
