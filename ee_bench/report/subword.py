"""Word-initial pieces against continuation pieces (paper §6.1, Fig. 11).

A sub-word tokenizer splits a word into a first piece and continuation pieces. ee-bench classifies
each output token from the text the tokenizer decodes, so one rule serves SentencePiece (``▁`` marks a
preceding space) and byte-level BPE (``Ġ`` marks it; a character may span several byte tokens):

1. Decode the output prefix by prefix; token i covers the characters its decoding adds (a trailing
   U+FFFD of an incomplete UTF-8 character is not counted until the character completes, and the
   byte tokens of one character form one unit whose first token takes the unit's class, the others
   being continuations).
2. A unit with no letter or digit (punctuation, whitespace, special tokens) is ``other``.
3. Otherwise it is ``initial`` when it starts the output, starts with whitespace (the ``▁``/``Ġ``
   marker), or follows whitespace; else ``continuation``.

Scripts written without spaces between words (Chinese, Japanese, Thai) have no word boundaries to
find: the report skips them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ee_bench.errors import EEBenchError
from ee_bench.models.cards import resolve_card
from ee_bench.models.gguf_cache import GGUFCacheKey, cache_root
from ee_bench.models.hf_causal import gguf_file

INITIAL, CONTINUATION, OTHER = "initial", "continuation", "other"
CLASSES = (INITIAL, CONTINUATION, OTHER)
NO_SPACE_LANGS = frozenset({"zh", "ja", "th", "lo", "km", "my"})


@dataclass(frozen=True)
class Pieces:
    """The output of one document, split into its tokens' characters.

    Attributes:
        text: the decoded output. spans: per token, (start, end) character offsets into ``text``
            (empty for special tokens and for the leading bytes of a split character).
        classes: per token, ``initial``, ``continuation`` or ``other``.
    """

    text: str
    spans: list[tuple[int, int]]
    classes: list[str]


def split_pieces(ids: Sequence[int], decode: Callable[[list[int]], str],
                 special_ids: frozenset[int] | set[int] = frozenset()) -> Pieces:
    """Character spans and word-position classes of output tokens (module docstring).

    Args:
        ids: the output token ids. decode: the tokenizer's decoding of a list of ids (special tokens
            skipped, no clean-up of spaces). special_ids: ids that are always ``other``.

    Returns:
        :class:`Pieces`; ``len(spans) == len(classes) == len(ids)``.
    """
    ids = [int(i) for i in ids]
    spans: list[tuple[int, int]] = []
    classes: list[str] = []
    prev = ""
    pending: list[int] = []  # tokens whose bytes have not completed a character yet
    for i, tid in enumerate(ids):
        stable = decode(ids[: i + 1]).rstrip("\ufffd")
        start = len(prev) if stable.startswith(prev) else _common_prefix(prev, stable)
        prev = stable
        if tid in special_ids:
            spans.append((start, start))
            classes.append(OTHER)
            continue
        end = len(stable)
        if end == start:  # an incomplete character (or nothing visible yet): decided with its unit
            spans.append((start, start))
            classes.append(CONTINUATION)
            pending.append(i)
            continue
        unit_start = spans[pending[0]][0] if pending else start
        cls = _unit_class(stable, unit_start, end)
        spans.append((start, end))
        unit = [*pending, i]
        classes.append(cls)
        for j in unit[:-1]:
            classes[j] = cls
        if cls == INITIAL:  # only the unit's first token starts the word
            for j in unit[1:]:
                classes[j] = CONTINUATION
        pending = []
    return Pieces(prev, spans, classes)


def _unit_class(text: str, start: int, end: int) -> str:
    piece = text[start:end]
    if not any(c.isalnum() for c in piece):
        return OTHER
    if start == 0 or piece[0].isspace() or text[start - 1].isspace():
        return INITIAL
    return CONTINUATION


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenizer_kind(tokenizer) -> str:
    """``"byte-level BPE"`` (pieces marked with ``Ġ``), ``"SentencePiece"`` (``▁``) or ``"other"``,
    from the tokenizer's vocabulary."""
    vocab = tokenizer.get_vocab()
    g = sum(1 for t in vocab if t.startswith("Ġ"))
    s = sum(1 for t in vocab if t.startswith("▁"))
    if max(g, s) == 0:
        return "other"
    return "byte-level BPE" if g > s else "SentencePiece"


def decoder_of(tokenizer) -> Callable[[list[int]], str]:
    """A :func:`split_pieces` decode function for a ``transformers`` tokenizer."""
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def load_tokenizer(result: dict):
    """The tokenizer of the model card named in a results JSON (``config.model``/``model_args``).

    A GGUF card's tokenizer is read from the ee-bench GGUF cache when the model was loaded there
    before (about a second), else converted from the GGUF file (tens of seconds).

    Raises:
        EEBenchError: if the card or its tokenizer cannot be found offline.
    """
    from pathlib import Path

    from transformers import AutoTokenizer


    cfg = result.get("config", {})
    card = resolve_card(cfg.get("model") or result["model"], cfg.get("model_args"))
    try:
        if card.gguf:
            path = Path(gguf_file(card.gguf))
            entry = GGUFCacheKey.of(path).entry_dir(cache_root())
            if entry.is_dir():
                return AutoTokenizer.from_pretrained(entry)
            return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        return AutoTokenizer.from_pretrained(card.pretrained)
    except OSError as exc:
        raise EEBenchError(f"the tokenizer of model {card.name} could not be loaded offline "
                           f"({str(exc).splitlines()[0]}); pass a local copy with --model_args pretrained=PATH "
                           f"when running, or load the model once so it is cached.") from None
