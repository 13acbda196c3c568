import sysconfig
from pathlib import Path

import pytest
import torch

from sparsetorch.data import load
from sparsetorch.data.text import SKIP_DIRS, read_corpus, sequences


@pytest.fixture
def source(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "a.py").write_bytes(b"import os\n")
    (tmp_path / "b" / "c.py").write_bytes("print('é')".encode())
    (tmp_path / "b" / "notes.txt").write_bytes(b"not python")
    (tmp_path / "tests" / "test_x.py").write_bytes(b"skipped")
    (tmp_path / "z.py").write_bytes(b"x = 1")
    return tmp_path


def test_corpus_is_the_sorted_python_files_without_tests(source):
    expected = b"import os\n\n" + "print('é')".encode() + b"\n" + b"x = 1\n"
    assert read_corpus(source, 10**6) == expected
    assert read_corpus(source, 7) == expected[:7]


def test_sequences_are_windows_with_next_byte_targets():
    corpus = bytes(range(200)) * 3  # 600 bytes
    x, y = sequences(corpus, 16)
    tokens = torch.tensor(list(corpus))
    n = (600 - 1) // 16
    assert x.shape == y.shape == (n, 16) and x.dtype == torch.int64
    assert torch.equal(x.flatten(), tokens[: n * 16])
    assert torch.equal(y.flatten(), tokens[1 : n * 16 + 1])


def test_splits_are_seeded_and_partition_the_sequences(source):
    (source / "big.py").write_bytes(bytes(range(32, 127)) * 40)  # 3,800 bytes
    a = load("text", data_dir=source, context=8, seed=0)
    b = load("text", data_dir=source, context=8, seed=0)
    c = load("text", data_dir=source, context=8, seed=1)
    total = (len(read_corpus(source, 10**6)) - 1) // 8
    assert len(a.train) + len(a.val) + len(a.test) == total
    assert len(a.val) == len(a.test) == round(0.05 * total)
    assert torch.equal(a.test.x, b.test.x) and not torch.equal(a.test.x, c.test.x)
    assert (a.name, a.num_classes, a.input_shape) == ("text", 256, (8,))
    x, _ = sequences(read_corpus(source, 10**6), 8)
    rows = {tuple(r.tolist()) for r in x}
    assert all(tuple(r.tolist()) in rows for s in (a.train, a.val, a.test) for r in s.x)


def first_stdlib_file() -> Path:
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = [p for p in root.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(root).parts[:-1])]
    return min(paths, key=lambda p: p.relative_to(root).as_posix())


def test_default_corpus_is_the_standard_library():
    ds = load("text", context=32, max_bytes=5000)
    assert ds.input_shape == (32,)
    head = first_stdlib_file().read_bytes()[:100]
    assert read_corpus(sysconfig.get_paths()["stdlib"], 100) == head
    assert len(ds.train) + len(ds.val) + len(ds.test) == (5000 - 1) // 32


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"context": 0}, ValueError, "context must be an integer >= 1"),
        ({"max_bytes": 0}, ValueError, "max_bytes must be an integer >= 1"),
        ({"val_fraction": 0.5}, ValueError, r"val_fraction must be in \(0, 0.5\)"),
        ({"context": 10, "max_bytes": 25}, ValueError, "gives 2 sequences of context 10"),
    ],
)
def test_bad_options(source, kwargs, error, message):
    with pytest.raises(error, match=message):
        load("text", data_dir=source, **kwargs)


def test_bad_data_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load("text", data_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match=r"holds no \*.py files"):
        load("text", data_dir=tmp_path)
