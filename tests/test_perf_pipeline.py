"""The perf suite end to end on the CPU interpreter (CSV, PNG, summary, resume), and its parts:
sweeps as data, the FLOP formula, merging results of several GPUs, the target checks."""

from __future__ import annotations

import dataclasses

import math

import pytest
import torch

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from tritongru import __main__ as cli  # noqa: E402
from tritongru.kernels import settings  # noqa: E402

cli._load_perf()  # puts the checkout's perf/ on the path

from perf import machine, measure, providers, store, sweeps, targets  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter sweep's CPU path")
def test_interpreter_sweep_end_to_end(tmp_path, capsys, monkeypatch):
    # A fixed revision: the checkout's own (commit + hash of uncommitted changes) may move between the two runs.
    monkeypatch.setenv("TRITONGRU_SOURCE_REVISION", "test-revision")
    argv = ["bench", "--sweep", "interpreter", "--hidden", "16", "--batch", "1", "--repeats", "2", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "NOT GPU NUMBERS" in out
    folder = tmp_path / "cpu-interpreter"
    frame = pd.read_csv(folder / "results.csv")
    assert list(frame.columns[: len(store.COLUMNS)]) == store.COLUMNS
    assert sorted(zip(frame["mode"], frame["provider"])) == [
        ("fwd_bwd", "reference"), ("fwd_bwd", "tritongru"), ("inference", "reference"), ("inference", "tritongru")
    ]
    assert (frame["status"] == "ok").all() and frame["cpu_interpreter"].all() and (frame["commit"] == "test-revision").all()
    assert frame["timing_note"].str.contains("NOT GPU NUMBERS").all()
    assert (frame["timer"] == "wall clock (CPU)").all()
    assert (frame["out_err"] < 1e-5).all()
    training = frame["mode"] == "fwd_bwd"
    assert (frame.loc[training, "grad_err"] < 1e-5).all() and frame.loc[~training, "grad_err"].isna().all()
    assert ((frame["p20_ms"] <= frame["p50_ms"]) & (frame["p50_ms"] <= frame["p80_ms"])).all()
    steps = 4  # T=4, one layer, one direction
    assert frame["us_per_step"].to_numpy() == pytest.approx(frame["p50_ms"].to_numpy() * 1e3 / steps)
    assert (frame["tflops"] > 0).all() and frame["peak_mem_mib"].isna().all() and frame["speedup_vs_cudnn"].isna().all()
    ours = frame[frame["provider"] == "tritongru"]
    assert (ours["config_source"] == "interpreter").all() and ours["config"].str.startswith("b16/").all()
    assert (folder / "latency_per_step.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (folder / "SUMMARY.md").read_text()
    assert "CPU INTERPRETER TIMES" in summary and "NOT GPU NUMBERS" in summary
    assert "![latency_per_step](latency_per_step.png)" in summary and "not applicable" in summary
    assert len(list((folder / "runs").glob("*.csv"))) == 1

    assert "Where a step's time goes" not in summary  # no breakdown run yet

    # Everything is measured for this machine and commit: a second run only rewrites the report,
    # now with the breakdown this commit wrote beside it.
    from perf import breakdown

    assert breakdown.main(["--hidden", "16", "--batch", "1", "--seq-len", "2", "--dtype", "float32",
                           "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "2 cases were already measured" in capsys.readouterr().out
    assert len(pd.read_csv(folder / "results.csv")) == 4
    assert len(list((folder / "runs").glob("*.csv"))) == 1
    summary = (folder / "SUMMARY.md").read_text()
    assert "## Where a step's time goes" in summary
    assert "| dtype | seq_len | hidden | batch | full | no-matmul | no-barrier | eager-stall-check |" in summary
    assert "| float32 | 2 | 16 | 1 |" in summary


def test_cpu_sweep_compares_the_cpu_path_with_nn_gru(tmp_path, capsys, monkeypatch):
    """``make perf`` without a GPU: tritongru.GRU's CPU path beside nn.GRU, labelled as CPU numbers,
    with time and memory ratios and the CPU targets' verdicts."""
    monkeypatch.setenv("TRITONGRU_SOURCE_REVISION", "test-revision")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["bench", "--sweep", "cpu", "--hidden", "128", "--repeats", "1", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    assert "CPU TIMES" in capsys.readouterr().out
    folder = next(tmp_path.glob("cpu-*"))
    frame = pd.read_csv(folder / "results.csv")
    assert sorted(frame["provider"]) == ["nn-gru-cpu", "tritongru-cpu"] and (frame["status"] == "ok").all()
    assert (frame["out_err"] < 1e-5).all() and (frame["grad_err"] < 1e-5).all()
    assert not frame["cpu_interpreter"].any() and frame["timing_note"].str.contains("NOT GPU NUMBERS").all()
    ours = frame[frame["provider"] == "tritongru-cpu"].iloc[0]
    assert ours["saved_mib"] > 0 and ours["time_vs_nn_gru"] > 0
    # The same operator on the same weights keeps the same tensors for the backward.
    assert ours["saved_vs_nn_gru"] == pytest.approx(1.0)
    summary = (folder / "SUMMARY.md").read_text()
    assert "CPU: training memory (saved for the backward) within 1.5x of nn.GRU's | met |" in summary


def _row(gpu, case_id, provider, p50, commit="abc", status="ok"):
    return {"gpu": gpu, "commit": commit, "settings": "s", "case_id": case_id, "provider": provider, "status": status, "p50_ms": p50}


def test_merge_replaces_same_key_rows_and_keeps_other_gpus(tmp_path):
    path = tmp_path / "results.csv"
    store.merge(path, [_row("H100", "c1", "cudnn", 2.0), _row("H100", "c1", "tritongru", 1.0), _row("H200", "c1", "tritongru", 4.0)])
    merged = store.merge(path, [_row("H200", "c1", "tritongru", 0.5), _row("H200", "c1", "cudnn", 1.0)])
    assert len(merged) == 4
    by_key = {(gpu, provider): row for gpu, provider, row in zip(merged["gpu"], merged["provider"], merged.to_dict("records"))}
    assert by_key[("H100", "tritongru")]["p50_ms"] == 1.0 and by_key[("H100", "tritongru")]["speedup_vs_cudnn"] == 2.0
    assert by_key[("H200", "tritongru")]["p50_ms"] == 0.5 and by_key[("H200", "tritongru")]["speedup_vs_cudnn"] == 2.0
    assert pd.read_csv(path, dtype=str)["commit"].eq("abc").all()


def test_resume_skips_measured_and_skipped_rows_not_errors():
    frame = pd.DataFrame([
        _row("H200", "c1", "tritongru", 1.0), _row("H200", "c1", "compile", math.nan, status="skipped"),
        _row("H200", "c1", "cudnn", math.nan, status="error"), _row("H200", "c2", "tritongru", 1.0, commit="old"),
        _row("H100", "c3", "tritongru", 1.0),
    ])
    assert store.done_cases(frame, "H200", "abc", "s") == {("c1", "tritongru"), ("c1", "compile")}


def test_flop_formula():
    case = sweeps.Case(batch=2, hidden=4, input_size=3, seq_len=5, layers=2, directions=2, dtype="float32", mode="inference")
    per_step_l0 = 2 * 2 * 12 * (3 + 4) + measure.ELEMENTWISE_FLOPS * 2 * 4
    per_step_l1 = 2 * 2 * 12 * (8 + 4) + measure.ELEMENTWISE_FLOPS * 2 * 4  # layer 1 reads both directions
    assert measure.case_flops(case) == 2 * 5 * (per_step_l0 + per_step_l1)
    training = sweeps.Case(**{**case.__dict__, "mode": "fwd_bwd"})
    assert measure.case_flops(training) == 3 * measure.case_flops(case)
    assert case.sequential_steps == 20


def test_kernelbench_sweep_is_tasks_39_to_42():
    cases = sweeps.SWEEPS["kernelbench"].cases
    assert {case.task for case in cases} == {"kernelbench-39", "kernelbench-40", "kernelbench-41", "kernelbench-42"}
    for case in cases:
        assert (case.seq_len, case.batch, case.input_size, case.hidden, case.layers, case.dtype) == (512, 10, 128, 256, 6, "float32")
        number = int(case.task.rsplit("-", 1)[1])
        assert case.directions == (2 if number in (41, 42) else 1)
        assert case.returns == ("output" if number in (39, 41) else "h_n")


def test_sweeps_are_consistent():
    assert set(providers.PROVIDERS) == set(sweeps.ALL_PROVIDERS) | set(sweeps.CPU_PROVIDERS)
    for sweep in sweeps.SWEEPS.values():
        assert set(sweep.providers) <= set(providers.PROVIDERS)
        assert len({case.case_id for case in sweep.cases}) == len(sweep.cases)
    for case in sweeps.SWEEPS["interpreter"].cases:
        assert case.seq_len <= 8 and case.batch <= 4 and case.hidden <= 32 and case.dtype == "float32"
    with pytest.raises(ValueError, match="mode must be one of"):
        sweeps.Case(1, 16, 8, 4, 1, 1, "float32", "training")


def test_compile_provider_skips_long_loops_with_a_reason():
    long_case = sweeps.SWEEPS["kernelbench"].cases[0]
    reason = providers.PROVIDERS["compile"].skip_reason(long_case, torch.device("cuda", 0))
    assert "3072 sequential steps > 64" in reason  # 512 steps x 6 layers
    assert providers.PROVIDERS["cudnn"].skip_reason(long_case, torch.device("cpu")) == "cuDNN needs a CUDA device, this run is on cpu"


def test_targets_verdicts():
    def rows(speedup, us_per_step=1.0, gpu="NVIDIA H200"):
        return pd.DataFrame([
            {"gpu": gpu, "provider": "tritongru", "status": "ok", "dtype": "bfloat16", "seq_len": 1024, "layers": 1,
             "directions": 1, "task": "", "mode": "inference", "hidden": 1024, "batch": batch,
             "speedup_vs_cudnn": speedup, "us_per_step": us_per_step}
            for batch in (1, 16, 64)
        ])

    verdicts = {target.description: verdict for target, verdict, _ in targets.evaluate(rows(2.5))}
    assert verdicts["inference >= 2x cuDNN, hidden 256/512/1024, batch 1/16/64"] == "met"
    assert verdicts["per-step latency < 2 us at batch 1, hidden 1024 (inference)"] == "met"
    assert verdicts["fwd+bwd >= 1.5x cuDNN, hidden 256/512/1024, batch 1/16/64"] == "not measured"
    verdicts = {target.description: verdict for target, verdict, _ in targets.evaluate(rows(1.5, us_per_step=3.0))}
    assert verdicts["inference >= 2x cuDNN, hidden 256/512/1024, batch 1/16/64"] == "NOT met"
    assert verdicts["per-step latency < 2 us at batch 1, hidden 1024 (inference)"] == "NOT met"
    assert {verdict for _, verdict, _ in targets.evaluate(rows(2.5, gpu="NVIDIA A100"))} == {"not applicable"}


def test_source_revision(monkeypatch):
    monkeypatch.delenv(settings.SOURCE_REVISION_ENV, raising=False)
    revision = machine.source_revision()
    assert revision == "unknown" or len(revision.split("+")[0]) == 12
    monkeypatch.setenv(settings.SOURCE_REVISION_ENV, "abc123")
    assert machine.source_revision() == "abc123"


def test_breakdown_on_the_interpreter_writes_labelled_rows(tmp_path):
    """perf.breakdown end to end on the CPU: every variant timed, labelled as interpreter times."""
    import pandas as pd

    from perf import breakdown

    assert breakdown.main(["--hidden", "20", "--batch", "2", "--seq-len", "2", "--dtype", "float32",
                           "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "cpu-interpreter" / "breakdown.csv")
    # The interpreter's one program holds all of W_hh: no hidden slices, so no ready-flag variants.
    assert sorted(frame["variant"]) == sorted(v for v, spec in breakdown.VARIANTS.items() if spec.exchange == "barrier")
    fused = frame.set_index("variant").loc["two-directions-one-launch"]
    assert fused["vs"] == "two-directions-two-launches" and fused["us_per_step"] > 0
    assert frame["cpu_interpreter"].all() and (frame["us_per_step"] > 0).all()
    no_matmul = frame.set_index("variant").loc["no-matmul"]
    assert no_matmul["vs"] == "full" and no_matmul["saved_us_per_step"] == pytest.approx(
        frame.set_index("variant").loc["full", "us_per_step"] - no_matmul["us_per_step"])


def test_breakdown_offers_flags_for_resident_slices_and_one_launch_where_both_fit():
    from perf import breakdown
    from tritongru.kernels.launch import PersistentConfig

    sliced = PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=64)
    assert "flags-no-wait" in breakdown.variants_for(sliced, 1024, True)
    assert "flags" not in breakdown.variants_for(dataclasses.replace(sliced, resident=False), 1024, True)
    assert "flags" not in breakdown.variants_for(dataclasses.replace(sliced, block_h=1024, num_programs=1), 1024, True)
    assert "two-directions-one-launch" not in breakdown.variants_for(sliced, 1024, False)
