"""``tritongru cost-report`` end to end on one small shape (compiled as the JIT compiles it, no GPU),
and the search that writes the plan table the planner reads."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tritongru
from tritongru import dispatch
from tritongru.cost_report import search_stacks, table_gain
from tritongru.hardware import known_gpu
from tritongru.dispatch import H200

COMPILER_ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("model-h200")
    result = subprocess.run(
        [sys.executable, "-m", "tritongru", "cost-report", "--hidden", "64", "--batch", "1", "--dtype", "bf16",
         "--out", str(out)],
        env=COMPILER_ENV, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, out


def test_report_says_its_figures_are_a_model(report):
    stdout, _ = report
    assert "MODEL figures for NVIDIA H200" in stdout and "not measurements" in stdout
    assert "MODEL figures per call" in stdout


def test_report_rows_cover_every_planned_launch_without_repeated_warps(report):
    _, out = report
    with (out / "cost.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["kernel"] for row in rows] == ["fwd-inf", "fwd", "bwd"]
    for row in rows:
        assert row["replication"] == "1" and row["spill_bytes"] == "0" and row["exchange"] == "none"
        terms = [float(row[f"{term}_us"]) for term in ("shared", "issue", "tensor", "l2")]
        step = float(row["exchange_us"]) + max(terms) + float(row["cta_barrier_us"])
        assert float(row["step_us"]) == pytest.approx(step)
    with (out / "calls.csv").open() as handle:
        calls = list(csv.DictReader(handle))
    assert {call["mode"] for call in calls} == {"inference", "fwd_bwd"}
    assert all(float(call["total_us"]) > float(call["recurrence_us"]) > 0 for call in calls)


_SEARCH = """
import json, sys, torch
from pathlib import Path
from tritongru.cost_report import search
document = search(hidden=(64,), batch=(1,), dtypes=(torch.bfloat16,), gpu_name="h200", plan=Path(sys.argv[1]), log=lambda m: None)
print(json.dumps(sorted(document["entries"])))
"""


def test_search_writes_a_plan_the_planner_reads(tmp_path):
    plan = tmp_path / "sm90.json"
    result = subprocess.run([sys.executable, "-c", _SEARCH, str(plan)], env=COMPILER_ENV, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["2B/bwd/h64/b1", "2B/fwd-inf/h64/b1", "2B/fwd/h64/b1"]
    entries = dispatch.read_plan(plan.read_text(), str(plan))
    for key, ranked in entries.items():
        steps = list(ranked.values())
        assert steps == sorted(steps) and len(steps) >= 2, key
        best = next(iter(ranked))
        assert best.num_warps == best.split_k * best.split_n, "every warp has a part of its own"
    document = json.loads(plan.read_text())
    assert document["model"] == "h200" and "model figures" in document["made_by"]
    assert document["commit"] and len(document["date"]) == 10, "a table records what made it"


def test_searches_writing_one_table_at_once_keep_each_others_entries(tmp_path):
    """One search process per dtype into the same table: each merges its entry into what is on
    disk, not into the copy it read when it started."""
    from tritongru.cost_report import _merged

    plan = tmp_path / "sm86.json"
    bf16 = _merged(plan, {"model": "a10"}, "entries", {})  # both start from the same empty table
    _merged(plan, {"model": "a10"}, "entries", {"2B/fwd/h64/b1": {"ranked": []}})
    _merged(plan, {"model": "a10", "commit": "abc"}, "entries", {"4B/fwd/h64/b1": {"ranked": []}})
    assert bf16["entries"] == {}
    document = json.loads(plan.read_text())
    assert sorted(document["entries"]) == ["2B/fwd/h64/b1", "4B/fwd/h64/b1"] and document["commit"] == "abc"
    assert document["format"] == dispatch.PLAN_FORMAT


def test_a_tables_gain_is_the_default_tiles_step_over_the_chosen_one():
    default = dispatch.default_tiles(256, 2, "fwd-inf")
    chosen = dispatch.Tiles(num_warps=4, block_k=256, split_k=2, split_n=2)
    problem = dispatch.Problem(256, 1, torch.bfloat16, False)
    assert not dispatch.same_launch(dispatch.heuristic_config(problem, H200, tiles=chosen),
                                    dispatch.heuristic_config(problem, H200, tiles=default))
    ranked = [{**dataclasses.asdict(chosen), "modelled_step_us": 1.0}, {**dataclasses.asdict(default), "modelled_step_us": 2.5}]
    document = {"format": dispatch.PLAN_FORMAT, "model": "h200", "entries": {"2B/fwd-inf/h256/b1": {"ranked": ranked}}}
    gain = table_gain(document)
    assert (gain.compared, gain.median, gain.largest_key) == (1, 2.5, "2B/fwd-inf/h256/b1")


@pytest.mark.parametrize("path", sorted((Path(tritongru.__file__).parent / "plans").glob("sm*.json")), ids=lambda p: p.stem)
def test_every_shipped_plan_table_is_its_architectures(path):
    """A table is read for the architecture its name gives: it must have been searched with the
    figures of a GPU of that architecture, and rank every entry cheapest first."""
    document = dispatch.parse_plan(path.read_text(), str(path))
    arch = int(path.stem[2:])
    assert document["arch"] == arch and known_gpu(document["model"]).arch == arch
    for key, ranked in dispatch.plan_entries(document).items():
        steps = list(ranked.values())
        assert steps == sorted(steps), key
    for key, entry in document.get("stacks", {}).items():
        calls = [c["modelled_call_us"] for c in entry["ranked"]]
        assert calls == sorted(calls) and entry["modelled_call_us"] == min(calls + [entry["layer_by_layer_us"]]), key
        if entry["block_h"]:
            assert entry["ranked"][0]["block_h"] == entry["block_h"] and calls[0] <= entry["layer_by_layer_us"], key
        else:
            assert not calls or calls[0] >= entry["layer_by_layer_us"], key


def test_a_foreign_plan_is_refused():
    with pytest.raises(RuntimeError, match=r"x.json is not a tritongru plan table"):
        dispatch.read_plan(json.dumps({"format": "something-else", "entries": {}}), "x.json")


def test_stack_report_models_one_launch_beside_one_per_layer():
    """``--layers``: a 4-layer bf16 stack at T=64, compiled for sm_90: in one launch its T + L - 1
    dependent steps cost less than L x T steps of one layer each (model figures)."""
    result = subprocess.run(
        [sys.executable, "-m", "tritongru", "cost-report", "--layers", "4", "--seq-len", "64", "--hidden", "256",
         "--batch", "1", "--dtype", "bf16"], env=COMPILER_ENV, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr
    totals = {}
    for line in result.stdout.splitlines():
        if "stack," in line:
            name = "one launch" if "all layers in one launch" in line else "per layer"
            totals[name] = float(line.split(":")[-1].split("ms")[0])
    assert set(totals) == {"one launch", "per layer"}, result.stdout
    assert "MODEL figures" in result.stdout and totals["one launch"] < totals["per layer"]


def test_stack_search_writes_the_slice_width_the_planner_takes(tmp_path):
    """``--search PLAN --layers 2``: for bf16 H=256, B=1 both passes, every slice width that fits
    is priced, the cheapest call (or one launch per layer) recorded, and the planner reads it."""
    plan = tmp_path / "sm90.json"
    result = subprocess.run(
        [sys.executable, "-m", "tritongru", "cost-report", "--search", str(plan), "--layers", "2", "--hidden", "256",
         "--batch", "1", "--dtype", "bf16", "--seq-len", "64"], env=COMPILER_ENV, capture_output=True, text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    stacks = json.loads(plan.read_text())["stacks"]
    assert sorted(stacks) == ["2B/inference/l2/h256/b1", "2B/training/l2/h256/b1"]
    for key, entry in stacks.items():
        calls = [c["modelled_call_us"] for c in entry["ranked"]]
        assert calls == sorted(calls) and len(calls) >= 2, key
        best = entry["ranked"][0]
        if entry["block_h"]:
            assert entry["block_h"] == best["block_h"] and best["modelled_call_us"] < entry["layer_by_layer_us"]
        else:
            assert entry["layer_by_layer_us"] <= best["modelled_call_us"]
    document = dispatch.parse_plan(plan.read_text(), str(plan))
    assert "model figures" in document["stacks_made_by"]


def test_a_stack_search_is_refused_before_its_architectures_table(monkeypatch, tmp_path):
    """A stack's verdict prices both sides with the shipped one-layer tiles: searched on an
    architecture whose table has no entries yet, one launch per layer would take the default tiles
    and the verdict would be wrong, so the search refuses, naming the table to search first."""
    monkeypatch.setattr(dispatch, "plan_table", lambda arch: {})
    with pytest.raises(ValueError, match=r"tritongru/plans/sm90\.json, which has no entries: search that table first"):
        search_stacks(2, (256,), (1,), (torch.bfloat16,), "h200", tmp_path / "sm90.json")
    assert not (tmp_path / "sm90.json").exists()
