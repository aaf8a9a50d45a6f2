"""ee-bench: a benchmark suite for early exit in transformer models.

The method follows "Early Exit: A Natural Capability in Transformer-based Models Unveiling by
Joint Optimization" (see ``docs/definitions.md`` for the definitions ee-bench implements).
"""

__version__ = "0.1.0"
