"""A cache of dequantised GGUF checkpoints, stored as safetensors in a user cache folder.

Loading a GGUF file through ``transformers`` dequantises every tensor and converts the tokenizer,
which takes 20–80 s on a CPU (SmolLM2-135M, Gemma-3-270M). The dequantised float32 weights, the
config, the generation config and the converted tokenizer are written once to

    ``$EE_BENCH_CACHE`` or ``$XDG_CACHE_HOME/ee-bench`` or ``~/.cache/ee-bench``, under ``gguf/<stem>-<key>/``

and later loads read that folder with the ordinary ``from_pretrained`` (about a second). The key is
a hash of the GGUF file's resolved path, size and modification time, the ``transformers`` version
and :data:`CACHE_FORMAT`, so a replaced file or an upgraded library makes a new entry. An entry is
written into a temporary folder next to its final place and renamed into place, so an interrupted
write leaves no half entry; a folder that exists is complete.

Both a cache miss and a hit end with the same ``from_pretrained`` call on the cache folder (the miss
writes the entry first), so the first and every later run see bit-identical weights, and those are
bit-identical to a direct GGUF load (``tests/test_gguf_cache.py`` checks the logits).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ee_bench.errors import EEBenchError

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bumped whenever the layout of a cache entry changes; part of the key."""

CACHE_ENV = "EE_BENCH_CACHE"
MANIFEST = "ee_bench_gguf_cache.json"
_TOKENIZER_KWARGS = ("revision", "trust_remote_code")


def cache_root() -> Path:
    """The user cache folder: ``$EE_BENCH_CACHE``, else ``$XDG_CACHE_HOME/ee-bench``, else ``~/.cache/ee-bench``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ee-bench"


@dataclass(frozen=True)
class GGUFCacheKey:
    """What a cache entry depends on (see the module docstring).

    Attributes:
        source: resolved path of the GGUF file.
        size_bytes: its size, bytes.
        mtime_ns: its modification time, nanoseconds since the epoch.
        transformers_version: the library that dequantised it and converted the tokenizer.
        cache_format: :data:`CACHE_FORMAT`.
    """

    source: str
    size_bytes: int
    mtime_ns: int
    transformers_version: str
    cache_format: int = CACHE_FORMAT

    @classmethod
    def of(cls, gguf_path: Path) -> GGUFCacheKey:
        """The key of a GGUF file as it is now.

        Raises:
            EEBenchError: if the file does not exist.
        """
        import transformers

        path = Path(gguf_path).resolve()
        try:
            st = path.stat()
        except FileNotFoundError:
            raise EEBenchError(f"GGUF file {path} does not exist; reinstall the package that ships it.") from None
        return cls(str(path), st.st_size, st.st_mtime_ns, transformers.__version__)

    def digest(self) -> str:
        """16 hex digits of the SHA-256 of the key's JSON form."""
        text = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def entry_dir(self, root: Path) -> Path:
        """Folder of this key's entry under ``root``."""
        return root / "gguf" / f"{Path(self.source).stem}-{self.digest()}"


@dataclass(frozen=True)
class GGUFLoad:
    """How a GGUF checkpoint was loaded.

    Attributes:
        gguf_path: the GGUF file.
        cache_dir: the cache entry used (None when the cache was off).
        cache_hit: whether the entry existed before this load.
        dequantise_s: seconds spent loading and dequantising the GGUF (0 on a hit).
        write_s: seconds spent writing the entry (0 on a hit).
        load_s: seconds of the final ``from_pretrained`` (from the entry, or from the GGUF when the
            cache was off).
    """

    gguf_path: Path
    cache_dir: Path | None
    cache_hit: bool
    dequantise_s: float
    write_s: float
    load_s: float

    @property
    def total_s(self) -> float:
        """All loading seconds together."""
        return self.dequantise_s + self.write_s + self.load_s


def load_from_gguf(gguf_path: Path, dtype: torch.dtype, **kwargs: Any):
    """Load a tokenizer and causal LM straight from a GGUF file, dequantising every tensor.

    Dequantisation is asked for explicitly (``GgufConfig(dequantize=True)``): newer ``transformers``
    can keep the weights packed in GGUF blocks when a matmul kernel is installed, and then neither
    the per-layer decoding (which needs the plain LM head) nor the cache (which needs plain tensors)
    would see ordinary weights.

    Args:
        gguf_path: the ``.gguf`` file.
        dtype: torch dtype of the returned model's weights.
        **kwargs: further ``from_pretrained`` arguments (e.g. ``revision``, ``device_map``).

    Returns:
        (model, tokenizer).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from transformers import GgufConfig
    except ImportError:  # transformers < 5 always dequantises GGUF weights
        GgufConfig = None
    folder, name = str(Path(gguf_path).parent), Path(gguf_path).name
    if GgufConfig is not None:
        kwargs.setdefault("quantization_config", GgufConfig(dequantize=True))
    tok_kwargs = {k: v for k, v in kwargs.items() if k in _TOKENIZER_KWARGS}
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, **tok_kwargs)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype, **kwargs)
    return model, tokenizer


def write_entry(model, tokenizer, target: Path, key: GGUFCacheKey, dequantise_s: float) -> None:
    """Write a float32 GGUF-loaded model and its tokenizer as an ordinary checkpoint, atomically.

    ``save_pretrained`` refuses a model loaded from GGUF (it carries a GGUF quantisation config), so
    a fresh model is built from the config without that entry, on the meta device (no second copy
    of the weights), and takes the loaded tensors by assignment before it is saved.

    Args:
        model: a ``*ForCausalLM`` loaded from the GGUF file in float32.
        tokenizer: its tokenizer.
        target: the entry folder; must not exist yet (another process may create it meanwhile, in
            which case this write is dropped).
        key: the entry's key, recorded in the manifest.
        dequantise_s: seconds the GGUF load took, recorded in the manifest.
    """
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(model.state_dict(), strict=True, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    fresh.generation_config = copy.deepcopy(model.generation_config)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        manifest = {**key.__dict__, "torch_version": torch.__version__, "dequantise_s": round(dequantise_s, 3),
                    "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MANIFEST).exists():
                raise
            logger.info("another process wrote %s first; keeping that entry", target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


ORPHAN_TMP_AGE_S = 24 * 3600
"""A temporary folder this old was left by a killed write (a live write takes minutes) and is removed."""


def _prune_stale(root: Path, key: GGUFCacheKey, keep: Path) -> None:
    """Remove older entries of the same GGUF file (other size, mtime or library version), and
    temporary folders of writes killed more than :data:`ORPHAN_TMP_AGE_S` ago."""
    for tmp in (root / "gguf").glob(".*.tmp-*"):
        try:
            if time.time() - tmp.stat().st_mtime > ORPHAN_TMP_AGE_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue
    for entry in (root / "gguf").glob(f"{Path(key.source).stem}-*"):
        if entry == keep or not (entry / MANIFEST).is_file():
            continue
        try:
            if json.loads((entry / MANIFEST).read_text()).get("source") == key.source:
                shutil.rmtree(entry, ignore_errors=True)
                logger.info("removed stale GGUF cache entry %s", entry)
        except (OSError, ValueError):
            continue


def load_gguf_cached(gguf_path: Path, dtype: torch.dtype, root: Path | None = None, use_cache: bool = True,
                     **kwargs: Any):
    """Load a GGUF checkpoint through the dequantised-weights cache.

    On a miss the GGUF file is loaded in float32, written to the cache (:func:`write_entry`) and
    freed; then, on a miss or a hit, the entry is loaded with ``from_pretrained`` in ``dtype``.

    Args:
        gguf_path: the ``.gguf`` file.
        dtype: torch dtype of the returned model's weights.
        root: cache folder (default :func:`cache_root`).
        use_cache: False loads straight from the GGUF file and writes nothing.
        **kwargs: further ``from_pretrained`` arguments (e.g. ``device_map``).

    Returns:
        (model, tokenizer, :class:`GGUFLoad`).

    Raises:
        EEBenchError: if the GGUF file is missing, or the cache folder cannot be written (the
            message names ``EE_BENCH_CACHE`` and ``gguf_cache=false``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not use_cache:
        t0 = time.perf_counter()
        model, tokenizer = load_from_gguf(gguf_path, dtype, **kwargs)
        return model, tokenizer, GGUFLoad(gguf_path, None, False, 0.0, 0.0, time.perf_counter() - t0)

    key = GGUFCacheKey.of(gguf_path)
    root = Path(root) if root is not None else cache_root()
    entry = key.entry_dir(root)
    hit = (entry / MANIFEST).is_file()
    dequantise_s = write_s = 0.0
    if not hit:
        logger.info("dequantising %s once; caching it in %s", gguf_path.name, entry)
        t0 = time.perf_counter()
        gguf_kwargs = {k: v for k, v in kwargs.items() if k in _TOKENIZER_KWARGS}
        model, tokenizer = load_from_gguf(gguf_path, torch.float32, **gguf_kwargs)
        t1 = time.perf_counter()
        try:
            write_entry(model, tokenizer, entry, key, t1 - t0)
        except OSError as exc:
            raise EEBenchError(
                f"Cannot write the GGUF cache entry {entry}: {exc}. Point {CACHE_ENV} at a writable "
                f"folder, or pass --model_args gguf_cache=false to load the GGUF file every time."
            ) from None
        del model
        dequantise_s, write_s = t1 - t0, time.perf_counter() - t1
        _prune_stale(root, key, entry)
    t2 = time.perf_counter()
    tok_kwargs = {k: v for k, v in kwargs.items() if k in _TOKENIZER_KWARGS}
    tokenizer = AutoTokenizer.from_pretrained(str(entry), **tok_kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(entry), dtype=dtype, **kwargs)
    info = GGUFLoad(gguf_path, entry, hit, dequantise_s, write_s, time.perf_counter() - t2)
    logger.info("loaded %s from %s cache entry in %.2f s", gguf_path.name, "a" if hit else "a new", info.load_s)
    return model, tokenizer, info
