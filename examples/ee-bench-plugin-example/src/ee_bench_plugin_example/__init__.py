"""Example ee-bench plug-in (the template for third parties; see README.md and docs/plugins.md).

Nothing here registers itself on import: the entry points in ``pyproject.toml`` are the
registration, and ee-bench imports :mod:`ee_bench_plugin_example.steady_gate` /
:mod:`ee_bench_plugin_example.exact_match` only when a user asks for ``--gate steady_confidence``
or a task lists ``exact_match``.
"""

__version__ = "0.1.0"
