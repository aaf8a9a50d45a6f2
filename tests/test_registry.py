"""The plug-in registry: decorator registration, duplicates, lazy "module:attr" entries, miss messages."""

from __future__ import annotations

import collections

import pytest

from ee_bench.commands.ls import lazy_registries
from ee_bench.errors import EEBenchError, UnknownNameError
from ee_bench.registry import PluginLoadError, Registry, did_you_mean


class Widget:
    pass


def make() -> Registry:
    return Registry("widget", base=Widget)  # no entry-point group: no plug-in scan


def test_decorator_registration_returns_the_class():
    reg = make()

    @reg.register("round")
    class Round(Widget):
        pass

    assert Round.__name__ == "Round"  # the decorator hands the class back unchanged
    assert reg.get("round") is Round
    assert "round" in reg and "square" not in reg
    assert reg.origin("round") == "built-in"


def test_direct_registration_and_sorted_names():
    reg = make()

    class A(Widget):
        pass

    reg.register("zeta", A)
    reg.register("alpha", A)
    assert reg.names() == ["alpha", "zeta"]


def test_duplicate_name_is_an_error():
    reg = make()
    reg.register("round", Widget)
    with pytest.raises(ValueError) as err:
        reg.register("round", Widget)
    assert "widget 'round' is already registered (built-in)" in str(err.value)


def test_lazy_module_attr_entry_is_imported_on_first_use():
    reg = Registry("container")
    reg.register("ordered", "collections:OrderedDict")
    assert reg._entries["ordered"] == "collections:OrderedDict"  # not imported yet
    assert reg.get("ordered") is collections.OrderedDict
    assert reg._entries["ordered"] is collections.OrderedDict  # resolved once, then cached


def test_lazy_entry_of_the_wrong_type_is_refused():
    reg = make()
    reg.register("dict", "collections:OrderedDict")
    with pytest.raises(PluginLoadError) as err:
        reg.get("dict")
    assert "not a Widget" in str(err.value)


def test_instances_of_the_base_are_accepted():
    reg = make()
    w = Widget()
    reg.register("one", w)
    assert reg.get("one") is w


def test_miss_message_with_suggestion():
    reg = make()
    for name in ("confidence", "entropy", "patience"):
        reg.register(name, Widget)
    with pytest.raises(UnknownNameError) as err:
        reg.get("confidance")
    assert str(err.value) == "Unknown widget 'confidance'. Did you mean: confidence? Available: confidence, entropy, patience"
    assert isinstance(err.value, EEBenchError)


def test_did_you_mean_texts():
    assert did_you_mean("gate", "confidance", ["patience", "confidence", "entropy"]) == (
        "Unknown gate 'confidance'. Did you mean: confidence? Available: confidence, entropy, patience")
    # Nothing close: no suggestion, only the list.
    assert did_you_mean("gate", "xyz", ["entropy"]) == "Unknown gate 'xyz'. Available: entropy"
    assert did_you_mean("metric", "bleu", []) == "Unknown metric 'bleu'. Available: (none)"


def test_shipped_registries_resolve():
    regs = {k: f() for k, f in lazy_registries().items()}
    assert {"confidence", "entropy", "patience"} <= set(regs["gates"].names())
    assert {"bleu", "chrf"} <= set(regs["metrics"].names())
    assert "hf-causal" in regs["models"].names()
    from ee_bench.models.hf_causal import HFCausalLM

    assert regs["models"].get("hf-causal") is HFCausalLM  # a lazy "module:attr" entry
