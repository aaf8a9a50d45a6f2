"""Measuring a cost profile (issue 22): the pieces of the early-exit decoding loop, timed one by one.

Every figure times the very call the loop makes (:class:`~ee_bench.decoding.blocks.BlockExecutor`'s
``run_layer`` on the :class:`~ee_bench.decoding.kv_store.KVStore`, ``Unembed`` for emitted tokens and
checks, :func:`~ee_bench.exits.decide.observe_layer` + :func:`~ee_bench.exits.decide.exits_here` for the
gate rule, the KV strategy's ``on_exit``), at batch 1. Timing is ee-bench's one protocol,
:func:`~ee_bench.decoding.speedup.time_interleaved` (warm-up, ``repeats`` rounds with every piece
interleaved, the median round), each piece repeated ``inner`` times per round inside a
:class:`~ee_bench.decoding.timing.SectionTimer` (``time.perf_counter``, CUDA synchronised).

A block's and the head's time do not depend on the weights' values, so :func:`random_decoder` builds a
model's architecture from its ``config.json`` with random weights and only ONE decoder block (plus the
embedding, final norm and head): the paper's 7B models are profiled in about 1 GB instead of 14 GB.

Shape notation: H = hidden size, k = new tokens, c = cached tokens, K = candidates.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ee_bench.costs.flops import DTYPE_BYTES, architecture_of, cost_figures, shape_of
from ee_bench.costs.profile import TOKEN_COUNTS, CostProfile
from ee_bench.decoding.blocks import BlockExecutor
from ee_bench.decoding.checks import full_check, restricted_check
from ee_bench.decoding.early_exit import DecodeCounts, DecodeResult
from ee_bench.decoding.kv_store import SlotIndex
from ee_bench.decoding.speedup import time_interleaved
from ee_bench.decoding.timing import SectionTimer
from ee_bench.errors import EEBenchError
from ee_bench.exits.decide import exits_here, observe_layer
from ee_bench.exits.gates import GATES
from ee_bench.exits.kv import KV_STRATEGIES, KVContext
from ee_bench.models.arch import locate_decoder_parts
from ee_bench.models.unembed import Unembed

logger = logging.getLogger(__name__)

DEFAULT_CONTEXTS = (32, 256)
TARGET_S = 0.03  # seconds of work per piece per round (sets ``inner``)
MAX_INNER = 200
HEAD_WARM_CALLS = 10  # untimed head calls before the timed ones (the head's steady state in the CPU cache)


@dataclass
class RandomDecoder:
    """What :class:`BlockExecutor` reads of a wrapper, around a randomly initialised model
    (``model``: a ``*ForCausalLM``; ``parts``, ``unembed``, ``device``, ``name`` as in ``HFCausalLM``)."""

    model: Any
    parts: Any
    unembed: Any
    device: torch.device
    name: str


def random_weights_bytes(config: Mapping[str, Any], dtype: str, n_blocks: int = 1) -> int:
    """Bytes of parameters of ``n_blocks`` blocks + embedding + head (untied) in ``dtype``."""
    s = shape_of(config)
    tied = bool(config.get("tie_word_embeddings", False))
    return DTYPE_BYTES[dtype] * (n_blocks * s.block_params + s.head_params + (0 if tied else s.vocab * s.hidden))


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: ``torch.cuda.mem_get_info`` on CUDA, else MemAvailable of /proc/meminfo
    (physical pages available when that is unreadable)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(config: Mapping[str, Any], dtype: str, device: torch.device, name: str) -> int:
    """Refuse (EEBenchError) when one block + embedding + head, ×1.5 for activations and the cache,
    exceeds free memory; returns the bytes needed."""
    need = int(1.5 * random_weights_bytes(config, dtype))
    free = available_bytes(device)
    if need > free:
        raise EEBenchError(f"{name} with random weights needs about {need / 2**30:.1f} GiB on {device} (one block, "
                           f"embedding and head in {dtype}, with margin) and {free / 2**30:.1f} GiB is free. Free "
                           f"memory, or use --roofline a100-80gb|h100-80gb (no model is built).")
    return need


def random_decoder(config: Mapping[str, Any], name: str, dtype: str, device: torch.device, seed: int = 0) -> RandomDecoder:
    """The architecture of ``config`` (a ``config.json`` mapping) with ONE decoder block, random weights
    in ``dtype``, on ``device`` (transformers' ``AutoModelForCausalLM.from_config``; sdpa attention)."""
    from transformers import AutoConfig, AutoModelForCausalLM  # optional heavy dependency: transformers

    cfg = {k: v for k, v in config.items() if not k.startswith("_")}  # "_source": provenance note of a shipped config
    model_type = cfg.pop("model_type")
    hf_cfg = AutoConfig.for_model(model_type, **{**cfg, "num_hidden_layers": 1})
    hf_cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_cfg, dtype=getattr(torch, dtype)).to(device).eval()
    parts = locate_decoder_parts(model)
    return RandomDecoder(model, parts, Unembed(parts.final_norm, parts.head), device, name)


def device_label(device: torch.device) -> str:
    """A profile's device key: ``cpu``, or ``cuda:<device name>`` (e.g. ``cuda:NVIDIA H100 80GB HBM3``)."""
    return "cpu" if device.type == "cpu" else f"{device.type}:{torch.cuda.get_device_name(device)}"


def _mode(op: Callable[[], Any], inner: int, device: torch.device, prep: Callable[[], Any] | None = None,
          warm: int = 0):
    """A :func:`time_interleaved` mode running ``op`` ``inner`` times in one timed section; with ``prep``,
    ``prep`` runs untimed before each ``op`` (each ``op`` then timed on its own). ``warm`` untimed rounds of
    ``prep`` + ``op`` come first: the head's weights take several calls to settle in the CPU cache (on
    SmolLM2 back-to-back head calls went 10.0, 8.0, 7.2, 6.6, 6.2, 5.7 ms after a flush, 3.9 ms once settled)."""

    def run(_chunk) -> DecodeResult:
        timer = SectionTimer(device)
        for _ in range(warm):
            if prep is not None:
                prep()
            op()
        if prep is None:
            with timer.section("layers"):
                for _ in range(inner):
                    op()
        else:
            for _ in range(inner):
                prep()
                with timer.section("layers"):
                    op()
        return DecodeResult((), timer.split(), DecodeCounts())

    return run


def _inner(op: Callable[[], Any], device: torch.device, target_s: float = TARGET_S,
           prep: Callable[[], Any] | None = None) -> int:
    """Repetitions per round so that a piece (with its ``prep``) takes about ``target_s`` seconds (from one
    timed call)."""
    whole = op if prep is None else (lambda: (prep(), op()))
    whole()
    t = SectionTimer(device)
    with t.section("layers"):
        whole()
    return max(1, min(MAX_INNER, round(target_s / max(t.totals["layers"], 1e-6))))


def head_gaps(n_blocks: int) -> tuple[int, ...]:
    """The gaps g of ``head_after_ms[g]`` measured over ``n_blocks`` built blocks: 1, 2, 4, 8, 16, 32 up to
    ``n_blocks``, and ``n_blocks``."""
    return tuple(sorted({g for g in (1, 2, 4, 8, 16, 32) if g <= n_blocks} | {n_blocks}))


@dataclass(frozen=True)
class ProfileModes:
    """The pieces of a profile as :func:`time_interleaved` modes, to time alone (:func:`measure_profile`) or
    interleaved with decoding runs (``benchmarks/cost_model_check.py``), then :meth:`profile`.

    A block piece runs the built blocks in turn (``layer``, ``layer``+1, … modulo the blocks built): timing
    one block over and over would keep its weights in the CPU cache, which the decoding loop (every block
    once per token) never does — on SmolLM2-135M that made a block look about 1.4× cheaper than in the loop.

    Attributes:
        keys: one key per piece (("block", c, k), ("prefill", c), ("head", k), ("check", mode), ("kv", name),
            ("head_after", g): the head called every g blocks, only the head timed).
        modes: ``chunk -> DecodeResult`` per key (the piece ``inner[key]`` times per call).
        inner: repetitions per call. meta: the profile's other fields.
    """

    keys: tuple
    modes: tuple
    inner: dict
    meta: dict

    def profile(self, runs: list[DecodeResult], calls_per_round: int = 1) -> CostProfile:
        """The :class:`CostProfile` from the median rounds of :attr:`modes` (in order); ``calls_per_round``:
        how many times :func:`time_interleaved` called each mode per round (its number of chunks)."""
        ms = {key: 1e3 * r.split.layers_s / (self.inner[key] * calls_per_round) for key, r in zip(self.keys, runs)}
        m = self.meta
        contexts, L_run = m["contexts"], m["L_run"]
        return CostProfile(
            model=m["model"], device=m["device"], dtype=m["dtype"], threads=torch.get_num_threads(), source=m["source"],
            n_layers=m["n_layers"],
            block_ms={c: {k: ms[("block", c, k)] for k in TOKEN_COUNTS} for c in contexts},
            prefill_block_ms={c: ms[("prefill", c)] for c in contexts},
            head_ms={k: ms[("head", k)] for k in TOKEN_COUNTS},
            check_ms={mode: ms[("check", mode)] for mode in m["checks"]},
            kv_ms={kv: ms[("kv", kv)] / (L_run - 1) for kv in ("copy", "recompute") if ("kv", kv) in ms},
            head_after_ms={key[1]: ms[key] for key in self.keys if key[0] == "head_after"},
            flops=m["flops"], bytes=m["bytes"], versions=m["versions"], notes=m["notes"],
            architecture=m["architecture"])


@torch.no_grad()
def profile_modes(wrapper, model: str, *, n_layers: int | None = None, dtype: str, contexts=DEFAULT_CONTEXTS,
                  topk: int = 16, layer: int = 0, source: str = "measured", config: Mapping[str, Any] | None = None,
                  versions: Mapping[str, Any] | None = None, notes: str = "",
                  target_s: float = TARGET_S) -> ProfileModes:
    """The timed pieces of the decoding loop on ``wrapper`` (see :func:`measure_profile` for the arguments;
    ``target_s``: seconds of work per piece per call, more is steadier on a loaded machine).

    Raises:
        ModelStructureError: for an architecture the block loop does not support.
    """
    runner = BlockExecutor(wrapper)
    dev, L_run = runner.device, runner.n_layers
    H = int(runner.config.hidden_size)
    ctx_max = max(contexts)
    store = runner.new_store(1, ctx_max + max(TOKEN_COUNTS))
    key_real = torch.ones((1, store.written.shape[-1]), dtype=torch.bool, device=dev)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = lambda q: torch.randn((1, q, H), generator=gen).to(dev, runner.dtype)  # noqa: E731

    def block_op(c: int, k: int, prefill: bool = False):
        cols = torch.arange(c, c + k, device=dev).view(1, k) if not prefill else torch.arange(k, device=dev).view(1, k)
        index = SlotIndex(torch.zeros(1, dtype=torch.long, device=dev), cols, torch.ones_like(cols, dtype=torch.bool),
                          int(cols.max()) + 1, True)
        mask, rope, h = runner.mask(index, key_real), runner.rope(cols), x(k)
        turn = iter(range(1 << 62))

        def op():  # cycles through the built blocks, so their weights are as cold in cache as in the loop
            return runner.run_layer((layer + next(turn)) % L_run, h, index, store, mask, rope)

        return op

    h1, h2 = x(1)[:, 0], x(1)[:, 0]  # (1, H)
    conf, state = GATES.get("confidence")(), GATES.get("state")()
    cand = full_check(runner.unembed, h1, topk)[3]  # (1, K)

    def check_full():
        top1, p, e = runner.unembed.reduce(h1)
        return exits_here(conf, observe_layer(layer, L_run, top1=top1, top1_prob=p, entropy=e), conf.default_threshold)

    def check_topk():
        top1, p, e = restricted_check(runner.unembed, h1, cand)
        return exits_here(conf, observe_layer(layer, L_run, top1=top1, top1_prob=p, entropy=e), conf.default_threshold)

    def check_state():
        return exits_here(state, observe_layer(layer, L_run, hidden=h1, prev_hidden=h2), state.default_threshold)

    ops: dict[tuple, Callable[[], Any]] = {}
    for c in contexts:
        for k in TOKEN_COUNTS:
            ops[("block", c, k)] = block_op(c, k)
        ops[("prefill", c)] = block_op(0, c, prefill=True)
    for k in TOKEN_COUNTS:
        hk = x(k)[0]
        ops[("head", k)] = (lambda hk=hk: runner.unembed(hk).argmax(dim=-1))
    # the head called every g blocks (as in the loop: one head call per check or emitted token): the blocks
    # in between push its weights out of the cache
    preps: dict[tuple, Callable[[], Any]] = {}
    gap_block = block_op(contexts[0], 1)
    for g in head_gaps(L_run):
        ops[("head_after", g)] = ops[("head", 1)]
        preps[("head_after", g)] = (lambda g=g: [gap_block() for _ in range(g)])
    checks = ("full", f"topk:{topk}", "state")
    ops[("check", checks[0])], ops[("check", checks[1])], ops[("check", checks[2])] = check_full, check_topk, check_state
    if L_run > 1:  # KV strategies fill the layers above the exit: needs at least two built blocks
        for kv in ("copy", "recompute"):
            strat = KV_STRATEGIES.get(kv)(KVContext(runner, store, torch.zeros(1, dtype=torch.long, device=dev)))
            rows, col = torch.zeros(1, dtype=torch.long, device=dev), torch.tensor([ctx_max], device=dev)
            ops[("kv", kv)] = (lambda s=strat, r=rows, c=col: s.on_exit(r, c, 0, h1))
    ops = {key: torch.no_grad()(op) for key, op in ops.items()}
    preps = {key: torch.no_grad()(op) for key, op in preps.items()}
    inner = {key: _inner(op, dev, target_s, preps.get(key)) for key, op in ops.items()}
    flops, nbytes, arch = ({}, {}, {})
    if config is not None:
        flops, nbytes = cost_figures(shape_of(config), dtype, contexts[0])
        arch = architecture_of(config)
    meta = {"model": model, "device": device_label(dev), "dtype": dtype, "source": source, "n_layers": n_layers or L_run,
            "L_run": L_run, "contexts": tuple(contexts), "checks": checks, "flops": flops, "bytes": nbytes,
            "architecture": arch, "versions": dict(versions or {}),
            "notes": (notes + "; " if notes else "") + f"blocks {layer}.. timed in turn; interleaved rounds, median; contexts "
                     f"{list(contexts)}"}
    # head calls and full checks are timed in their steady state: back to back, or every g blocks
    warm = {key: HEAD_WARM_CALLS for key in ops if key[0] in ("head", "head_after") or key == ("check", checks[0])}
    return ProfileModes(tuple(ops), tuple(_mode(op, inner[key], dev, preps.get(key), warm.get(key, 0))
                                          for key, op in ops.items()), inner, meta)


def measure_profile(wrapper, model: str, *, n_layers: int | None = None, dtype: str, contexts=DEFAULT_CONTEXTS,
                    repeats: int = 5, topk: int = 16, layer: int = 0, source: str = "measured",
                    config: Mapping[str, Any] | None = None, versions: Mapping[str, Any] | None = None,
                    notes: str = "") -> CostProfile:
    """Time every piece of the decoding loop on ``wrapper`` and return its :class:`CostProfile`.

    Args:
        wrapper: an ``HFCausalLM`` or a :class:`RandomDecoder`. model: the profile's model name.
        n_layers: L of the real model (default: the wrapper's). dtype: the weights' dtype name.
        contexts: two (or more) cached-token counts. repeats: timed rounds (median kept). topk: K of the
            ``topk:K`` check. layer: the block timed. config: the HF config mapping (for FLOPs/bytes).
        versions: library versions to record. notes: free text kept in the profile.

    Raises:
        EEBenchError: if ``repeats`` < 1 (:func:`time_interleaved`); ModelStructureError for an
            architecture the block loop does not support.
    """
    pm = profile_modes(wrapper, model, n_layers=n_layers, dtype=dtype, contexts=contexts, topk=topk, layer=layer,
                       source=source, config=config, versions=versions, notes=notes)
    return pm.profile(time_interleaved(list(pm.modes), [[0]], repeats))
