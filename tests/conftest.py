import atexit
import os
import shutil
import tempfile

import pytest
import torch

# The dispatcher caches its decisions on disk (~/.cache/sparsetorch by default): tests measure
# into a fresh directory instead, so they neither read a stale decision nor write the user's.
os.environ["SPARSETORCH_CACHE"] = tempfile.mkdtemp(prefix="sparsetorch-tests-")
atexit.register(shutil.rmtree, os.environ["SPARSETORCH_CACHE"], ignore_errors=True)

# Tests use tiny tensors: one intra-op thread is faster than two, and far faster on a machine
# shared with other work (thread contention slowed small training loops up to 28x).
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test starts with one intra-op thread and leaves the count as it found it (a CLI
    test's --threads or a benchmark helper may change it); on a shared, loaded 2-core machine
    OpenMP spin-waiting made two threads up to 100x slower for these tiny models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _registries_restored():
    """What a test (or a docs example it runs) registers is gone after it, so no test depends
    on another's order. Entries the package itself registers (a module of sparsetorch imported
    for the first time during the test) stay: that import will not run again."""
    from sparsetorch._registry import Registry

    def ours(factory) -> bool:
        return getattr(factory, "__module__", "").startswith("sparsetorch.")

    before = {id(r): (dict(r._named), list(r._parsed)) for r in Registry.instances()}
    yield
    for registry in Registry.instances():  # also those made by an import during the test
        named, parsed = before.get(id(registry), ({}, []))
        kept = {k: v for k, v in registry._named.items() if k not in named and ours(v)}
        registry._named.clear()
        registry._named.update(named)
        registry._named.update(kept)
        new = [e for e in registry._parsed if e not in parsed and ours(e[2])]
        registry._parsed[:] = parsed + new
