"""Jinja rendering of ``doc_to_text`` / ``doc_to_target`` (lm-eval-harness style)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from ee_bench.errors import ConfigError


@lru_cache(maxsize=None)
def _environment() -> jinja2.Environment:
    # Not HTML: no autoescaping. StrictUndefined turns a misspelt field into an error.
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@lru_cache(maxsize=256)
def _compile(template: str) -> jinja2.Template:
    return _environment().from_string(template)


def render(template: str, doc: dict[str, Any], *, source: str = "template") -> str:
    """Render a Jinja template against one document.

    Raises:
        ConfigError: if the template is malformed or names a field the document lacks.
    """
    try:
        return _compile(template).render(**doc)
    except jinja2.TemplateError as exc:
        raise ConfigError(source, [f"template {template[:60]!r}… failed on a document with fields "
                                   f"{sorted(doc)}: {exc}"]) from None
