"""Analyses that go beyond the oracle and gates (layer similarity, paper §5.1)."""
