"""One-shot pruning on CUDA: the same result as on the CPU, and offloading (one block on the GPU
at a time) gives the same model as pruning on the GPU, with less GPU memory."""

import copy

import pytest
import torch

import sparsetorch as st
from tests.post_training.helpers import Stack

pytestmark = pytest.mark.gpu


def _batches(d, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 32, d, generator=g) for _ in range(n)]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_cuda_matches_the_cpu(method, pattern):
    model, batches = Stack(d=64, hidden=128, depth=3).double(), _batches(64)
    batches = [b.double() for b in batches]
    options = {"pattern": pattern} if pattern else {"sparsity": 0.5}
    cpu = st.oneshot(copy.deepcopy(model), method, batches, **options)
    gpu = st.oneshot(copy.deepcopy(model).cuda(), method, batches, **options)  # batches moved
    for name, mask in st.masks(cpu).items():
        other = st.masks(gpu)[name]
        assert other.is_cuda
        assert (other.cpu() == mask).float().mean() > 0.995, name
    for key, value in cpu.state_dict().items():
        if value.is_floating_point():
            both = st.masks(cpu).get(key, None)
            a, b = value, gpu.state_dict()[key].cpu()
            if both is not None:
                same = both & st.masks(gpu)[key].cpu()
                a, b = a[same], b[same]
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def _offloaded_peak(model, batches):
    """(pruned model, peak GPU bytes above what was allocated before) of an offloaded run."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    pruned = st.oneshot(copy.deepcopy(model), "sparsegpt", batches, pattern="2:4",
                        device="cuda")  # fmt: skip
    return pruned, torch.cuda.max_memory_allocated() - before


def test_offloading_gives_the_gpu_result_bitwise_with_less_gpu_memory():
    """One block on the GPU at a time: the peak does not grow with depth (a layer's Hessian
    and its inverse are a fixed cost), and is well under the model's bytes."""
    batches = _batches(256)
    shallow, deep = (Stack(d=256, hidden=1024, depth=depth) for depth in (4, 32))
    _, peak_shallow = _offloaded_peak(shallow, batches)
    offloaded, peak = _offloaded_peak(deep, batches)
    model_bytes = sum(p.numel() * p.element_size() for p in deep.parameters())
    assert all(t.device.type == "cpu" for t in offloaded.state_dict().values())
    assert peak < 1.25 * peak_shallow, (peak, peak_shallow)
    assert peak < 0.6 * model_bytes, (peak, model_bytes)
    on_gpu = st.oneshot(copy.deepcopy(deep).cuda(), "sparsegpt", batches, pattern="2:4")
    state = on_gpu.state_dict()
    for key, value in offloaded.state_dict().items():
        assert torch.equal(value, state[key].cpu()), key


def test_without_offloading_the_model_moves_to_the_gpu():
    model = st.oneshot(Stack(), "wanda", _batches(16), sparsity=0.5, device="cuda",
                       offload=False)  # fmt: skip
    assert all(t.is_cuda for t in model.state_dict().values())


@pytest.mark.parametrize("sequential", [True, False])
def test_offloading_an_encoder_decoder_equals_pruning_it_on_the_cpu(sequential):
    """Recording the decoder runs the encoder: its blocks must be on the GPU while they run."""
    from tests.post_training.test_stacks import EncoderDecoder, batches

    data = batches()
    on_cpu = st.oneshot(EncoderDecoder().double(), "wanda", [tuple(t.double() for t in b)
                        for b in data], sparsity=0.5, sequential=sequential)  # fmt: skip
    offloaded = st.oneshot(EncoderDecoder().double(), "wanda", [tuple(t.double() for t in b)
                           for b in data], sparsity=0.5, sequential=sequential,
                           device="cuda")  # fmt: skip
    assert all(t.device.type == "cpu" for t in offloaded.state_dict().values())
    masks = st.masks(offloaded)
    for name, mask in st.masks(on_cpu).items():
        assert (masks[name] == mask).float().mean() > 0.995, name
