"""COMET-22 (Rei et al., 2022) from ``unbabel-comet``: a neural MT metric reading source, output and
reference.

The checkpoint is, in order: the metric's ``model`` option in the task YAML, the
``EE_BENCH_COMET_MODEL`` environment variable (the CLI's ``--comet-model`` sets it), or the hub id
``Unbabel/wmt22-comet-da``. A local value may be a ``.ckpt`` file or a downloaded model folder (which
holds ``checkpoints/model.ckpt``). COMET also loads its encoder's tokenizer (``xlm-roberta-large``)
through ``transformers``, so offline use needs that in the Hugging Face cache too.

``unbabel-comet`` 2.2.7 pins ``transformers<5``, ``numpy<2`` and ``torchmetrics<0.11``, so it is an
optional extra (``pip install 'ee-bench[comet]'``, or ``make install-comet`` for a separate venv).
When the package, the checkpoint or the sources are unavailable, :meth:`COMET22.compute` returns
``MetricResult(None, {"reason": …})``: the run goes on and the results record ``comet22: null`` with
the reason; the metric is never dropped. The value is the system score (mean of the segment scores)
×100, with reference A when a document has several (COMET-22 takes one reference).
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ee_bench.errors import EEBenchError
from ee_bench.metrics.base import Metric, MetricInputs, MetricResult

logger = logging.getLogger(__name__)

COMET_MODEL_ENV = "EE_BENCH_COMET_MODEL"
DEFAULT_COMET_MODEL = "Unbabel/wmt22-comet-da"
INSTALL_HINT = "install the extra with `pip install 'ee-bench[comet]'` (or `make install-comet` for a separate venv)"


class CometUnavailable(Exception):
    """COMET cannot be computed here; the message is the reason recorded in the results."""


def check_comet_model(value: str) -> None:
    """Refuse a ``--comet-model`` value that looks like a local path but does not exist (before any
    model loads). A hub id (``org/name``) is left to :func:`resolve_checkpoint`.

    Raises:
        EEBenchError: naming --comet-model and the hub id to download.
    """
    path = Path(value).expanduser()
    looks_local = value.startswith((".", "/", "~")) or value.count("/") != 1 or value.endswith(".ckpt")
    if looks_local and not path.exists():
        raise EEBenchError(f"--comet-model {value} does not exist. Give a .ckpt file or a folder holding "
                           f"checkpoints/model.ckpt (download {DEFAULT_COMET_MODEL} where the hub is reachable), "
                           f"or leave --comet-model out to use the hub id {DEFAULT_COMET_MODEL}.")
    if path.is_dir() and not (path / "checkpoints" / "model.ckpt").is_file():
        raise EEBenchError(f"--comet-model {value} is a folder without checkpoints/model.ckpt. Give the folder of a "
                           f"downloaded {DEFAULT_COMET_MODEL} (it holds checkpoints/model.ckpt) or the .ckpt file.")


def comet_model_name(option: str | None = None) -> str:
    """The checkpoint to use: the YAML option, else ``$EE_BENCH_COMET_MODEL``, else the hub id."""
    return option or os.environ.get(COMET_MODEL_ENV) or DEFAULT_COMET_MODEL


def _import_comet():
    try:
        import comet
    except Exception as exc:  # ImportError, or a broken install (e.g. pkg_resources missing)
        raise CometUnavailable(f"unbabel-comet is not importable ({type(exc).__name__}: {exc}); {INSTALL_HINT}") from None
    return comet


def resolve_checkpoint(model: str) -> str:
    """Path of the ``.ckpt`` file for a local file, a local model folder, or a hub id (downloaded).

    Raises:
        CometUnavailable: if a local path lacks the checkpoint, or the download fails.
    """
    path = Path(model).expanduser()
    if path.is_file():
        return str(path)
    if path.is_dir():
        ckpt = path / "checkpoints" / "model.ckpt"
        if not ckpt.is_file():
            raise CometUnavailable(f"COMET model folder {path} has no checkpoints/model.ckpt; pass --comet-model "
                                   f"with a downloaded {DEFAULT_COMET_MODEL} folder (or its .ckpt file)")
        return str(ckpt)
    if model.startswith((".", "/", "~")) or model.count("/") > 1:  # a path, not an "org/name" hub id
        raise CometUnavailable(f"COMET checkpoint {model} does not exist; pass --comet-model (or {COMET_MODEL_ENV}) "
                               f"with a .ckpt file or a downloaded {DEFAULT_COMET_MODEL} folder")
    comet = _import_comet()
    try:
        return str(comet.download_model(model))
    except Exception as exc:  # hub unreachable, no cache, unknown id
        raise CometUnavailable(
            f"could not download COMET model {model!r} ({type(exc).__name__}: {str(exc)[:200]}); download "
            f"{DEFAULT_COMET_MODEL} where the hub is reachable and pass its folder with --comet-model or {COMET_MODEL_ENV}"
        ) from None


@lru_cache(maxsize=2)
def _load(checkpoint: str):
    """Load a checkpoint; its encoder and tokenizer are read from ``pretrained_model`` in its hparams
    (a hub id, or a local folder as in a checkpoint built offline)."""
    comet = _import_comet()
    try:
        return comet.load_from_checkpoint(checkpoint)
    except Exception as exc:
        raise CometUnavailable(f"loading COMET checkpoint {checkpoint} failed ({type(exc).__name__}: {str(exc)[:200]})") from None


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("unbabel-comet")
    except metadata.PackageNotFoundError:
        return "unknown"


class COMET22(Metric):
    """COMET-22 system score ×100 (mean of segment scores); null with a reason when unavailable.

    Args:
        model: checkpoint (hub id, model folder or ``.ckpt``); default ``$EE_BENCH_COMET_MODEL`` or
            ``Unbabel/wmt22-comet-da``.
        batch_size: segments per COMET forward pass.
    """

    unit = "points"
    aggregation = "mean"
    higher_is_better = True

    def __init__(self, model: str | None = None, batch_size: int = 16, **options: Any) -> None:
        super().__init__(**options)
        self.model = model
        self.batch_size = int(batch_size)

    def _segment_scores(self, inputs: MetricInputs) -> tuple[list[float] | None, dict[str, Any]]:
        """(segment scores ×100, or None; details: the reason when None, else provenance)."""
        if len(inputs.predictions) != len(inputs.references):
            raise ValueError(f"{len(inputs.predictions)} predictions but {len(inputs.references)} reference lists")
        name = comet_model_name(self.model)
        if inputs.sources is None:
            return None, {"reason": "COMET needs the source sentences and this task provides none", "model": name}
        if not inputs.predictions:
            return None, {"reason": "no documents to score", "model": name}
        try:
            _import_comet()
            scorer = _load(resolve_checkpoint(name))
        except CometUnavailable as exc:
            logger.warning("comet22 is null: %s", exc)
            return None, {"reason": str(exc), "model": name}
        import torch

        data = [{"src": str(s), "mt": str(p), "ref": str(r[0])}
                for s, p, r in zip(inputs.sources, inputs.predictions, inputs.references)]
        out = scorer.predict(data, batch_size=self.batch_size, gpus=1 if torch.cuda.is_available() else 0,
                             progress_bar=False)
        return [100.0 * float(x) for x in out.scores], {
            "model": name, "implementation": f"unbabel-comet {_package_version()}",
            "scoring": "mean of segment scores (system score), x100; reference A only",
            "n_docs": len(data),
        }

    def compute(self, inputs: MetricInputs) -> MetricResult:
        scores, details = self._segment_scores(inputs)
        if scores is None:
            return MetricResult(None, details)
        return MetricResult(sum(scores) / len(scores), details)

    def document_scores(self, inputs: MetricInputs) -> list[float] | None:
        """The segment scores ×100 of one COMET forward pass over every document (None if unavailable)."""
        return self._segment_scores(inputs)[0]
