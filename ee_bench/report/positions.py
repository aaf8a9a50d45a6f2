"""Exit layer by output position and by output length (paper §6, Fig. 5).

Input: for each document, the per-token exit layers of its output (e.g. the first-match oracle
layers of the samples file), 0-based. Position t is the 0-based index of the token in the output; the
length of a document's output is its number of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

LENGTH_EDGES = (8, 16, 32, 64, 128)
"""Upper bounds (inclusive) of the output-length buckets, tokens: 1–8, 9–16, 17–32, 33–64, 65–128, >128."""


@dataclass(frozen=True)
class Bucket:
    """Mean exit layer of a group of tokens.

    Attributes:
        label: the position ("0", "1", …) or the length range ("1–8"). n_docs: documents contributing.
        n_tokens: tokens averaged. mean_layer: their mean exit layer (layers, 0-based).
    """

    label: str
    n_docs: int
    n_tokens: int
    mean_layer: float


def position_means(doc_layers: list[list[int]], max_positions: int | None = None) -> list[Bucket]:
    """Mean exit layer at each output position t = 0, 1, … over the documents that reach it.

    Args:
        doc_layers: one list of per-token exit layers per document.
        max_positions: keep positions below it (None: all).

    Returns:
        One :class:`Bucket` per position reached by at least one document, in order.
    """
    longest = max((len(d) for d in doc_layers), default=0)
    if max_positions is not None:
        longest = min(longest, max_positions)
    out = []
    for t in range(longest):
        vals = [d[t] for d in doc_layers if len(d) > t]
        out.append(Bucket(str(t), len(vals), len(vals), sum(vals) / len(vals)))
    return out


POSITION_EDGES = (0, 1, 2, 3, 7, 15, 31, 63, 127)
"""Upper bounds (inclusive) of the 0-based position buckets of the tables: 0, 1, 2, 3, 4–7, …, 64–127, >127."""


def position_buckets(doc_layers: list[list[int]], edges: tuple[int, ...] = POSITION_EDGES) -> list[Bucket]:
    """Mean exit layer of the tokens whose 0-based output position falls in each bucket.

    Args:
        doc_layers: one list of per-token exit layers per document.
        edges: increasing inclusive upper bounds; a last open bucket takes later positions.

    Returns:
        One :class:`Bucket` per non-empty bucket (``n_docs``: documents reaching it).
    """
    bounds = [(lo + 1, hi) for lo, hi in zip((-1, *edges[:-1]), edges)] + [(edges[-1] + 1, None)]
    out = []
    for lo, hi in bounds:
        vals = [x for d in doc_layers for t, x in enumerate(d) if t >= lo and (hi is None or t <= hi)]
        if not vals:
            continue
        n_docs = sum(1 for d in doc_layers if len(d) > lo)
        label = (str(lo) if lo == hi else f"{lo}–{hi}") if hi is not None else f">{lo - 1}"
        out.append(Bucket(label, n_docs, len(vals), sum(vals) / len(vals)))
    return out


def length_slope(doc_layers: list[list[int]]) -> float | None:
    """Least-squares slope of a document's mean exit layer against its output length.

    Each non-empty document is one point (length in tokens, mean layer); the slope is in layers per
    token, negative when longer outputs exit earlier (the paper's Fig. 5 trend). None with fewer than
    two distinct lengths.
    """
    pts = [(len(d), sum(d) / len(d)) for d in doc_layers if d]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def length_buckets(doc_layers: list[list[int]], edges: tuple[int, ...] = LENGTH_EDGES) -> list[Bucket]:
    """Mean exit layer over all tokens of the documents whose output length falls in each bucket.

    Args:
        doc_layers: one list of per-token exit layers per document (empty outputs are skipped).
        edges: increasing inclusive upper bounds; a last open bucket takes longer outputs.

    Returns:
        One :class:`Bucket` per non-empty bucket, in length order; the mean is over tokens (a long
        document weighs more than a short one, as every token is one exit decision).
    """
    bounds = [(lo + 1, hi) for lo, hi in zip((0, *edges[:-1]), edges)] + [(edges[-1] + 1, None)]
    out = []
    for lo, hi in bounds:
        docs = [d for d in doc_layers if d and len(d) >= lo and (hi is None or len(d) <= hi)]
        if not docs:
            continue
        toks = [x for d in docs for x in d]
        label = f"{lo}–{hi}" if hi is not None else f">{lo - 1}"
        out.append(Bucket(label, len(docs), len(toks), sum(toks) / len(toks)))
    return out
