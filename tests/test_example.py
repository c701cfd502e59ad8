"""examples/char_lm.py: both GRU implementations train identically from the same seed, a
checkpoint loads into either implementation, sampling works, and the script's CLI runs.

Everything runs on the CPU at tiny sizes. There ``--impl tritongru`` runs the Triton kernels
through the interpreter (TRITON_INTERPRET=1, which tests/conftest.py sets without a GPU) or,
without it, tritongru's reference; ``test_kernels_ran`` checks which one ran.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tritongru.ops
from tritongru import _compat

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "char_lm.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("char_lm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["char_lm"] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


char_lm = _load_example()
TEXT = char_lm.load_text(char_lm.DEFAULT_DATA)

# Tiny enough for the interpreter: 2 layers x 6 steps x batch 3 runs in about a second per step.
TINY = dict(steps=4, seq_len=6, batch=3, embed=8, hidden=16, layers=2, eval_batches=1)

# Same seed, same batches, same initial weights: what may differ is only the rounding of the GRU's
# sums (the kernels and nn.GRU add in different orders). In float64 that is ~1e-16 relative, and
# after 4 Adam steps parameters agree to ~1e-15 (measured 3e-15). In float32 the GRU outputs differ
# by ~1e-7 relative; Adam's first steps move each weight by about lr * sign(grad), so a gradient
# element that is pure rounding noise can move differently by up to 2 * lr = 6e-3 per step, but in
# practice the largest parameter difference after 4 steps is ~2e-6 (measured 2.4e-6). A wrong
# gradient anywhere moves parameters by ~lr = 3e-3 per step and losses by ~1e-2, far beyond these.
LOSS_TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5)}
PARAM_TOL = {"float64": dict(rtol=0, atol=1e-12), "float32": dict(rtol=0, atol=1e-4)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these tiny ops gain nothing from two, and on a CPU shared with other
    jobs two spinning threads made the 60-step training test 3-10x slower. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    """Both impls trained from the same seed, in both dtypes: {(dtype, impl): TrainResult}."""
    results = {}
    for dtype in ("float64", "float32"):
        for impl in ("torch", "tritongru"):
            config = char_lm.Config(impl=impl, dtype=dtype, **TINY)
            results[dtype, impl] = char_lm.train(config, "cpu", progress=False, log_every=0, text=TEXT)
    return results


def test_initial_weights_identical_for_both_impls():
    config = char_lm.Config(**TINY)
    vocab = char_lm.CharVocab.from_text(TEXT)
    a = char_lm.build_model(len(vocab), config)
    b = char_lm.build_model(len(vocab), char_lm.Config(**{**TINY, "impl": "torch"}))
    assert type(a.gru).__module__.startswith("tritongru") and type(b.gru) is torch.nn.GRU
    assert a.state_dict().keys() == b.state_dict().keys()
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_same_seed_same_losses(trained, dtype):
    ours, ref = trained[dtype, "tritongru"], trained[dtype, "torch"]
    assert len(ours.losses) == len(ref.losses) == TINY["steps"]
    # The losses change from step to step (so the comparison is not of four copies of one number).
    assert len(set(round(loss, 3) for loss in ref.losses)) > 1
    torch.testing.assert_close(torch.tensor(ours.losses), torch.tensor(ref.losses), **LOSS_TOL[dtype])
    torch.testing.assert_close(torch.tensor(ours.val_loss), torch.tensor(ref.val_loss), **LOSS_TOL[dtype])
    ref_state = ref.model.state_dict()
    for key, value in ours.model.state_dict().items():
        torch.testing.assert_close(value, ref_state[key], **PARAM_TOL[dtype], msg=lambda m, key=key: f"{key}: {m}")


def test_kernels_ran(monkeypatch):
    """``--impl tritongru`` on a CPU runs the kernels under TRITON_INTERPRET=1 (a unidirectional
    stack in one launch), else PyTorch's GRU operator."""
    calls = []
    for name in ("gru_forward", "gru_stack_forward"):
        launcher = getattr(tritongru.ops, name)
        monkeypatch.setattr(tritongru.ops, name, lambda *args, launcher=launcher, name=name, **kwargs: (
            calls.append(name), launcher(*args, **kwargs))[1])
    config = char_lm.Config(**{**TINY, "steps": 1, "eval_batches": 0})
    result = char_lm.train(config, "cpu", progress=False, log_every=0, text=TEXT)
    assert len(result.losses) == 1
    if _compat.INTERPRET:
        expected = ["gru_stack_forward"] if TINY["layers"] > 1 else ["gru_forward"]
        assert calls == expected, "one kernel launch for the stack"
    else:
        assert not calls


def test_training_reduces_loss():
    # nn.GRU on the CPU is fast enough for 60 real steps. The loss starts at ~ln(143) = 4.96 (uniform
    # over the vocabulary); the text's unigram entropy is 3.29 nats/char, so a model that ends below
    # 3.0 (measured 2.65-2.76 over seeds 0-2) and predicts held-out text below 3.29 (measured
    # 3.08-3.11) uses its context. Misaligned targets or broken batches stay at or above unigram level.
    config = char_lm.Config(impl="torch", steps=60, seq_len=32, batch=16, embed=16, hidden=64, layers=1,
                            lr=1e-2, eval_batches=2)
    result = char_lm.train(config, "cpu", progress=False, log_every=0, text=TEXT)
    first, last = result.losses[0], sum(result.losses[-10:]) / 10
    assert first > 4.5
    assert last < 3.0, result.losses
    assert result.val_loss < 3.29


@pytest.mark.parametrize("load_as", ["torch", "tritongru"])
def test_checkpoint_round_trip(trained, tmp_path, load_as):
    trained_run = trained["float64", "tritongru"]
    config = char_lm.Config(impl="tritongru", dtype="float64", **TINY)
    path = tmp_path / "char_lm.pt"
    char_lm.save_checkpoint(path, trained_run.model, trained_run.vocab, config, trained_run.losses)
    model, vocab, loaded_config = char_lm.load_checkpoint(path, impl=load_as)
    assert loaded_config == config  # the config it was trained with
    assert vocab.chars == trained_run.vocab.chars
    expected_gru = torch.nn.GRU if load_as == "torch" else tritongru.GRU
    assert type(model.gru) is expected_gru
    for key, value in trained_run.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    # The reloaded model computes what the trained one does (float64: ~1e-15 apart).
    tokens = torch.randint(0, len(vocab), (2, 5), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, h_expected = trained_run.model(tokens)
        actual, h_actual = model(tokens)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_actual, h_expected, rtol=1e-12, atol=1e-12)


def test_sampling_is_seeded_and_impl_independent(trained):
    run = trained["float64", "tritongru"]
    text = char_lm.sample(run.model, run.vocab, 5, prompt="The ", seed=7)
    assert len(text) == 5 and set(text) <= set(run.vocab.chars)
    assert char_lm.sample(run.model, run.vocab, 5, prompt="The ", seed=7) == text
    # The torch-trained float64 model has the same weights to ~1e-15, hence the same probabilities
    # and, from the same seed, the same characters.
    other = trained["float64", "torch"]
    assert char_lm.sample(other.model, other.vocab, 5, prompt="The ", seed=7) == text


def test_sampling_carries_the_state():
    """Sampling feeds one character per call; the logits must be those of the whole sequence."""
    config = char_lm.Config(impl="tritongru", dtype="float64", **TINY)
    vocab = char_lm.CharVocab.from_text(TEXT)
    model = char_lm.build_model(len(vocab), config).eval()
    tokens = torch.randint(0, len(vocab), (1, 4), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        whole, _ = model(tokens)
        logits, h = model(tokens[:, :1])
        steps = [logits]
        for t in range(1, tokens.shape[1]):
            logits, h = model(tokens[:, t : t + 1], h)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=1e-12, atol=1e-12)


def test_sample_rejects_unknown_prompt_characters(trained):
    run = trained["float64", "torch"]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        char_lm.sample(run.model, run.vocab, 1, prompt="\x00")


def test_main_trains_saves_and_samples(tmp_path, capsys):
    checkpoint = tmp_path / "run.pt"
    args = ["--impl", "tritongru", "--steps", "2", "--seq-len", "5", "--batch", "2", "--embed", "8",
            "--hidden", "16", "--layers", "1", "--device", "cpu", "--checkpoint", str(checkpoint),
            "--sample", "3", "--prompt", "A", "--no-progress", "--log-every", "1"]
    assert char_lm.main(args) == 0
    out = capsys.readouterr().out
    assert "step      0  loss" in out and "step      1  loss" in out
    assert f"saved {checkpoint}" in out
    assert "--- sample ---" in out
    assert checkpoint.exists()
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["config"]["impl"] == "tritongru" and len(saved["losses"]) == 2

    # Load the tritongru checkpoint into nn.GRU, sample only.
    assert char_lm.main(["--impl", "torch", "--steps", "0", "--load", str(checkpoint), "--device", "cpu",
                         "--sample", "4", "--prompt", "A"]) == 0
    out = capsys.readouterr().out
    assert "trained with --impl tritongru" in out and "--- sample ---" in out
    sample_text = out.split("--- sample ---\n", 1)[1]
    assert sample_text.startswith("A") and len(sample_text) == len("A") + 4 + len("\n")


def test_cli_help_runs_as_a_script():
    result = subprocess.run([sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for flag in ("--impl", "--steps", "--seq-len", "--batch", "--hidden", "--layers", "--seed", "--device",
                 "--checkpoint", "--sample"):
        assert flag in result.stdout
    assert "{tritongru,torch}" in result.stdout
