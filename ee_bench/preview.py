"""Which runs are previews: the one rule, shared by the leaderboard (its tables and site) and the
analysis report, that keeps runs on too few documents out of every ranking."""

from __future__ import annotations

from typing import Any

MIN_DOCS = 200  # rows on fewer documents (unless that is the whole set) are previews, never ranked


def is_preview(res: dict[str, Any]) -> bool:
    """True when a results dict rests on fewer than ``MIN_DOCS`` documents and not on the whole test set.

    Args:
        res: a results dict with ``n_docs {"evaluated", "total"}``.
    """
    n = res["n_docs"]
    return n["evaluated"] < min(MIN_DOCS, n["total"])
