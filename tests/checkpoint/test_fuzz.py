"""Random corruptions of a checkpoint holding every encoding: each must raise CheckpointError
or (when it only touches bytes that do not matter, e.g. header whitespace) load identical data.
Never another exception, never silently different weights."""

import random

import pytest
import torch

from sparsetorch.checkpoint import CheckpointError, load, save
from tests.checkpoint.helpers import assert_bitwise, make_mask, masked_weight, read_raw


def _state():
    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, shape, pattern, density in [
        ("bitmask", (16, 32), "unstructured", 0.4),
        ("delta", (64, 64), "unstructured", 0.01),
        ("csr", (64, 144), "unstructured", 0.05),
        ("nm", (16, 32), "2:4", 0.5),
        ("block", (16, 32), "block4x4", 0.5),
        ("channel", (16, 8), "channel", 0.5),
    ]:
        mask = make_mask(shape, pattern, density, gen)
        state[f"{name}.weight"] = masked_weight(mask, torch.float16, gen)
        state[f"{name}.weight_sparsity_mask"] = mask
    state["dense.bias"] = torch.randn(7, generator=gen)
    state["flags"] = torch.rand(500, generator=gen) < 0.1
    state["tied"] = state["nm.weight"]
    return state


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = save(_state(), tmp_path_factory.mktemp("fuzz") / "clean.safetensors")
    _, meta = read_raw(path)
    encodings = {e["encoding"] for e in meta["tensors"].values()}
    assert {"bitmask", "delta16", "csr", "nm", "block", "dense", "mask_of", "alias"} <= encodings
    return path.read_bytes(), load(path)


def _corruptions(data: bytes, rng: random.Random):
    for _ in range(150):  # single flipped bytes
        out = bytearray(data)
        at = rng.randrange(len(out))
        out[at] ^= rng.randrange(1, 256)
        yield bytes(out)
    for _ in range(30):  # truncations
        yield data[: rng.randrange(len(data))]
    for _ in range(30):  # random runs overwritten
        out = bytearray(data)
        at = rng.randrange(len(out))
        run = rng.randrange(1, 17)
        out[at : at + run] = bytes(rng.randrange(256) for _ in range(run))
        yield bytes(out[: len(data)])
    for _ in range(10):  # garbage appended
        yield data + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))


def test_random_corruptions_raise_cleanly_or_load_identical_data(original, tmp_path):
    data, expected = original
    path = tmp_path / "corrupt.safetensors"
    outcomes = {"error": 0, "identical": 0}
    for corrupt in _corruptions(data, random.Random(1234)):
        path.write_bytes(corrupt)
        try:
            got = load(path)
        except CheckpointError:
            outcomes["error"] += 1
            continue
        assert_bitwise(got, expected)
        outcomes["identical"] += 1
    assert outcomes["error"] > 150  # most corruptions are caught, not ignored
