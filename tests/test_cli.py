"""The ``tritongru`` command line: help, exit codes, and each command on a machine without a GPU."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from tritongru import __main__ as cli
from tritongru import tuned, tuning
from tritongru.kernels import settings

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("info", "bench", "tune", "validate", "compile-report"):
        assert command in out


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: tritongru" in capsys.readouterr().err


def test_bad_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--hidden", "0"])
    assert exit_info.value.code == 2
    assert "expected an integer >= 1, got 0" in capsys.readouterr().err


def test_info(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(settings.TUNING_FILE_ENV, str(tmp_path / "tuning.json"))
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    import triton

    assert f"triton {triton.__version__}" in out and f"torch {torch.__version__}" in out
    assert f"user table {tmp_path / 'tuning.json'}: does not exist" in out
    if not torch.cuda.is_available():
        assert "GPU: none" in out
        assert "tuned table that applies: none (heuristic configurations)" in out


@no_gpu
def test_tune_without_gpu_exits_2(capsys):
    assert cli.main(["tune", "--hidden", "256", "--batch", "16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tritongru tune: error:") and ("GPU" in err or "TRITON_INTERPRET" in err)


def test_tune_names_the_directions_it_takes(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["tune", "--directions", "3"])
    assert exited.value.code == 2
    assert "--directions: invalid choice: 3 (choose from 1, 2)" in capsys.readouterr().err


def test_problem_set_covers_directions_per_launch():
    problems = tuning.problem_set(hiddens=[256], batches=[16], training=[False], directions=[1, 2])
    assert [p.directions for p in problems] == [1, 2]
    assert {tuned.bucket_name(tuned.bucket_key(p)) for p in problems} == {
        "h256_b16_bfloat16_d1_infer", "h256_b16_bfloat16_d2_infer"}


@no_gpu
def test_validate_on_the_interpreter(capsys):
    assert cli.main(["validate"]) == 0
    out = capsys.readouterr().out
    assert "Triton interpreter on the CPU" in out
    assert "all cases within tolerance" in out and "FAIL" not in out


@no_gpu
def test_validate_rejects_a_dtype_without_cases(capsys):
    assert cli.main(["validate", "--dtype", "bfloat16"]) == 2
    assert "no validation case on cpu has dtype ['bfloat16']" in capsys.readouterr().err


def test_compile_report_gets_its_arguments_unparsed(monkeypatch):
    seen = []
    fake = types.ModuleType("tritongru.compile_report")
    fake.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "tritongru.compile_report", fake)
    assert cli.main(["compile-report", "--arch", "90"]) == 3
    assert seen == [["--arch", "90"]]


@pytest.mark.parametrize("report", ["compile-report", "cost-report"])
def test_reports_take_their_own_options(report, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([report, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--hidden" in out and "--exchange" in out
    assert ("--gpu" in out and "--search" in out) == (report == "cost-report")


def test_bench_lists_sweeps(capsys):
    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    for sweep in ("default", "quick", "kernelbench", "cpu", "interpreter"):
        assert sweep in out


@no_gpu
def test_bench_refuses_gpu_sweeps_on_the_cpu(capsys):
    assert cli.main(["bench", "--sweep", "default"]) == 2
    assert "use --sweep cpu (the CPU path against nn.GRU) or --sweep interpreter" in capsys.readouterr().err


def test_bench_unknown_names_are_usage_errors(capsys, tmp_path):
    assert cli.main(["bench", "--sweep", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown sweep 'nope'" in capsys.readouterr().err
    assert cli.main(["bench", "--sweep", "interpreter", "--provider", "magic", "--out", str(tmp_path)]) == 2
    assert "unknown provider(s) ['magic']" in capsys.readouterr().err
    assert cli.main(["bench", "--sweep", "interpreter", "--hidden", "4096", "--out", str(tmp_path)]) == 2
    assert "no case of sweep 'interpreter' matches hidden in [4096]" in capsys.readouterr().err


@no_gpu
def test_bench_without_gpu_reruns_itself_under_the_interpreter(monkeypatch):
    calls = []
    monkeypatch.setattr(cli._compat, "INTERPRET", False)
    monkeypatch.setattr(cli.subprocess, "call", lambda command, env: calls.append((command, env)) or 0)
    argv = ["bench", "--sweep", "interpreter", "--limit", "1"]
    assert cli.main(argv) == 0
    (command, env), = calls
    assert command == [sys.executable, "-m", "tritongru", *argv]
    assert env["TRITON_INTERPRET"] == "1"


@no_gpu
def test_bench_on_the_cpu_path_runs_without_the_interpreter(monkeypatch):
    """The default sweep without a GPU times tritongru's CPU path, which the interpreter would not change."""
    monkeypatch.setattr(cli._compat, "INTERPRET", False)
    monkeypatch.setattr(cli.subprocess, "call", lambda command, env: pytest.fail("re-ran under the interpreter"))
    bench = cli._load_perf()
    monkeypatch.setattr(bench, "run", lambda options: 0 if options.sweep is None else 1)
    assert cli.main(["bench"]) == 0
