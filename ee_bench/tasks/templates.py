"""Jinja rendering of ``doc_to_text`` / ``doc_to_target`` (lm-eval-harness style), in a sandbox.

Task files come from strangers, so a template is data, never code: it renders in Jinja's
:class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no attribute starting with ``_``, no mutation
of lists or dicts, no unsafe callables), and :func:`check_template` rejects at load time a template
that names an underscore attribute (``__class__``, ``__globals__``, ``__subclasses__``, ``__mro__``,
``__init__`` …) or does not parse, so such a task fails before any document or model is read.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ee_bench.errors import ConfigError

SANDBOX_HINT = ("templates may only read document fields (e.g. {{src}}) and use Jinja filters; "
                "attributes starting with '_' and calls into Python internals are refused")


@lru_cache(maxsize=None)
def _environment() -> ImmutableSandboxedEnvironment:
    # Not HTML: no autoescaping. StrictUndefined turns a misspelt field into an error.
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                         autoescape=False)


@lru_cache(maxsize=256)
def _compile(template: str) -> jinja2.Template:
    return _environment().from_string(template)


def _short(template: str) -> str:
    return repr(template[:60]) + ("…" if len(template) > 60 else "")


def unsafe_names(template: str) -> list[str]:
    """Underscore attribute or item names a template reaches for (``x.__class__``, ``x['__globals__']``,
    ``x|attr('__init__')``). Computed names (``x['__in' ~ 'it__']``) are stopped by the sandbox instead.

    Raises:
        jinja2.TemplateSyntaxError: if the template does not parse.
    """
    tree = _environment().parse(template)
    found = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem):
            name = getattr(node.arg, "value", None)
        else:  # x|attr('__init__')
            name = getattr(node.args[0], "value", None) if node.name == "attr" and node.args else None
        if isinstance(name, str) and name.startswith("_"):
            found.append(name)
    return found


def template_problems(template: str, key: str) -> list[str]:
    """Problems of one template found without rendering it: a syntax error, or an underscore
    attribute (a sandbox escape attempt). ``key`` is the YAML key holding it (``doc_to_text``...)."""
    try:
        bad = unsafe_names(template)
    except jinja2.TemplateSyntaxError as exc:
        return [f"{key} {_short(template)} is not a valid Jinja template: {exc.message} "
                f"(line {exc.lineno}); fix the template syntax"]
    if bad:
        return [f"{key} {_short(template)} reaches for {', '.join(sorted(set(bad)))}: unsafe "
                f"template refused ({SANDBOX_HINT}); remove it from the task file"]
    return []


def check_template(template: str, *, source: str, key: str) -> None:
    """Parse a template in the sandbox and refuse unsafe attribute access, before any rendering.

    Raises:
        ConfigError: naming ``source`` (the task file), on a syntax error or an underscore attribute.
    """
    problems = template_problems(template, key)
    if problems:
        raise ConfigError(source, problems)


def render(template: str, doc: dict[str, Any], *, source: str = "template") -> str:
    """Render a Jinja template against one document, in the sandbox.

    Raises:
        ConfigError: if the template is malformed, names a field the document lacks, fails while
            rendering (e.g. ``{{1/0}}``), or attempts an operation the sandbox refuses.
    """
    try:
        return _compile(template).render(**doc)
    except jinja2.exceptions.SecurityError as exc:
        raise ConfigError(source, [f"template {_short(template)} attempted an unsafe operation ({exc}); "
                                   f"{SANDBOX_HINT}. Remove it from the task file"]) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(source, [f"template {_short(template)} failed on a document with fields "
                                   f"{sorted(doc)}: {exc}. Fix the template or the data"]) from None
    except Exception as exc:  # e.g. ZeroDivisionError, TypeError from an expression in the template
        raise ConfigError(source, [f"template {_short(template)} failed on a document with fields "
                                   f"{sorted(doc)}: {type(exc).__name__}: {exc}. Fix the template"]) from None
