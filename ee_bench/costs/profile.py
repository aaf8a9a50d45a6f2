"""The cost profile of one model on one machine: what a decoder block, the head and a gate check cost.

A profile is a JSON document (schema :data:`PROFILE_SCHEMA`) keyed by model, device, dtype and threads
(and recording library versions). It is written by ``ee-bench cost`` (measured, :mod:`ee_bench.costs.measure`,
or estimated from FLOPs and bytes, :mod:`ee_bench.costs.flops`), cached under the user cache folder
(:func:`cache_path`) and read by runs, ``rescore`` and the leaderboard through :func:`load_profile`,
which refuses a file of another model or a damaged one (:class:`ProfileError`).

Fields (times in milliseconds, per call at batch 1):

============================  ==============================================================================
``block_ms[ctx][k]``          one decoder block over k new tokens (k = 1, 2, 4, 8) with ``ctx`` cached tokens
``prefill_block_ms[ctx]``     one decoder block over a prompt of ``ctx`` tokens (the prompt pass)
``head_ms[k]``                final norm + LM head + argmax for k rows, called back to back (the head's
                              weights as warm in the CPU cache as they get)
``head_after_ms[g]``          final norm + LM head + argmax for one row when ``g`` decoder blocks ran since
                              the previous head call (g = 1, 2, 4, 8, 16, 32 up to the blocks built, and the
                              depth L): the blocks push the head out of the cache. On this project's CPU
                              (260 MiB L3) SmolLM2's 108 MiB float32 head took 3.9 ms back to back, 4.0 ms
                              after 1 block, 4.6 ms after 6 and 7.5 ms after 30. Optional (empty: no
                              cache effect is priced; profiles written before it existed)
``check_ms[mode]``            one gate check of one token: ``full`` (head + softmax statistics + the gate
                              rule), ``topk:K`` (logits of K candidates + statistics + rule), ``state``
                              (CALM's head-free cosine of consecutive hidden states + rule)
``kv_ms[strategy]``           KV-strategy work outside blocks per (token, skipped layer): ``copy``, ``recompute``
``flops``, ``bytes``          per block (k = 1, context ``ctx``) and head (one row), from the config alone
``architecture``              the shapes the times depend on (``model_type``, ``n_layers``, ``hidden_size``,
                              ``intermediate_size``, ``num_attention_heads``, ``num_key_value_heads``,
                              ``vocab_size``; names as in a results file's ``model_info``): a profile fits
                              any checkpoint of the same architecture, dtype, device and threads, whatever
                              its weights (:meth:`CostProfile.architecture_problems`). Empty in older files.
============================  ==============================================================================
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.files import write_json

PROFILE_SCHEMA = "ee-bench/cost-profile/v1"
TOKEN_COUNTS = (1, 2, 4, 8)
CACHE_ENV = "EE_BENCH_CACHE"
ARCH_KEYS_REQUIRED = ("model_type", "n_layers", "hidden_size", "vocab_size")
"""The architecture keys a run's ``model_info`` must record for a profile to be checked against it."""


class ProfileError(EEBenchError):
    """A cost profile that cannot be used (damaged, wrong schema, another model or machine)."""


@dataclass(frozen=True)
class CostProfile:
    """One model's cost profile (see the module docstring for the fields; times in ms).

    Attributes:
        model, device, dtype, threads: the key. source: ``measured``, ``measured-random-weights`` or
            ``estimated-roofline:<device>``. n_layers: L of the model (blocks). versions: library versions.
    """

    model: str
    device: str
    dtype: str
    threads: int
    source: str
    n_layers: int
    block_ms: dict[int, dict[int, float]]
    prefill_block_ms: dict[int, float]
    head_ms: dict[int, float]
    check_ms: dict[str, float] = field(default_factory=dict)
    kv_ms: dict[str, float] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)
    bytes: dict[str, float] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    architecture: dict[str, Any] = field(default_factory=dict)
    head_after_ms: dict[int, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ derived figures
    @property
    def contexts(self) -> list[int]:
        return sorted(self.block_ms)

    def block(self, k: float = 1, context: float | None = None) -> float:
        """ms of one block over ``k`` new tokens at ``context`` cached tokens, interpolated linearly in k
        and in context between the measured points (held at the nearest end outside them)."""
        ctxs = self.contexts
        c = ctxs[0] if context is None else context
        per_ctx = {x: _interp(self.block_ms[x], k) for x in ctxs}
        return _interp(per_ctx, c, extrapolate=False)

    def head(self, k: float = 1) -> float:
        """ms of the final norm + head + argmax over ``k`` rows (interpolated linearly in k)."""
        return _interp(self.head_ms, k)

    def cold_head(self, gap: float) -> float:
        """Extra ms of one head call (full head: an emitted token's head or a full gate check) when ``gap``
        decoder blocks ran since the previous head call, over the back-to-back :meth:`head`:
        max(0, head_after(gap) − head(1)), ``head_after`` interpolated linearly in the gap and held at the
        ends; 0 for a profile without ``head_after_ms``. The weights are read once per call, so the extra
        is the same whatever the rows."""
        if not self.head_after_ms:
            return 0.0
        return max(0.0, _interp(self.head_after_ms, gap, extrapolate=False) - self.head(1))

    def prefill(self, positions: float) -> float:
        """ms of one block over a prompt of ``positions`` tokens (linear in positions through the
        measured points, extrapolated beyond them)."""
        return _interp(self.prefill_block_ms, positions)

    def check(self, mode: str) -> float:
        """ms of one gate check in ``mode`` (``full``, ``topk:K``, ``state``).

        Raises:
            ProfileError: if the profile has no figure for that mode.
        """
        if mode not in self.check_ms:
            raise ProfileError(f"the cost profile of {self.model} has no figure for check mode {mode!r} "
                               f"(it has {', '.join(sorted(self.check_ms)) or 'none'}); rerun ee-bench cost "
                               f"--model {self.model} --checks {mode}.")
        return self.check_ms[mode]

    @property
    def head_in_blocks(self) -> float:
        """head_ms(1) / block_ms(1) at the shortest context: how many blocks one head costs."""
        return self.head(1) / self.block(1)

    def architecture_problems(self, model_info: Mapping[str, Any]) -> list[str]:
        """How a run's ``model_info`` (results JSON) differs from this profile's architecture, dtype and device
        ([] when it fits): every architecture key both record (``model_type``, ``n_layers``, ``hidden_size``,
        ``vocab_size``, ...; those of :data:`ARCH_KEYS_REQUIRED` must be there), the dtype (``torch.float32``
        reads as ``float32``) and the device. A profile
        without an ``architecture`` (written before it existed) fits nothing: it cannot show that it does."""
        if not self.architecture:
            return [f"the profile of {self.model} records no architecture (rewrite it with ee-bench cost)"]
        info = dict(model_info)
        problems = [f"the run's model_info records no {k}" for k in ARCH_KEYS_REQUIRED if k not in info]
        problems += [f"{k}: run {info[k]!r}, profile {v!r}" for k, v in self.architecture.items()
                     if k in info and info[k] != v]
        dtype = str(info.get("dtype") or "").removeprefix("torch.")
        if dtype and dtype != self.dtype:
            problems.append(f"dtype: run {dtype!r}, profile {self.dtype!r}")
        device = str(info.get("device") or "").split(":")[0]
        if device and device != self.device.split(":")[0]:
            problems.append(f"device: run {device!r}, profile {self.device!r}")
        return problems

    def summary(self) -> dict[str, Any]:
        """The ``predicted_speedup.profile`` entry of a results JSON."""
        return {"model": self.model, "device": self.device, "dtype": self.dtype, "threads": self.threads,
                "source": self.source, "block_ms": self.block(1), "head_ms": self.head(1),
                "head_in_blocks": self.head_in_blocks}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["block_ms"] = {str(c): {str(k): v for k, v in row.items()} for c, row in self.block_ms.items()}
        d["prefill_block_ms"] = {str(c): v for c, v in self.prefill_block_ms.items()}
        d["head_ms"] = {str(k): v for k, v in self.head_ms.items()}
        d["head_after_ms"] = {str(k): v for k, v in self.head_after_ms.items()}
        return {"schema": PROFILE_SCHEMA, **d}


def _interp(points: dict, x: float, extrapolate: bool = True) -> float:
    """Piecewise-linear value at ``x`` through {x_i: y_i}; beyond the ends: the end segment's line
    (``extrapolate``) or the end value."""
    xs = sorted(points)
    if len(xs) == 1:
        return float(points[xs[0]])
    if x <= xs[0] or x >= xs[-1]:
        if not extrapolate:
            return float(points[xs[0] if x <= xs[0] else xs[-1]])
        a, b = (xs[0], xs[1]) if x <= xs[0] else (xs[-2], xs[-1])
    else:
        i = next(i for i in range(1, len(xs)) if xs[i] >= x)
        a, b = xs[i - 1], xs[i]
    ya, yb = float(points[a]), float(points[b])
    return max(0.0, ya + (yb - ya) * (x - a) / (b - a))


# ------------------------------------------------------------------ reading and checking
def _ms_map(value: Any, name: str, problems: list[str], int_keys: bool = True) -> dict:
    if not isinstance(value, dict) or not value:
        problems.append(f"'{name}' must be a non-empty mapping")
        return {}
    out = {}
    for k, v in value.items():
        try:
            key = int(k) if int_keys else str(k)
        except (TypeError, ValueError):
            problems.append(f"'{name}' has a key {k!r} that is not a whole number")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            problems.append(f"'{name}[{k}]' must be a finite number >= 0 (ms), got {v!r}")
            continue
        out[key] = float(v)
    return out


def profile_from_dict(data: Any, source: str = "profile") -> CostProfile:
    """Validate a profile JSON document.

    Raises:
        ProfileError: listing every problem (schema, missing keys, non-numbers, non-positive block times).
    """
    if not isinstance(data, dict):
        raise ProfileError(f"{source} is not a cost profile (a JSON object with schema {PROFILE_SCHEMA!r}); "
                           f"write one with ee-bench cost --model M --output FILE.")
    problems = []
    if data.get("schema") != PROFILE_SCHEMA:
        problems.append(f"schema is {data.get('schema')!r}, expected {PROFILE_SCHEMA!r}")
    for key, typ in (("model", str), ("device", str), ("dtype", str), ("source", str), ("threads", int),
                     ("n_layers", int)):
        if not isinstance(data.get(key), typ) or isinstance(data.get(key), bool):
            problems.append(f"'{key}' ({typ.__name__}) is missing or mistyped")
    blocks: dict[int, dict[int, float]] = {}
    raw = data.get("block_ms")
    if not isinstance(raw, dict) or not raw:
        problems.append("'block_ms' must map context lengths to {k: ms}")
    else:
        for c, row in raw.items():
            m = _ms_map(row, f"block_ms[{c}]", problems)
            if m and min(m.values()) <= 0:
                problems.append(f"'block_ms[{c}]' has a time <= 0")
            try:
                blocks[int(c)] = m
            except (TypeError, ValueError):
                problems.append(f"'block_ms' has a context {c!r} that is not a whole number")
    head = _ms_map(data.get("head_ms"), "head_ms", problems)
    prefill = _ms_map(data.get("prefill_block_ms"), "prefill_block_ms", problems)
    checks = _ms_map(data.get("check_ms", {}) or {"-": 0.0}, "check_ms", problems, int_keys=False)
    kv = _ms_map(data.get("kv_ms", {}) or {"-": 0.0}, "kv_ms", problems, int_keys=False)
    after = _ms_map(data["head_after_ms"], "head_after_ms", problems) if data.get("head_after_ms") else {}
    if not isinstance(data.get("architecture", {}), dict):
        problems.append("'architecture' must be an object (model_type, n_layers, hidden_size, ...)")
    if isinstance(data.get("n_layers"), int) and data["n_layers"] < 1:
        problems.append("'n_layers' must be >= 1")
    if isinstance(data.get("threads"), int) and data["threads"] < 1:
        problems.append("'threads' must be >= 1")
    if problems:
        raise ProfileError(f"{source} is not a usable cost profile: " + "; ".join(problems)
                           + ". Rewrite it with ee-bench cost --model M --output FILE.")
    checks.pop("-", None)
    kv.pop("-", None)
    return CostProfile(model=data["model"], device=data["device"], dtype=data["dtype"], threads=data["threads"],
                       source=data["source"], n_layers=data["n_layers"], block_ms=blocks, prefill_block_ms=prefill,
                       head_ms=head, check_ms=checks, kv_ms=kv, flops=dict(data.get("flops") or {}),
                       bytes=dict(data.get("bytes") or {}), versions=dict(data.get("versions") or {}),
                       notes=str(data.get("notes", "")), architecture=dict(data.get("architecture") or {}),
                       head_after_ms=after)


def load_profile(path: str | Path, model: str | None = None) -> CostProfile:
    """Read and validate a profile file; with ``model``, refuse a profile of another model.

    Raises:
        ProfileError: unreadable, not JSON, invalid (:func:`profile_from_dict`), or another model's.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read cost profile {p}: {exc}. Give an existing profile file written by "
                           f"ee-bench cost --output FILE.") from None
    except ValueError as exc:
        raise ProfileError(f"cost profile {p} is corrupt (not JSON: {exc}). Delete it and rerun ee-bench cost.") from None
    prof = profile_from_dict(data, str(p))
    if model is not None and prof.model != model:
        raise ProfileError(f"cost profile {p} is for model {prof.model!r}, not {model!r}. Give the profile of "
                           f"{model} (ee-bench cost --model {model} --output FILE), or omit it.")
    return prof


def save_profile(path: str | Path, profile: CostProfile) -> Path:
    """Write ``profile`` atomically (:func:`ee_bench.files.write_json`)."""
    write_json(Path(path), profile.to_dict())
    return Path(path)


def cache_root() -> Path:
    """``$EE_BENCH_CACHE``, else ``$XDG_CACHE_HOME/ee-bench``, else ``~/.cache/ee-bench`` (as the GGUF cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ee-bench"


def profile_key(model: str, device: str, dtype: str, threads: int, source: str = "measured") -> str:
    """File-name-safe key ``<model>__<device>__<dtype>__<threads>t[__<source>]``."""
    parts = [model, device, dtype, f"{threads}t"] + ([] if source == "measured" else [source])
    return "__".join(re.sub(r"[^A-Za-z0-9._-]+", "_", p).strip("_.") for p in parts)


def cache_path(model: str, device: str, dtype: str, threads: int, source: str = "measured") -> Path:
    """Where the cached profile of this key lives: ``<cache_root>/costs/<key>.json``."""
    return cache_root() / "costs" / f"{profile_key(model, device, dtype, threads, source)}.json"


def cached_profile(model: str, device: str, dtype: str, threads: int) -> CostProfile | None:
    """The cached measured profile of this key, or None when there is none or it is unusable."""
    p = cache_path(model, device, dtype, threads)
    if not p.is_file():
        return None
    try:
        return load_profile(p, model)
    except ProfileError:
        return None
