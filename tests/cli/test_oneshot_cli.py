import argparse

import pytest
import torch

import sparsetorch as st
from sparsetorch.cli import build_parser, main
from sparsetorch.data.text import sequences
from sparsetorch.experiments import Hparams
from sparsetorch.experiments.reporting import model_from_run
from sparsetorch.experiments.runner import train
from sparsetorch.masking import masks_from_state_dict
from sparsetorch.patterns import NM
from sparsetorch.post_training import SparseGPT
from tests.post_training.helpers import needs_transformers

TEXT = "def f(x):\n    return x + 1\n\nclass A:\n    value = 'text'\n" * 60


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small transformer trained for a few steps on a tiny text corpus."""
    root = tmp_path_factory.mktemp("oneshot_cli")
    (root / "src").mkdir()
    (root / "src" / "a.py").write_text(TEXT)
    hp = Hparams()
    hp.model.name, hp.dataset.name = "transformer", "text"
    hp.model.options = {"d_model": 16, "n_heads": 2}
    hp.dataset.data_dir, hp.dataset.options = str(root / "src"), {"context": 32}
    hp.training.steps, hp.training.batch_size, hp.training.lr = 6, 8, 3e-3
    return train(hp, root / "runs").run_dir


def _calibration(path, seq_len, samples, seed, batch_size):
    """The batches the CLI draws from a text file (windows of seq_len bytes, seeded sample)."""
    windows = sequences(path.read_bytes(), seq_len)[0]
    order = torch.randperm(windows.shape[0], generator=torch.Generator().manual_seed(seed))
    return list(torch.split(windows[order[:samples]], batch_size))


def test_a_run_dir_pruned_by_the_cli_equals_the_library_call(run_dir, tmp_path, capsys):
    text = tmp_path / "calibration.txt"
    text.write_text(TEXT[::-1])
    out = tmp_path / "pruned.pt"
    args = ["oneshot", "--model", str(run_dir), "--method", "sparsegpt", "--pattern", "4:8"]
    args += ["--calibration", str(text), "--samples", "12", "--batch-size", "5", "--seed", "3"]
    assert main([*args, "--dampening", "0.05", "--seq-len", "24", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sparsegpt pruned 8 layers to sparsity 0.5000" in printed
    assert "on 288 calibration tokens" in printed and f"pruned model: {out}" in printed
    state = torch.load(out, weights_only=True)
    model, _ = model_from_run(run_dir)
    calibration = _calibration(text, 24, 12, 3, 5)
    st.oneshot(model, SparseGPT(dampening=0.05), calibration, pattern="4:8")
    expected = model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)
    assert all(NM(4, 8).is_valid(m) for m in masks_from_state_dict(state).values())


def test_the_run_s_own_text_and_a_compressed_checkpoint(run_dir, tmp_path, capsys):
    out = tmp_path / "pruned.safetensors"
    args = ["oneshot", "--model", str(run_dir), "--sparsity", "0.6", "--samples", "4"]
    assert main([*args, "--no-sequential", "--out", str(out)]) == 0
    # Wanda keeps round(0.4 * in) of every row: 6 of 16 inputs, 26 of 64
    kept = 2 * (6 * (48 + 16 + 64) + 26 * 16)
    assert f"wanda pruned 8 layers to sparsity {1 - kept / 6144:.4f}" in capsys.readouterr().out
    model, _ = model_from_run(run_dir)
    st.load(out, model)
    assert len(st.masks(model)) == 8
    assert sum(int(m.sum()) for m in st.masks(model).values()) == kept


def test_cli_errors(run_dir, tmp_path, capsys):
    base = ["oneshot", "--model", str(run_dir), "--sparsity", "0.5"]
    cases = [
        ([*base, "--blocksize", "64"], "--blocksize only apply to --method sparsegpt"),
        ([*base, "--dtype", "bfloat16"], "--tokenizer and --dtype only apply to Hugging Face"),
        ([*base, "--samples", "0"], "--samples must be >= 1, got 0"),
        ([*base, "--seq-len", "64"], "--seq-len 64 exceeds the model's context 32"),
        ([*base, "--calibration", str(tmp_path / "none.txt")], "is neither 'text' nor a file"),
        ([*base, "--pattern", "block4x4"], "supports the patterns unstructured and N:M"),
        ([*base, "--method", "obs"], "unknown one-shot method 'obs'"),
        (["oneshot", "--model", str(tmp_path), "--sparsity", "0.5"], "neither a Hugging Face"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """An MLP trained for a few steps on scikit-learn's digits (images, not text)."""
    hp = Hparams()
    hp.model.name, hp.dataset.name = "mlp", "digits"
    hp.model.options = {"hidden": [32]}
    hp.training.steps, hp.training.batch_size = 4, 16
    return train(hp, tmp_path_factory.mktemp("oneshot_images")).run_dir


def test_a_run_on_images_calibrates_on_its_own_training_inputs(image_run, tmp_path, capsys):
    from sparsetorch.experiments.rundir import RunDir
    from sparsetorch.experiments.runner import prepare_dataset

    out = tmp_path / "pruned.pt"
    args = ["oneshot", "--model", str(image_run), "--sparsity", "0.5", "--samples", "40"]
    assert main([*args, "--batch-size", "16", "--seed", "2", "--out", str(out)]) == 0
    assert "on 40 calibration inputs" in capsys.readouterr().out
    model, _ = model_from_run(image_run)
    x = prepare_dataset(RunDir(image_run).hparams().dataset).train.x
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(2))[:40]
    st.oneshot(model, "wanda", list(torch.split(x[order], 16)), sparsity=0.5)
    state, expected = torch.load(out, weights_only=True), model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)
    assert main([*args, "--method", "magnitude"]) == 0
    assert "calibration" not in capsys.readouterr().out  # data-free: no calibration counted
    cases = [
        ([*args, "--seq-len", "8"], "--calibration and --seq-len are for text"),
        ([*args, "--out", str(tmp_path)], "is a directory; name the file to write"),
        ([*args, "--device", "nonsense"], "device 'nonsense' is not a torch device"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_help_lists_every_flag():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["oneshot"]
    text = sub.format_help()
    for flag in ("--model", "--method", "--sparsity", "--pattern", "--calibration", "--samples",
                 "--seq-len", "--batch-size", "--seed", "--tokenizer", "--dtype", "--blocksize",
                 "--dampening", "--no-sequential", "--blocks", "--device", "--no-offload",
                 "--threads", "--out"):  # fmt: skip
        assert flag in text
    assert "magnitude, sparsegpt, wanda" in text
    assert "(default: None)" not in text


def _hf_dir(tmp_path, kind):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2LMHeadModel,
        PreTrainedTokenizerFast,
        T5Config,
        T5ForConditionalGeneration,
    )

    words = sorted(set(TEXT.split()))
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")
    torch.manual_seed(0)
    if kind == "gpt2":
        config = GPT2Config(vocab_size=len(vocab), n_positions=32, n_embd=32, n_layer=2, n_head=4)
        model = GPT2LMHeadModel(config)
    elif kind == "t5":
        tokenizer.pad_token = "[PAD]"
        config = T5Config(
            vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            decoder_start_token_id=0, pad_token_id=0,
        )  # fmt: skip
        model = T5ForConditionalGeneration(config)
    else:
        tokenizer.pad_token = "[PAD]"
        config = BertConfig(
            vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=32,
        )  # fmt: skip
        model = BertModel(config)
    path = tmp_path / kind
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, type(model)


@needs_transformers
def test_a_hugging_face_gpt2_directory_round_trips_through_save_pretrained(tmp_path, capsys):
    path, cls = _hf_dir(tmp_path, "gpt2")
    text = tmp_path / "lines.txt"
    text.write_text(TEXT)
    out = tmp_path / "pruned"
    args = ["oneshot", "--model", str(path), "--method", "sparsegpt", "--pattern", "2:4"]
    assert main([*args, "--calibration", str(text), "--samples", "40", "--out", str(out)]) == 0
    assert "sparsegpt pruned 8 layers to sparsity 0.5000" in capsys.readouterr().out
    model = cls.from_pretrained(out)
    assert not any(k.endswith("_mask") for k in model.state_dict())  # pruning made permanent
    for i in range(2):
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            weight = model.get_submodule(f"transformer.h.{i}.{name}").weight  # (in, out)
            assert NM(2, 4).is_valid(weight.t() != 0), name
            assert float((weight == 0).float().mean()) == 0.5
    assert (out / "tokenizer.json").is_file()


@needs_transformers
def test_a_hugging_face_bert_directory_to_a_compressed_checkpoint(tmp_path, capsys):
    path, cls = _hf_dir(tmp_path, "bert")
    out = tmp_path / "bert.safetensors"
    args = ["oneshot", "--model", str(path), "--sparsity", "0.5", "--samples", "16"]
    assert main([*args, "--dtype", "bfloat16", "--out", str(out)]) == 0  # 'text': stdlib lines
    assert "wanda pruned 12 layers to sparsity 0.5000" in capsys.readouterr().out
    model = cls.from_pretrained(path, dtype=torch.bfloat16)
    st.load(out, model)
    masks = st.masks(model)
    assert len(masks) == 12 and all(m.float().mean() == 0.5 for m in masks.values())
    assert model.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16


@needs_transformers
def test_an_encoder_decoder_directory_prunes_both_stacks_on_the_lines(tmp_path, capsys):
    """T5 gets each calibration line as its decoder's target too (without it the decoder has
    no input and the model refuses the call); the CLI's masks equal the library call's on the
    same batches."""
    path, cls = _hf_dir(tmp_path, "t5")
    text = tmp_path / "lines.txt"
    text.write_text(TEXT)
    out = tmp_path / "t5.safetensors"
    args = ["oneshot", "--model", str(path), "--sparsity", "0.5", "--samples", "8"]
    assert main([*args, "--calibration", str(text), "--batch-size", "4", "--out", str(out)]) == 0
    # 2 encoder blocks x (q, k, v, o, wi, wo) + 2 decoder blocks x (self q, k, v, o, cross q,
    # k, v, o, wi, wo)
    assert "wanda pruned 32 layers to sparsity 0.5000" in capsys.readouterr().out
    model = cls.from_pretrained(path)
    st.load(out, model)
    got = st.masks(model)
    assert any(name.startswith("decoder.") for name in got)

    from transformers import AutoTokenizer

    from sparsetorch.cli.oneshot import _line_batches

    namespace = argparse.Namespace(
        calibration=str(text), samples=8, seed=0, batch_size=4, seq_len=None
    )
    batches = _line_batches(namespace, AutoTokenizer.from_pretrained(path), True)
    assert all((b["labels"] == -100).eq(b["attention_mask"] == 0).all() for b in batches)
    reference = cls.from_pretrained(path)
    st.oneshot(reference, "wanda", batches, sparsity=0.5)
    want = st.masks(reference)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_the_help_names_every_registered_method():
    from sparsetorch.cli.oneshot import METHOD_NAMES
    from sparsetorch.post_training import METHODS

    assert tuple(METHODS.names()) == METHOD_NAMES
