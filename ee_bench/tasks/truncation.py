"""The task truncation rule: cut one document field so a long input fits the model's context.

A task's ``truncation: {field: article, max_tokens: 1536}`` keeps the first ``max_tokens`` tokens
(in the evaluated model's tokenizer) of ``doc[field]`` and drops the rest. Only that field is cut,
before the prompt is rendered, so the instruction before it and the prompt end after it
(``### Response:``) stay intact. The cut falls on a token boundary of the original text (via the
tokenizer's character offsets where it has them), so no characters are altered. The number of
tokens kept and dropped is recorded in the returned document under ``_truncation``.
"""

from __future__ import annotations

from typing import Any

from ee_bench.errors import ConfigError
from ee_bench.tasks.spec import TaskSpec

TRUNCATION_KEYS = {"field", "max_tokens"}


def truncation_problems(truncation: dict[str, Any] | None) -> list[str]:
    """Every problem of a ``truncation`` mapping (empty when valid or absent)."""
    if truncation is None:
        return []
    problems = [f"unknown key truncation.{k!r} (allowed: field, max_tokens)" for k in sorted(set(truncation) - TRUNCATION_KEYS)]
    if not isinstance(truncation.get("field"), str):
        problems.append("'truncation.field' (the document field to cut) is required")
    mt = truncation.get("max_tokens")
    if not (isinstance(mt, int) and not isinstance(mt, bool) and mt > 0):
        problems.append("'truncation.max_tokens' must be a positive integer")
    return problems


def apply_truncation(spec: TaskSpec, doc: dict[str, Any], tokenizer) -> dict[str, Any]:
    """Return ``doc`` with ``spec.truncation.field`` cut to at most ``max_tokens`` tokens.

    Args:
        spec: the task; without a ``truncation`` rule the document is returned unchanged.
        doc: one document (not modified).
        tokenizer: the evaluated model's Hugging Face tokenizer (token counts are in its tokens,
            without special tokens).

    Returns:
        A new dict: the field holds the kept prefix of the original text, and ``_truncation`` holds
        ``{"field", "kept_tokens", "dropped_tokens"}``.

    Raises:
        ConfigError: if the rule is malformed or the document lacks the field (or it is not text).
    """
    rule = spec.truncation
    if not rule:
        return doc
    problems = truncation_problems(rule)
    name = rule.get("field")
    if not problems and not isinstance(doc.get(name), str):
        problems.append(f"truncation.field {name!r} is not a text field of the documents (fields: {sorted(doc)})")
    if problems:
        raise ConfigError(spec.source_file, problems)
    text, limit = doc[name], rule["max_tokens"]
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, TypeError, ValueError, KeyError):  # slow tokenizers have no offsets
        enc, offsets = tokenizer(text, add_special_tokens=False), None
    ids = enc["input_ids"]
    if len(ids) <= limit:
        kept = text
    elif offsets is not None:
        kept = text[: offsets[limit - 1][1]]
    else:
        kept = tokenizer.decode(ids[:limit])
    return {**doc, name: kept, "_truncation": {"field": name, "kept_tokens": min(len(ids), limit),
                                               "dropped_tokens": max(0, len(ids) - limit)}}
