"""The per-GPU tuner without a GPU: search space pruning, keys, the JSON tables (atomic writes,
damaged and foreign files), lookup precedence, the dispatch hook, and the refusal to tune."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tritongru import dispatch, tuned, tuning
from tritongru.kernels import settings
from tritongru.dispatch import Problem
from tritongru.kernels.launch import DoesNotFit, PersistentConfig

H200 = tuned.GPUIdentity("NVIDIA H200", 132, (9, 0), "3.6.0")
CUDA = torch.device("cuda", 0)
LIMITS = dispatch.H200
TUNED = PersistentConfig(block_b=32, block_h=32, block_k=64, num_programs=16, num_warps=8, num_stages=1, resident=True)
OTHER = PersistentConfig(block_b=16, block_h=64, block_k=64, num_programs=8, num_warps=4, num_stages=2, resident=True)


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """A private user file and shipped folder, and a fake H200 as the device's identity."""
    user = tmp_path / "cache" / "tuning.json"
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setenv(settings.TUNING_FILE_ENV, str(user))
    monkeypatch.delenv(settings.AUTOTUNE_ENV, raising=False)
    monkeypatch.setattr(tuned, "shipped_tables", lambda: sorted(shipped.glob("*.json")))
    monkeypatch.setattr(tuned, "device_identity", lambda device: H200)
    tuned.clear_cache()
    yield SimpleNamespace(user=user, shipped=shipped)
    tuned.clear_cache()


@pytest.fixture
def on_gpu_path(monkeypatch):
    """choose_config as it runs on a GPU: past the interpreter branch, with the H200's limits."""
    monkeypatch.setattr(dispatch, "INTERPRET", False)
    monkeypatch.setattr(dispatch, "limits_of", lambda device: LIMITS)


def result(problem: Problem, config: PersistentConfig, identity=H200) -> tuning.TuningResult:
    return tuning.TuningResult(problem, identity, config, 1.0, 2.0, 128, 3, [])


# -- pruning ---------------------------------------------------------------------------------------


def test_prune_keeps_only_valid_fitting_coresident_configs():
    problem = Problem(1024, 64, torch.float32, False)
    kept, pruned = tuning.prune(problem, tuning.candidate_configs(problem, LIMITS), LIMITS)
    assert kept and pruned
    for config in kept:
        config.validate(problem.hidden, problem.batch)
        if config.resident:
            assert config.weight_bytes(problem.hidden, problem.dtype) <= dispatch.weight_budget(LIMITS)
        if config.grid_synchronised(problem.hidden):
            assert config.num_programs <= tuning.static_capacity(config, problem, LIMITS)
    reasons = " ".join(reason for _, reason in pruned)
    assert "exceeds the shared-memory budget" in reasons  # e.g. all of W_hh (12 MiB fp32) in one program


def test_prune_reasons_name_the_values():
    problem = Problem(256, 16, torch.bfloat16, False)
    invalid = PersistentConfig(block_b=24, block_h=64, block_k=64, num_programs=4)
    too_big = PersistentConfig(block_b=16, block_h=1024, block_k=64, num_programs=1)
    problem_big = Problem(1024, 16, torch.float32, False)
    crowded = PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=LIMITS.sms * 40, resident=False)
    _, pruned = tuning.prune(problem, [invalid, crowded], LIMITS)
    _, pruned_big = tuning.prune(problem_big, [too_big], LIMITS)
    reasons = dict(pruned + pruned_big)
    assert "block_b must be a power of two >= 16" in reasons[invalid] and "got 24" in reasons[invalid]
    assert "25165824 bytes" in reasons[too_big]
    assert f"{LIMITS.sms * 40} programs cannot be co-resident" in reasons[crowded]


def test_prune_uses_the_given_capacity_for_barrier_grids_only():
    problem = Problem(128, 16, torch.bfloat16, False)
    sliced = PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=8)  # 8 slices: a barrier grid
    whole = PersistentConfig(block_b=16, block_h=128, block_k=64, num_programs=1)  # one program: no barrier
    kept, pruned = tuning.prune(problem, [sliced, whole], LIMITS, capacity=lambda config: 4)
    assert kept == [whole]
    assert pruned == [(sliced, "synchronised grid of 8 programs cannot be co-resident (at most 4)")]


def test_heuristic_config_is_timed_first_then_its_other_exchange():
    problem = Problem(1024, 16, torch.bfloat16, True)
    kept, _ = tuning.prune(problem, tuning.candidate_configs(problem, LIMITS), LIMITS)
    baseline = dispatch.heuristic_config(problem, LIMITS)
    twin = dataclasses.replace(baseline, exchange="flags" if baseline.exchange == "barrier" else "barrier")
    assert dataclasses.replace(twin, max_registers=None) in kept, "the tuner searches both exchanges"
    assert tuning.rank(problem, list(dict.fromkeys([*kept, baseline, twin])), LIMITS)[:2] == [baseline, twin]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_ready_flags_are_candidates_where_the_dtype_allows(dtype):
    problem = Problem(512, 16, dtype, False)  # resident slices in every dtype
    kept, pruned = tuning.prune(problem, tuning.candidate_configs(problem, LIMITS), LIMITS)
    flags = [config for config in kept if config.exchange == "flags"]
    assert bool(flags) == (dtype != torch.float64)
    assert all(config.resident and config.num_h_tiles(problem.hidden) > 1 for config in flags)
    fp64_flags = PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=64, exchange="flags")
    _, rejected = tuning.prune(Problem(1024, 16, torch.float64, False), [fp64_flags], LIMITS)
    assert "16- and 32-bit states" in rejected[0][1] and "torch.float64" in rejected[0][1]


# -- keys --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch, bucket", [(1, 1), (10, 16), (16, 16), (17, 32), (256, 256)])
def test_batch_bucket_is_next_power_of_two(batch, bucket):
    assert tuned.batch_bucket(batch) == bucket


def test_bucket_key_and_name_round_trip():
    key = tuned.bucket_key(Problem(256, 10, torch.bfloat16, True, directions=2))
    assert key == (256, 16, "bfloat16", 2, True)
    assert tuned.bucket_name(key) == "h256_b16_bfloat16_d2_train"
    assert tuned.parse_bucket_name("h256_b16_bfloat16_d2_train") == key
    with pytest.raises(ValueError, match="must look like"):
        tuned.parse_bucket_name("h256-b16")
    with pytest.raises(ValueError, match="unknown dtype 'float7'"):
        tuned.parse_bucket_name("h256_b16_float7_d1_infer")


def test_gpu_key_holds_name_sms_capability_and_triton():
    assert H200.key == "NVIDIA H200|sm_90|132SMs|triton-3.6.0"
    assert tuned.GPUIdentity("NVIDIA H100 80GB HBM3", 132, (9, 0), "3.6.0").key != H200.key
    assert tuned.GPUIdentity("NVIDIA H200", 132, (9, 0), "3.9.0").key != H200.key


def test_tuning_file_location(monkeypatch, tmp_path):
    for name in (settings.TUNING_FILE_ENV, settings.CACHE_DIR_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert settings.tuning_file() == Path.home() / ".cache" / "tritongru" / "tuning.json"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings.tuning_file() == tmp_path / "xdg" / "tritongru" / "tuning.json"
    monkeypatch.setenv(settings.CACHE_DIR_ENV, str(tmp_path / "dir"))
    assert settings.tuning_file() == tmp_path / "dir" / "tuning.json"
    monkeypatch.setenv(settings.TUNING_FILE_ENV, str(tmp_path / "exact.json"))
    assert settings.tuning_file() == tmp_path / "exact.json"


# -- tables ------------------------------------------------------------------------------------------


def test_saved_config_is_found_for_its_bucket_only(tables):
    tuned.save_results([result(Problem(256, 10, torch.bfloat16, False), TUNED)])
    assert tuned.lookup(Problem(256, 12, torch.bfloat16, False), CUDA) == TUNED  # same bucket: 16
    assert tuned.lookup(Problem(256, 17, torch.bfloat16, False), CUDA) is None
    assert tuned.lookup(Problem(256, 12, torch.bfloat16, True), CUDA) is None
    assert tuned.lookup(Problem(256, 12, torch.float16, False), CUDA) is None
    assert tuned.lookup(Problem(256, 12, torch.bfloat16, False), torch.device("cpu")) is None
    document = json.loads(tables.user.read_text())
    assert document["format"] == tuned.FORMAT and document["version"] == tuned.FORMAT_VERSION
    entry = document["devices"][H200.key]["entries"]["h256_b16_bfloat16_d1_infer"]
    assert entry["config"] == {
        "block_b": 32, "block_h": 32, "block_k": 64, "num_programs": 16, "num_warps": 8, "num_stages": 1, "resident": True,
        "max_registers": None, "exchange": "barrier", "split_k": 1, "split_n": 1, "product": "columns",
    }
    assert document["devices"][H200.key]["gpu"]["sms"] == 132


def test_results_of_another_gpu_do_not_apply(tables, monkeypatch):
    h100 = tuned.GPUIdentity("NVIDIA H100 80GB HBM3", 132, (9, 0), "3.6.0")
    tuned.save_results([result(Problem(256, 16, torch.bfloat16, False), TUNED, identity=h100)])
    assert tuned.lookup(Problem(256, 16, torch.bfloat16, False), CUDA) is None


def test_user_table_overrides_shipped_table(tables):
    problem = Problem(512, 64, torch.bfloat16, True)
    tuned.save_results([result(problem, OTHER)], tables.shipped / "nvidia-h200.json")
    assert tuned.lookup(problem, CUDA) == OTHER
    tuned.save_results([result(problem, TUNED)])
    assert tuned.lookup(problem, CUDA) == TUNED


def test_failed_write_leaves_the_old_file_whole(tables, monkeypatch):
    tuned.save_results([result(Problem(256, 16, torch.bfloat16, False), TUNED)])
    before = tables.user.read_bytes()

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(tuned.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        tuned.save_results([result(Problem(512, 16, torch.bfloat16, False), OTHER)])
    assert tables.user.read_bytes() == before
    # No temporary file left behind (the lock file that serialises writers stays).
    assert sorted(path.name for path in tables.user.parent.iterdir()) == ["tuning.json", "tuning.json.lock"]


def test_damaged_file_is_ignored_with_a_warning(tables, on_gpu_path):
    tables.user.parent.mkdir(parents=True)
    tables.user.write_bytes(b'{"format": "tritongru-tuning", "devic\x00\xff')
    problem = Problem(256, 16, torch.bfloat16, False)
    with pytest.warns(RuntimeWarning, match=f"ignoring tuning table {tables.user}"):
        assert tuned.lookup(problem, CUDA) is None
    assert dispatch.choose_config(problem, CUDA) == dispatch.heuristic_config(problem, LIMITS)


def test_foreign_json_is_ignored_and_never_overwritten(tables):
    tables.user.parent.mkdir(parents=True)
    tables.user.write_text('{"some": "other tool"}')
    with pytest.warns(RuntimeWarning, match="not a tritongru tuning table"):
        assert tuned.lookup(Problem(256, 16, torch.bfloat16, False), CUDA) is None
    with pytest.raises(tuned.ForeignFileError, match="refusing to overwrite"):
        tuned.save_results([result(Problem(256, 16, torch.bfloat16, False), TUNED)])
    assert tables.user.read_text() == '{"some": "other tool"}'


def test_other_format_version_is_ignored(tables):
    tables.user.parent.mkdir(parents=True)
    tables.user.write_text(json.dumps({"format": tuned.FORMAT, "version": 99, "devices": {}}))
    with pytest.warns(RuntimeWarning, match="format version 99"):
        assert tuned.lookup(Problem(256, 16, torch.bfloat16, False), CUDA) is None


def test_bad_entries_are_skipped_and_good_ones_kept(tables):
    good = {"block_b": 16, "block_h": 32, "block_k": 32, "num_programs": 8, "num_warps": 4, "num_stages": 1, "resident": True}
    entries = {
        "h256_b16_bfloat16_d1_infer": {"config": good},
        "h256-b32": {"config": good},
        "h256_b32_bfloat16_d1_infer": {"config": {**good, "block_b": "16"}},
        "h256_b64_bfloat16_d1_infer": {"config": {**good, "num_warps": True}},
        "h256_b128_bfloat16_d1_infer": {"config": {**good, "block_b": 24}},
        "h256_b256_bfloat16_d1_infer": {"config": {**good, "extra": 1}},
        "h256_b512_bfloat16_d1_infer": {"config": {**good, "exchange": "sideways"}},
        "h256_b1024_bfloat16_d1_infer": {"config": {**good, "exchange": 1}},
        "h256_b16_bfloat16_d1_train": {"config": {**good, "exchange": "flags"}},
    }
    tables.user.parent.mkdir(parents=True)
    tables.user.write_text(json.dumps({"format": tuned.FORMAT, "version": tuned.FORMAT_VERSION,
                                       "devices": {H200.key: {"entries": entries}}}))
    with pytest.warns(RuntimeWarning) as caught:
        assert tuned.lookup(Problem(256, 16, torch.bfloat16, False), CUDA) == PersistentConfig(**good)
    messages = " ".join(str(warning.message) for warning in caught)
    for expected in ("must look like", "block_b must be int, got '16'", "num_warps must be int, got True",
                     "got 24", "config fields must be", "exchange must be one of ('barrier', 'flags'), got 'sideways'",
                     "exchange must be str, got 1"):
        assert expected in messages
    for batch in (32, 64, 128, 256, 512, 1024):
        assert tuned.lookup(Problem(256, batch, torch.bfloat16, False), CUDA) is None
    flags = PersistentConfig(**good, exchange="flags")
    assert tuned.lookup(Problem(256, 16, torch.bfloat16, True), CUDA) == flags


def test_lookup_is_loaded_once_and_fast(tables, monkeypatch):
    problem = Problem(256, 16, torch.bfloat16, False)
    tuned.save_results([result(problem, TUNED)])
    assert tuned.lookup(problem, CUDA) == TUNED

    def no_reads(path):
        raise AssertionError("a lookup read the file again")

    monkeypatch.setattr(tuned, "read_document", no_reads)
    start = time.perf_counter()
    for _ in range(2000):
        assert tuned.lookup(problem, CUDA) == TUNED
    assert (time.perf_counter() - start) / 2000 < 100e-6


# -- the dispatch hook -------------------------------------------------------------------------------


def test_choose_config_prefers_forced_then_tuned_then_heuristic(tables, on_gpu_path):
    tuned_problem = Problem(256, 16, torch.bfloat16, False)
    untuned = Problem(512, 16, torch.bfloat16, False)
    tuned.save_results([result(tuned_problem, TUNED)])
    assert dispatch.choose_config(tuned_problem, CUDA) == TUNED
    assert dispatch.choose_config(untuned, CUDA) == dispatch.heuristic_config(untuned, LIMITS)
    with dispatch.force_config(OTHER):
        assert dispatch.choose_config(tuned_problem, CUDA) == OTHER


def test_interpreter_ignores_tables(tables, monkeypatch):
    monkeypatch.setattr(dispatch, "INTERPRET", True)
    problem = Problem(256, 16, torch.float32, False)
    tuned.save_results([result(problem, TUNED)])
    assert dispatch.choose_config(problem, torch.device("cpu")) == dispatch.interpreter_config(problem)


# -- the timing loop, on the interpreter with a stand-in timer ---------------------------------------


def test_tune_problem_times_ranked_candidates_and_drops_wrong_ones(tables, monkeypatch):
    """The GPU steps stand in: the interpreter runs the kernels, a fake do_bench hands out times."""
    problem = Problem(16, 2, torch.float32, True)
    kept, _ = tuning.prune(problem, tuning.candidate_configs(problem, LIMITS), LIMITS)
    baseline = dispatch.heuristic_config(problem, LIMITS)
    order = tuning.rank(problem, [baseline, *kept], LIMITS)
    wrong, fast = order[1], order[2]
    times = {order[0]: 5.0, fast: 3.0, order[3]: 4.0}
    timed = []

    def runner(problem_, inputs, config):
        run = real_runner(problem_, inputs, config)
        if config == wrong:
            return lambda: tuple(tensor + 1 for tensor in run())
        return lambda: (timed.append(config), run())[1]

    real_runner = tuning._runner
    monkeypatch.setattr(tuning, "_runner", runner)
    monkeypatch.setattr(tuning, "require_gpu", lambda device=None: torch.device("cpu"))
    monkeypatch.setattr(tuning, "device_limits", lambda index: LIMITS)
    monkeypatch.setattr(tuning.triton.testing, "do_bench", lambda fn, return_mode: times[timed[-1]])
    found = tuning.tune_problem(problem, seq_len=2, max_configs=4)
    assert found.config == fast and found.median_ms == 3.0 and found.heuristic_ms == 5.0
    assert found.timed == 3
    assert any(config == wrong and "differs from the heuristic's" in reason for config, reason in found.pruned)
    tuned.save_results([found])
    assert tuned.lookup(problem, CUDA) == fast


# -- no GPU ------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_tuning_refuses_without_gpu(monkeypatch):
    monkeypatch.setattr(tuning._compat, "INTERPRET", True)
    with pytest.raises(tuning.TuningUnavailableError, match="TRITON_INTERPRET=1 is set"):
        tuning.tune_problem(Problem(256, 16, torch.bfloat16, False))
    monkeypatch.setattr(tuning._compat, "INTERPRET", False)
    with pytest.raises(tuning.TuningUnavailableError, match="this machine has none"):
        tuning.tune([Problem(256, 16, torch.bfloat16, False)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_autotune_on_a_miss_without_gpu_warns_once(tables, monkeypatch):
    monkeypatch.setenv(settings.AUTOTUNE_ENV, "1")
    problem = Problem(256, 16, torch.bfloat16, False)
    with pytest.warns(RuntimeWarning, match="TRITONGRU_AUTOTUNE=1 could not tune h256_b16_bfloat16_d1_infer"):
        assert tuned.lookup(problem, CUDA) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tuned.lookup(problem, CUDA) is None
    assert not tables.user.exists()


def _save_many(path: str, worker: int, rounds: int) -> None:
    for i in range(rounds):
        problem = Problem(64 * (worker + 1), 2**i, torch.float32, False)
        tuned.save_results([result(problem, TUNED)], Path(path))


def test_concurrent_writers_keep_the_file_whole_and_every_entry(tmp_path):
    """Several processes saving at once: the file is always valid JSON and no entry is lost."""
    import multiprocessing

    path = tmp_path / "tuning.json"
    workers, rounds = 4, 6
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_save_many, args=(str(path), w, rounds)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    document = json.loads(path.read_text())
    entries = document["devices"][H200.key]["entries"]
    assert len(entries) == workers * rounds
    assert not list(tmp_path.glob("*.tmp"))


# -- the plan table: tiles chosen by modelled cost ----------------------------------------------


def _plan(entries: dict) -> dict:
    """A plan table as dispatch.plan_table returns it: key -> {tiles: modelled step}, cheapest first."""
    return {key: dict(sorted(ranked.items(), key=lambda item: item[1])) for key, ranked in entries.items()}


def test_heuristic_takes_the_cheapest_modelled_tiles_of_its_shape(monkeypatch):
    cheap = dispatch.Tiles(num_warps=4, block_k=1024, split_k=4, split_n=1, exchange="flags")
    dear = dispatch.Tiles(num_warps=8, block_k=256, split_k=8, split_n=1)
    key = dispatch.plan_key(2, "fwd-inf", 1024, 1)
    monkeypatch.setattr(dispatch, "plan_table", lambda arch=90: _plan({key: {dear: 2.0, cheap: 1.5}}))
    dispatch.heuristic_config.cache_clear()
    try:
        config = dispatch.heuristic_config(Problem(1000, 1, torch.float16, False), LIMITS)  # bucket 1024, 2-byte, B=1
        assert (config.num_warps, config.block_k, config.split_k, config.exchange) == (4, 1024, 4, "flags")
        # A larger batch class without an entry takes the nearest smaller class's tiles ...
        larger = dispatch.heuristic_config(Problem(1000, 16, torch.float16, False), LIMITS)
        assert (larger.num_warps, larger.block_k, larger.split_k) == (4, 1024, 4)
        # ... while another element size, or the backward, has none: the default tiles.
        assert dispatch.heuristic_config(Problem(1000, 1, torch.float32, False), LIMITS).num_warps == 8
        assert dispatch.heuristic_config(Problem(1000, 1, torch.float16, True), LIMITS, backward=True).num_warps == 8
    finally:
        dispatch.heuristic_config.cache_clear()


def test_fp64_never_takes_ready_flags(monkeypatch):
    flags = dispatch.Tiles(num_warps=8, block_k=512, split_k=8, split_n=1, exchange="flags")
    monkeypatch.setattr(dispatch, "planned_tiles", lambda *args: flags)
    dispatch.heuristic_config.cache_clear()
    try:
        assert dispatch.heuristic_config(Problem(512, 16, torch.float64, False), LIMITS).exchange == "barrier"
        assert dispatch.heuristic_config(Problem(1024, 16, torch.bfloat16, True), LIMITS, backward=True).exchange == "flags"
        assert dispatch.heuristic_config(Problem(1024, 16, torch.bfloat16, False), LIMITS).exchange == "flags"
    finally:
        dispatch.heuristic_config.cache_clear()


def test_tuner_times_candidates_in_the_models_order(monkeypatch):
    """After the heuristic's choice and its twin, the configurations the model ranked come in its
    order (a training problem adds its forward's and backward's steps), before the ones it did not."""
    problem = Problem(1024, 16, torch.bfloat16, True)
    dear = dispatch.Tiles(num_warps=8, block_k=1024, split_k=8, split_n=1)
    cheap = dispatch.Tiles(num_warps=4, block_k=256, split_k=2, split_n=2)
    monkeypatch.setattr(dispatch, "plan_table", lambda arch=90: _plan({
        dispatch.plan_key(2, "fwd", 1024, 16): {dear: 3.0, cheap: 1.0},
        dispatch.plan_key(2, "bwd", 1024, 16): {dear: 3.0, cheap: 1.5},
    }))
    dispatch.heuristic_config.cache_clear()
    try:
        built = {name: dispatch.heuristic_config(problem, LIMITS, tiles=t) for name, t in (("dear", dear), ("cheap", cheap))}
        kept, _ = tuning.prune(problem, tuning.candidate_configs(problem, LIMITS), LIMITS)
        assert built["dear"] in kept and built["cheap"] in kept
        assert dispatch.modelled_step_us(problem, built["cheap"], LIMITS) == pytest.approx(2.5)
        assert dispatch.modelled_step_us(problem, dataclasses.replace(built["cheap"], block_h=32), LIMITS) is None
        order = tuning.rank(problem, kept, LIMITS)
        unmodelled = [i for i, c in enumerate(order) if dispatch.modelled_step_us(problem, c, LIMITS) is None]
    finally:
        dispatch.heuristic_config.cache_clear()
    assert order[0] == built["cheap"], "the heuristic itself takes the cheapest modelled tiles"
    assert order.index(built["dear"]) < min(i for i in unmodelled if i > 1)


def test_tuner_searches_every_split_of_its_warps():
    problem = Problem(1024, 16, torch.bfloat16, False)
    splits = {(c.num_warps, c.split_k, c.split_n) for c in tuning.candidate_configs(problem, LIMITS) if c.block_h == 16 and c.block_k == 1024}
    assert splits == {(4, 4, 1), (4, 2, 2), (8, 8, 1), (8, 4, 2)}


def test_untuned_baseline_is_a_plan_that_fits(monkeypatch):
    """Where the planner's configuration does not fit the GPU, the tuner's baseline (what runs
    untuned, and what every candidate is checked against) is the smaller plan the op would take."""
    problem = Problem(1024, 16, torch.bfloat16, False)
    planned = dispatch.heuristic_config(problem, LIMITS)

    def runner(problem_, inputs, config):
        def run():
            if config == planned:
                stand_in = SimpleNamespace(describe=lambda: "gru_fwd_persistent_kernel", config=config)
                raise DoesNotFit(stand_in, "shared memory (bytes)", 240_000, 232_448, "NVIDIA H200")
            return (config,)
        return run

    monkeypatch.setattr(tuning, "_runner", runner)
    baseline, expected = tuning._untuned_run(problem, LIMITS, {}, "this GPU")
    assert baseline == next(dispatch.smaller_plans(problem, LIMITS, False, planned)) and expected == (baseline,)
