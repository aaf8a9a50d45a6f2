"""The one place that picks a model's early-exit decoding loop, by the wrapper's ``kind``.

Decoder-only models (``kind == "causal"``) decode with :class:`~ee_bench.decoding.early_exit.EarlyExitDecoder`
(every KV strategy, check mode and self-speculative decoding); encoder-decoders (``kind == "seq2seq"``)
with :class:`~ee_bench.decoding.seq2seq_exit.Seq2SeqEarlyExitDecoder`. Both have the same ``decode``
signature, so the stage, ``trace``, the calibration and the speed-up measurement use either unchanged.
Models never build their own loop: the loops sit above the models.
"""

from __future__ import annotations

from ee_bench.decoding.checks import CheckMode, check_draft_len, parse_check_mode
from ee_bench.decoding.early_exit import EarlyExitDecoder
from ee_bench.decoding.seq2seq_exit import Seq2SeqEarlyExitDecoder
from ee_bench.errors import DecodingOptionError


def decoder_for(model, check: str | CheckMode | None = None, draft_len: int | None = None):
    """The early-exit decoder of a loaded wrapper.

    Args:
        model: a causal or encoder-decoder wrapper (:mod:`ee_bench.models.contracts`).
        check: check mode (``full`` or ``topk:K``); draft_len: tokens per self-speculative round. Both
            decoder-only options.

    Returns:
        An :class:`EarlyExitDecoder` or a :class:`Seq2SeqEarlyExitDecoder`.

    Raises:
        DecodingOptionError: ``--check topk:K`` or ``--draft-len`` with an encoder-decoder; a draft length < 1.
        CheckModeError: an unknown check mode. ModelStructureError: blocks that cannot run one at a time.
    """
    mode = parse_check_mode(check)
    check_draft_len(draft_len, "--draft-len")
    if getattr(model, "kind", "causal") == "seq2seq":
        if mode.approximate or draft_len is not None:
            raise DecodingOptionError("--check and --draft-len apply to decoder-only models; drop them for a translator.")
        return Seq2SeqEarlyExitDecoder(model)
    return EarlyExitDecoder(model, check=mode, draft_len=draft_len)
