"""Third-party plug-ins through entry points: discovery, clashes, broken plug-ins, the example package.

Fake distributions are folders ``<name>-<version>.dist-info`` (METADATA + entry_points.txt) put on
``sys.path`` in a tmp dir, which is all ``importlib.metadata`` needs; nothing is pip-installed.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import tomllib
import torch
from tiny_models import TASK_YAML

from ee_bench.cli import main
from ee_bench.errors import UnknownNameError
from ee_bench.exits.decide import gate_exit_layers
from ee_bench.exits.gates import GATES, Gate, GateObservation
from ee_bench.metrics.base import Metric, MetricInputs
from ee_bench.registry import PluginLoadError, Registry
from ee_bench.tasks.index import TaskIndex
from ee_bench.types import LayerStats

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ee-bench-plugin-example"


def fake_dist(site: Path, dist: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str] | None = None) -> None:
    """Write a distribution ``dist`` with the given entry points (group → name → value) and modules."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for rel, text in (modules or {}).items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    return folder


GOOD_GATE = """
import torch
from ee_bench.exits.gates import Gate

class HalfGate(Gate):
    '''Fires where top1_prob >= 0.5 (test plug-in).'''
    default_threshold = 0.5
    grid = (0.5,)
    def fires(self, obs, threshold):
        return obs.top1_prob >= threshold
"""


def test_discovery_lists_plugin_with_origin_and_loads_lazily(site):
    fake_dist(site, "gate-plugin", {"t1.gates": {"half": "t1_gate_mod:HalfGate"}}, {"t1_gate_mod.py": GOOD_GATE})
    reg = Registry("gate", base=Gate, entry_point_group="t1.gates")
    reg.register("builtin_one", object)  # not checked until used
    assert reg.names() == ["builtin_one", "half"]
    assert reg.origin("half") == "plugin gate-plugin (entry point half = t1_gate_mod:HalfGate)"
    assert "t1_gate_mod" not in sys.modules  # listing names imports nothing
    cls = reg.get("half")
    assert issubclass(cls, Gate) and cls.__name__ == "HalfGate"
    obs = GateObservation(layer=0, n_layers=2, top1_prob=torch.tensor([0.4, 0.5, 0.9]))
    assert cls().fires(obs, 0.5).tolist() == [False, True, True]


def test_clash_with_builtin_is_an_error_naming_dist_and_entry_point(site):
    fake_dist(site, "clash-plugin", {"t2.gates": {"confidence": "t2_mod:Other"}})
    reg = Registry("gate", base=Gate, entry_point_group="t2.gates")
    reg.register("confidence", GATES.get("confidence"))
    with pytest.raises(PluginLoadError) as err:
        reg.names()
    msg = str(err.value)
    assert "clash-plugin" in msg and "confidence = t2_mod:Other" in msg and "built-in" in msg
    assert '[project.entry-points."t2.gates"]' in msg
    with pytest.raises(PluginLoadError, match="clash-plugin"):  # still an error on every later use
        reg.get("confidence")


def test_clash_between_two_plugins_is_an_error(site):
    fake_dist(site, "first-dist", {"t2b.gates": {"same": "a_mod:G"}})
    fake_dist(site, "second-dist", {"t2b.gates": {"same": "b_mod:G"}})
    reg = Registry("gate", base=Gate, entry_point_group="t2b.gates")
    with pytest.raises(PluginLoadError) as err:
        reg.names()
    msg = str(err.value)
    assert "first-dist" in msg and "second-dist" in msg and "'same'" in msg


def test_broken_plugin_errors_only_where_used(site):
    fake_dist(site, "broken-plugin", {"t3.gates": {"broken": "t3_missing_module:Gate"}})
    reg = Registry("gate", base=Gate, entry_point_group="t3.gates")
    reg.register("confidence", GATES.get("confidence"))
    assert reg.names() == ["broken", "confidence"]
    assert reg.get("confidence") is GATES.get("confidence")  # other names still work
    with pytest.raises(PluginLoadError) as err:
        reg.get("broken")
    msg = str(err.value)
    assert "broken-plugin" in msg and "broken = t3_missing_module:Gate" in msg
    assert "ModuleNotFoundError" in msg and "Fix or uninstall" in msg


def test_plugin_of_the_wrong_type_is_an_error(site):
    fake_dist(site, "wrong-plugin", {"t4.gates": {"notagate": "t4_mod:X"}}, {"t4_mod.py": "class X:\n    pass\n"})
    reg = Registry("gate", base=Gate, entry_point_group="t4.gates")
    with pytest.raises(PluginLoadError, match=r"wrong-plugin .*not a Gate"):
        reg.get("notagate")


def test_unknown_name_still_suggests(site):
    reg = Registry("gate", base=Gate, entry_point_group="t5.gates")
    reg.register("confidence", GATES.get("confidence"))
    with pytest.raises(UnknownNameError, match="Did you mean: confidence"):
        reg.get("confidance")


@pytest.fixture
def fresh_gates():
    """Let the real GATES registry rescan entry points, and restore it afterwards."""
    saved = (dict(GATES._entries), dict(GATES._origin), GATES._plugins_scanned, GATES._scan_error)
    GATES._entries = {k: v for k, v in GATES._entries.items() if GATES._origin[k] == "built-in"}
    GATES._origin = {k: v for k, v in GATES._origin.items() if v == "built-in"}
    GATES._plugins_scanned, GATES._scan_error = False, None
    yield GATES
    GATES._entries, GATES._origin, GATES._plugins_scanned, GATES._scan_error = saved


def test_cli_survives_a_broken_gate_plugin(site, fresh_gates, capsys):
    fake_dist(site, "broken-gate-dist", {"ee_bench.gates": {"kaputt": "no_such_module_xyz:Gate"}})
    assert main(["--help"]) == 0
    assert main(["ls", "metrics"]) == 0
    assert "kaputt" not in capsys.readouterr().out
    assert main(["ls", "gates"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert {"confidence", "entropy", "patience", "kaputt"} <= set(rows)
    assert "BROKEN" in rows["kaputt"] and "broken-gate-dist" in rows["kaputt"]
    # used: exit code 2 and a message naming the distribution and the entry point, before any model loads
    code = main(["--model", "smollm2-135m-ee", "--tasks", "demo_de_en", "--gate", "kaputt", "--limit", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "broken-gate-dist" in err and "kaputt = no_such_module_xyz:Gate" in err and "Traceback" not in err


def test_cli_reports_a_clash_with_a_builtin_gate(site, fresh_gates, capsys):
    fake_dist(site, "clashing-dist", {"ee_bench.gates": {"entropy": "x_mod:Gate"}})
    assert main(["ls", "gates"]) == 2
    err = capsys.readouterr().err
    assert "clashing-dist" in err and "entropy = x_mod:Gate" in err and "clashes with the built-in gate" in err
    assert main(["ls", "metrics"]) == 0  # other kinds are unaffected




def test_task_plugin_is_indexed_with_its_origin(site):
    fake_dist(site, "task-dist", {"ee_bench.tasks": {"mytasks": "t6_tasks"}},
              {"t6_tasks/__init__.py": "", "t6_tasks/sub/t6_task.yaml": TASK_YAML.format(name="t6_task", metric="chrf")})
    idx = TaskIndex()
    assert "t6_task" in idx.names()
    assert idx.origin("t6_task").startswith("plugin task-dist (entry point mytasks = t6_tasks): ")
    assert idx.load("t6_task").task == "t6_task"


def test_task_plugin_clashing_with_builtin_is_an_error(site):
    fake_dist(site, "task-clash-dist", {"ee_bench.tasks": {"tc": "t7_tasks"}},
              {"t7_tasks/__init__.py": "", "t7_tasks/demo.yaml": TASK_YAML.format(name="demo_de_en", metric="chrf")})
    with pytest.raises(PluginLoadError) as err:
        TaskIndex()
    assert "task-clash-dist" in str(err.value) and "demo_de_en" in str(err.value) and "built-in" in str(err.value)


def test_include_path_still_overrides_builtin(tmp_path):
    folder = tmp_path / "inc"
    folder.mkdir()
    (folder / "demo.yaml").write_text(TASK_YAML.format(name="demo_de_en", metric="chrf"), encoding="utf-8")
    idx = TaskIndex([folder], with_plugins=False)
    assert idx.origin("demo_de_en").startswith(f"include_path {folder}")


def test_broken_task_plugin_does_not_stop_other_tasks(site):
    fake_dist(site, "task-broken-dist", {"ee_bench.tasks": {"tb": "t8_missing_pkg"}})
    idx = TaskIndex()
    assert idx.load("demo_de_en").task == "demo_de_en"
    assert [b.dist for b in idx.broken_plugins] == ["task-broken-dist"]
    with pytest.raises(UnknownNameError) as err:
        idx.load("t8_task")
    assert "task-broken-dist" in str(err.value) and "tb = t8_missing_pkg" in str(err.value)


# ---------------------------------------------------------------- the example package


def test_example_pyproject_declares_the_plugin_groups():
    data = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    eps = data["project"]["entry-points"]
    assert eps["ee_bench.gates"] == {
        "steady_confidence": "ee_bench_plugin_example.steady_gate:SteadyConfidenceGate"}
    assert eps["ee_bench.metrics"] == {"exact_match": "ee_bench_plugin_example.exact_match:ExactMatch"}
    assert eps["ee_bench.tasks"] == {"ee_bench_plugin_example": "ee_bench_plugin_example.tasks"}
    assert data["build-system"]["build-backend"] == "hatchling.build"
    assert "ee-bench" in data["project"]["dependencies"]
    # every target exists in the source tree
    src = EXAMPLE / "src"
    for group in ("ee_bench.gates", "ee_bench.metrics"):
        for value in eps[group].values():
            module, _, attr = value.partition(":")
            path = src / (module.replace(".", "/") + ".py")
            assert f"class {attr}(" in path.read_text(encoding="utf-8")
    assert (src / "ee_bench_plugin_example" / "tasks" / "__init__.py").is_file()
    # no name clashes with the built-ins
    assert "steady_confidence" not in [n for n in GATES.names() if GATES.origin(n) == "built-in"]
    assert GATES.origin("state") == "built-in"  # the head-free gate the example used to ship is built in


@pytest.fixture
def example_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    steady = importlib.import_module("ee_bench_plugin_example.steady_gate")
    em = importlib.import_module("ee_bench_plugin_example.exact_match")
    return steady.SteadyConfidenceGate, em.ExactMatch


def test_steady_confidence_gate_on_hand_built_statistics(example_modules):
    SteadyConfidenceGate, _ = example_modules
    gate = SteadyConfidenceGate()
    assert gate.needs_head is True and gate.needs_hidden is False and issubclass(SteadyConfidenceGate, Gate)
    # L = 4, N = 3. Token 0: confident from layer 1 on, top-1 unchanged 0→1 → exits at 1.
    # Token 1: confident at layer 0 (streak 0, so no exit), top-1 changes at 1, steady again at 2 → 2.
    # Token 2: never reaches τ below the final layer → L−1 = 3.
    top1 = torch.tensor([[7, 3, 1], [7, 4, 1], [7, 4, 2], [7, 4, 2]])
    prob = torch.tensor([[0.5, 0.95, 0.1], [0.92, 0.95, 0.2], [0.93, 0.97, 0.3], [0.99, 0.99, 0.99]])
    stats = LayerStats(top1, prob, torch.zeros(4, 3))
    assert gate_exit_layers(gate, stats, 0.9).tolist() == [1, 2, 3]
    assert gate_exit_layers(gate, stats, 0.96).tolist() == [3, 2, 3]  # token 0 never reaches 0.96 below L−1
    for bad in (0.0, 1.01, float("nan")):
        with pytest.raises(Exception, match="threshold"):
            gate.check_threshold(bad)


def test_exact_match_metric_table(example_modules):
    _, ExactMatch = example_modules
    assert issubclass(ExactMatch, Metric)
    cases = [  # (predictions, references, ignore_case, expected points)
        (["Paris", "berlin "], [["Paris"], ["Berlin"]], False, 50.0),
        (["Paris", "berlin "], [["Paris"], ["Berlin"]], True, 100.0),
        (["the  cat"], [["a cat", "the cat"]], False, 100.0),
        (["Rome", "x", "y", "Rome"], [["Rome"], ["z"], ["z"], ["Roma"]], False, 25.0),
    ]
    for preds, refs, ic, expected in cases:
        res = ExactMatch(ignore_case=ic).compute(MetricInputs(preds, refs))
        assert res.value == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError):
        ExactMatch().compute(MetricInputs(["a"], []))


def test_example_task_yaml_is_valid(monkeypatch, example_modules):
    from ee_bench.tasks.loaders import load_docs
    from ee_bench.tasks.spec import load_task_file

    spec = load_task_file(EXAMPLE / "src" / "ee_bench_plugin_example" / "tasks" / "example_capitals.yaml")
    assert spec.task == "example_capitals" and spec.output_type == "generate_until"
    assert [m["metric"] for m in spec.metric_list] == ["exact_match", "chrf"]
    docs = load_docs(spec, None)
    assert len(docs) == 6 and docs[0] == {"country": "France", "capital": "Paris"}
