"""Tuned launch configurations at run time: the tables' keys and file format, and the lookup.

A tuned configuration is valid for one GPU (name, SM count, compute capability, Triton version)
and one shape bucket (hidden, batch rounded up to a power of two, dtype, directions per launch,
training or inference). :func:`lookup`, called by :func:`tritongru.dispatch.plan_launch`, is a
dictionary access on tables loaded once per process: the tables shipped in
``tritongru/tuned/*.json``, overridden by the user's file (``kernels/settings.py``:
``TRITONGRU_TUNING_FILE``). Files are JSON, written atomically under a lock. The search that fills
them is :mod:`tritongru.tuning`, imported only when something is tuned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import importlib.resources
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import torch
import triton

from .kernels import settings
from .kernels.launch import PersistentConfig

if TYPE_CHECKING:
    from .dispatch import Problem
    from .tuning import TuningResult

FORMAT = "tritongru-tuning"
FORMAT_VERSION = 1



# --------------------------------------------------------------------------------------------------
# Keys


@dataclasses.dataclass(frozen=True)
class GPUIdentity:
    """What a tuned configuration is only valid for."""

    name: str
    sms: int
    capability: tuple[int, int]
    triton: str

    @property
    def key(self) -> str:
        return f"{self.name}|sm_{self.capability[0]}{self.capability[1]}|{self.sms}SMs|triton-{self.triton}"


@functools.lru_cache(maxsize=None)
def _identity_of_index(index: int) -> GPUIdentity:
    props = torch.cuda.get_device_properties(index)
    return GPUIdentity(props.name, props.multi_processor_count, (props.major, props.minor), triton.__version__)


def device_identity(device: torch.device) -> GPUIdentity:
    """The identity tuning results of ``device`` (a CUDA device) are stored under."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _identity_of_index(index)


def batch_bucket(batch: int) -> int:
    """Batches share a tuned configuration up to the next power of two (10 -> 16)."""
    return triton.next_power_of_2(batch)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


BucketKey = tuple[int, int, str, int, bool]
_BUCKET_RE = re.compile(r"^h(\d+)_b(\d+)_([a-z0-9]+)_d([12])_(train|infer)$")


def bucket_key(problem: Problem) -> BucketKey:
    """``(hidden, batch bucket, dtype name, directions, training)`` of ``problem``; ``directions``
    counts the directions one launch runs (2 when a bidirectional layer's share one launch)."""
    return (
        problem.hidden, batch_bucket(problem.batch), _dtype_name(problem.dtype), problem.directions, problem.training
    )


def bucket_name(key: BucketKey) -> str:
    hidden, batch, dtype, directions, training = key
    return f"h{hidden}_b{batch}_{dtype}_d{directions}_{'train' if training else 'infer'}"


def parse_bucket_name(name: str) -> BucketKey:
    match = _BUCKET_RE.match(name)
    if match is None:
        raise ValueError(f"bucket name must look like 'h256_b16_bfloat16_d1_infer', got {name!r}")
    hidden, batch, dtype, directions, mode = match.groups()
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise ValueError(f"bucket {name!r} names an unknown dtype {dtype!r}")
    return int(hidden), int(batch), dtype, int(directions), mode == "train"


# --------------------------------------------------------------------------------------------------
# Files


def shipped_tables() -> list[Path]:
    """The tables shipped with the package (``tritongru/tuned/*.json``), in name order."""
    folder = importlib.resources.files("tritongru") / "tuned"
    if not folder.is_dir():
        return []
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".json"))


class ForeignFileError(ValueError):
    """A file exists at the tuning path but is not a readable tritongru tuning table."""


def read_document(path: Path) -> dict:
    """The parsed table at ``path``: an empty one when it does not exist.

    Raises :class:`ForeignFileError` for a file that cannot be read, is not JSON, or is JSON of
    another format or version.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"format": FORMAT, "version": FORMAT_VERSION, "devices": {}}
    except (OSError, UnicodeDecodeError) as error:
        raise ForeignFileError(f"cannot read it: {error}") from error
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ForeignFileError(f"it is not valid JSON ({error})") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ForeignFileError(f"it is not a tritongru tuning table (expected \"format\": \"{FORMAT}\")")
    if document.get("version") != FORMAT_VERSION:
        raise ForeignFileError(f"it has format version {document.get('version')!r}, this tritongru reads {FORMAT_VERSION}")
    if not isinstance(document.get("devices"), dict):
        raise ForeignFileError("its \"devices\" entry is not an object")
    return document


def _config_from_json(data: object, hidden: int) -> PersistentConfig:
    if not isinstance(data, dict):
        raise ValueError(f"config must be an object, got {type(data).__name__}")
    fields = {field.name for field in dataclasses.fields(PersistentConfig)}
    # Fields that came later than the first tables, with defaults: the compiler's register choice,
    # the barrier, an unsplit product, a backward by columns.
    if not fields - {"max_registers", "exchange", "split_k", "split_n", "product"} <= set(data) <= fields:
        raise ValueError(f"config fields must be {sorted(fields)}, got {sorted(data)}")
    for name, value in data.items():
        expected = {"resident": bool, "exchange": str, "product": str}.get(name, int)
        if name == "max_registers" and value is None:
            continue
        # bool is an int subclass: a stray true/false must not pass as a block size.
        if type(value) is not expected:
            raise ValueError(f"config field {name} must be {expected.__name__}, got {value!r}")
    config = PersistentConfig(**data)
    config.validate(hidden, 1)
    return config


def parse_tables(document: dict, source: Path) -> dict[str, dict[BucketKey, PersistentConfig]]:
    """Configs by GPU key and bucket; entries that do not parse are skipped with a warning."""
    tables: dict[str, dict[BucketKey, PersistentConfig]] = {}
    for gpu_key, device_entry in document["devices"].items():
        entries = device_entry.get("entries") if isinstance(device_entry, dict) else None
        if not isinstance(entries, dict):
            warnings.warn(f"tritongru: ignoring GPU {gpu_key!r} in tuning table {source}: no \"entries\" object", RuntimeWarning, stacklevel=2)
            continue
        table = tables.setdefault(gpu_key, {})
        for name, entry in entries.items():
            try:
                key = parse_bucket_name(name)
                table[key] = _config_from_json(entry.get("config") if isinstance(entry, dict) else None, key[0])
            except ValueError as error:
                warnings.warn(f"tritongru: ignoring entry {name!r} for {gpu_key!r} in tuning table {source}: {error}", RuntimeWarning, stacklevel=2)
    return tables


def write_document(path: Path, document: dict) -> None:
    """Write ``document`` to ``path`` atomically: a reader sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            json.dump(document, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------------
# Lookup

_loaded: dict[Path, dict[str, dict[BucketKey, PersistentConfig]]] = {}
_failed_autotune: set = set()


def _load_file(path: Path, tables: dict[str, dict[BucketKey, PersistentConfig]]) -> None:
    try:
        document = read_document(path)
    except ForeignFileError as error:
        warnings.warn(f"tritongru: ignoring tuning table {path}: {error}", RuntimeWarning, stacklevel=3)
        return
    for gpu_key, table in parse_tables(document, path).items():
        tables.setdefault(gpu_key, {}).update(table)


def tables() -> dict[str, dict[BucketKey, PersistentConfig]]:
    """All configs this process looks up: shipped tables, then the user's file on top; loaded once."""
    user = settings.tuning_file()
    if user not in _loaded:
        merged: dict[str, dict[BucketKey, PersistentConfig]] = {}
        for path in [*shipped_tables(), user]:
            _load_file(path, merged)
        _loaded.clear()
        _loaded[user] = merged
    return _loaded[user]


def clear_cache() -> None:
    """Forget the tables loaded in this process (the next lookup reads the files again)."""
    _loaded.clear()
    _failed_autotune.clear()


def lookup(problem: Problem, device: torch.device) -> PersistentConfig | None:
    """The tuned configuration of ``problem`` on ``device``, or None when no table has one.

    With ``TRITONGRU_AUTOTUNE=1`` a miss on a GPU tunes the problem now (seconds), saves it to the
    user's file and returns the result; a failure warns once and falls back to None.
    """
    if device.type != "cuda":
        return None
    identity = device_identity(device)
    key = bucket_key(problem)
    config = tables().get(identity.key, {}).get(key)
    if config is None and settings.autotune_enabled() and (identity.key, key) not in _failed_autotune:
        config = _autotune_on_miss(problem, device, identity, key)
    return config


def _autotune_on_miss(problem, device, identity, key) -> PersistentConfig | None:
    # Timing inside a CUDA-graph capture would record the tuner's launches into the user's graph.
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return None
    try:
        from .tuning import tune_problem  # the search, only when something is tuned

        result = tune_problem(problem, device)
    except (RuntimeError, ValueError) as error:
        _failed_autotune.add((identity.key, key))
        warnings.warn(f"tritongru: {settings.AUTOTUNE_ENV}=1 could not tune {bucket_name(key)}: {error}", RuntimeWarning, stacklevel=4)
        return None
    try:
        save_results([result], settings.tuning_file())
    except (ValueError, OSError) as error:
        warnings.warn(f"tritongru: {settings.AUTOTUNE_ENV}=1 tuned {bucket_name(key)} but could not save it: {error}", RuntimeWarning, stacklevel=4)
    # Kept for this process whether or not the file could be written.
    tables().setdefault(identity.key, {})[key] = result.config
    return result.config


def save_results(results: Iterable[TuningResult], path: Path | None = None) -> Path:
    """Merge ``results`` into the table at ``path`` (default :func:`tuning_file`), atomically.

    Refuses (:class:`ForeignFileError`) to replace a file that is not a tritongru tuning table.
    """
    path = settings.tuning_file() if path is None else Path(path)
    with exclusive(path):
        try:
            document = read_document(path)
        except ForeignFileError as error:
            raise ForeignFileError(f"refusing to overwrite {path}: {error}; move it away or choose another file") from error
        _merge(document, results)
        write_document(path, document)
    clear_cache()
    return path


@contextlib.contextmanager
def exclusive(path: Path):
    """Serialise read-merge-write cycles of processes sharing ``path`` (a lock file beside it), so
    that concurrent writers (tuners, plan searches) neither break the file (the write is atomic
    anyway) nor drop each other's entries. Where ``fcntl`` is missing (Windows) the last writer wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _merge(document: dict, results: Iterable[TuningResult]) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for result in results:
        device_entry = document["devices"].setdefault(result.identity.key, {})
        device_entry["gpu"] = dataclasses.asdict(result.identity)
        device_entry.setdefault("entries", {})[bucket_name(result.key)] = {
            "config": dataclasses.asdict(result.config),
            "median_ms": result.median_ms,
            "heuristic_ms": result.heuristic_ms,
            "seq_len": result.seq_len,
            "timed": result.timed,
            "pruned": len(result.pruned),
            "measured_at": stamp,
            "torch": torch.__version__,
        }




def describe_tables(gpu_key: str | None) -> list[dict]:
    """Each table file this process reads (shipped, then the user's): its path, whether it loads,
    and how many entries it holds for ``gpu_key``; for ``tritongru info``."""
    described = []
    for kind, path in [*(("shipped", path) for path in shipped_tables()), ("user", settings.tuning_file())]:
        entry = {"kind": kind, "path": path, "status": "ok", "entries_here": 0}
        try:
            document = read_document(path)
        except ForeignFileError as error:
            entry["status"] = f"ignored: {error}"
        else:
            if not path.exists():
                entry["status"] = "does not exist"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                entry["entries_here"] = len(parse_tables(document, path).get(gpu_key, {})) if gpu_key else 0
        described.append(entry)
    return described
