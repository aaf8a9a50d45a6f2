"""Pytest fixtures over :mod:`tiny_models` (the one module that builds every tiny model the tests use)."""

from __future__ import annotations

import pytest
from tiny_models import build_tiny_gpt2, build_tiny_llama, wrap


@pytest.fixture(scope="module")
def tiny_llama_lm():
    """:class:`HFCausalLM` around :func:`tiny_models.build_tiny_llama`."""
    return wrap(build_tiny_llama(), "tiny-llama")


@pytest.fixture(scope="module")
def tiny_gpt2_lm():
    """:class:`HFCausalLM` around :func:`tiny_models.build_tiny_gpt2`."""
    return wrap(build_tiny_gpt2(), "tiny-gpt2")


@pytest.fixture(params=["llama", "gpt2"])
def tiny_lm(request, tiny_llama_lm, tiny_gpt2_lm):
    """Each tiny decoder in turn."""
    return {"llama": tiny_llama_lm, "gpt2": tiny_gpt2_lm}[request.param]
