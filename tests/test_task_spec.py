"""Task YAML: unknown keys, include merging, malformed YAML, every problem reported, group expansion."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ee_bench.errors import ConfigError, EEBenchError, UnknownNameError
from ee_bench.tasks.index import TaskIndex
from ee_bench.tasks.spec import GroupSpec, TaskSpec, load_task_file, parse_task

VALID = {
    "task": "toy",
    "dataset_path": "json",
    "test_split": "test",
    "doc_to_text": "{{src}}",
    "doc_to_target": "{{ref}}",
    "generation_kwargs": {"until": ["\n"], "max_gen_toks": 16},
    "metric_list": [{"metric": "chrf"}],
    "metadata": {"version": 1.0},
}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_task(data, "toy.yaml")
    return err.value.problems


def test_valid_task_parses():
    spec = parse_task(dict(VALID), "toy.yaml")
    assert isinstance(spec, TaskSpec)
    assert spec.until == ("\n",) and spec.max_gen_toks == 16
    assert spec.output_type == "generate_until"
    assert spec.metric_names == ["chrf"]
    assert len(spec.spec_hash) == 64


def test_unknown_key_is_named():
    problems = problems_of({**VALID, "taks": "oops"})
    assert len(problems) == 1
    assert "unknown key 'taks'" in problems[0]
    assert "allowed:" in problems[0]


def test_unknown_nested_keys_are_named():
    # lm-eval's temperature: 0 and free-form metadata keys are accepted; a generation kwarg neither
    # ee-bench nor greedy decoding knows is named, with a suggestion.
    problems = problems_of({**VALID, "generation_kwargs": {"until": ["\n"], "max_gen_toks": 4, "temperature": 0,
                                                           "max_gen_tok": 3},
                            "metadata": {"version": 1, "author": "x"}})
    assert problems == ["unknown key generation_kwargs.'max_gen_tok' (did you mean: max_gen_toks?) "
                        "(allowed: do_sample, max_gen_toks, temperature, until)"]


def test_all_problems_collected():
    bad = {**VALID, "colour": "red", "output_type": "essay", "metric_list": [], "metadata": "v1"}
    del bad["doc_to_text"], bad["generation_kwargs"]  # (generation_kwargs would be a 6th: wrong output_type)
    with pytest.raises(ConfigError) as err:
        parse_task(bad, "toy.yaml")
    problems = err.value.problems
    assert len(problems) == 5
    joined = "\n".join(problems)
    for fragment in ("unknown key 'colour'", "'output_type' must be one of", "'doc_to_text'",
                     "'metric_list' must be a non-empty list", "'metadata' must be a mapping"):
        assert fragment in joined
    message = str(err.value)
    assert message.startswith("Invalid configuration in toy.yaml:")
    assert message.count("\n  - ") == 5  # one line per problem


def test_generation_tasks_state_until_and_max_gen_toks():
    problems = problems_of({**VALID, "generation_kwargs": {"until": "\n", "max_gen_toks": 0}})
    assert any("'generation_kwargs.until' must be an explicit list" in p for p in problems)
    assert any("'generation_kwargs.max_gen_toks' must be a positive integer" in p for p in problems)


def test_include_merges_and_the_including_file_wins(tmp_path):
    write(tmp_path, "_base.yaml", """\
        dataset_path: json
        test_split: test
        doc_to_text: "base {{src}}"
        generation_kwargs: {until: ["\\n"], max_gen_toks: 64}
        metric_list: [{metric: bleu}]
        metadata: {version: 2}
        """)
    child = write(tmp_path, "child.yaml", """\
        include: _base.yaml
        task: child
        doc_to_text: "child {{src}}"
        """)
    spec = load_task_file(child)
    assert spec.task == "child"
    assert spec.doc_to_text == "child {{src}}"  # overridden
    assert spec.max_gen_toks == 64 and spec.metric_names == ["bleu"] and spec.version == 2  # inherited
    assert "include" not in spec.raw


def test_include_missing_and_cycle(tmp_path):
    missing = write(tmp_path, "a.yaml", "include: nowhere.yaml\ntask: a\n")
    with pytest.raises(ConfigError, match="include file 'nowhere.yaml' not found"):
        load_task_file(missing)
    write(tmp_path, "x.yaml", "include: y.yaml\n")
    write(tmp_path, "y.yaml", "include: x.yaml\n")
    with pytest.raises(ConfigError, match="include cycle: x.yaml -> y.yaml -> x.yaml"):
        load_task_file(tmp_path / "x.yaml")


@pytest.mark.parametrize("text, fragment", [
    ("task: [unclosed\n", "malformed YAML"),
    ("key: value\n  bad indent: here\n", "malformed YAML"),
    ("- just\n- a list\n", "expected a mapping of keys, got list"),
])
def test_malformed_yaml_is_a_config_error(tmp_path, text, fragment):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_task_file(path)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)
    assert isinstance(err.value, EEBenchError)


def test_yaml_tags_are_not_executed(tmp_path):
    path = write(tmp_path, "evil.yaml", "task: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_task_file(path)


def group_folder(tmp_path: Path) -> Path:
    body = ("dataset_path: json\ndoc_to_text: '{{src}}'\ngeneration_kwargs: {until: ['\\n'], max_gen_toks: 4}\n"
            "metric_list: [{metric: chrf}]\nmetadata: {version: 1}\n")
    for name in ("zz_one", "zz_two", "zz_three"):
        (tmp_path / f"{name}.yaml").write_text(f"task: {name}\n{body}")
    (tmp_path / "zz_inner.yaml").write_text("group: zz_inner\ntask: [zz_two, zz_one]\n")
    (tmp_path / "zz_outer.yaml").write_text("group: zz_outer\ntask: [zz_three, zz_inner, zz_one]\n")
    (tmp_path / "zz_loop_a.yaml").write_text("group: zz_loop_a\ntask: [zz_loop_b]\n")
    (tmp_path / "zz_loop_b.yaml").write_text("group: zz_loop_b\ntask: [zz_loop_a]\n")
    return tmp_path


def test_group_expansion_in_order_without_duplicates(tmp_path):
    index = TaskIndex(include_paths=[group_folder(tmp_path)], with_plugins=False)
    assert index.is_group("zz_outer") and not index.is_group("zz_one")
    assert isinstance(index.load("zz_inner"), GroupSpec)
    assert [s.task for s in index.expand(["zz_outer"])] == ["zz_three", "zz_two", "zz_one"]
    assert [s.task for s in index.expand(["zz_one", "zz_outer"])] == ["zz_one", "zz_three", "zz_two"]


def test_group_cycle_is_an_error(tmp_path):
    index = TaskIndex(include_paths=[group_folder(tmp_path)], with_plugins=False)
    with pytest.raises(EEBenchError, match="group cycle: zz_loop_a -> zz_loop_b -> zz_loop_a"):
        index.expand(["zz_loop_a"])


def test_shipped_wmt22_group_expands_to_its_ten_pairs():
    specs = TaskIndex(with_plugins=False).expand(["wmt22"])
    assert [s.task for s in specs] == [
        "wmt22_de_en", "wmt22_de_fr", "wmt22_en_de", "wmt22_en_ja", "wmt22_en_ru",
        "wmt22_en_zh", "wmt22_fr_de", "wmt22_ja_en", "wmt22_ru_en", "wmt22_zh_en",
    ]
    de_en = specs[0]
    assert de_en.dataset_name == "de-en" and de_en.until == ("\n",) and de_en.max_gen_toks == 128
    assert de_en.offline["format"] == "wmt_txt"  # from the shared _wmt22.yaml include


def test_unknown_task_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean: wmt22_de_en"):
        TaskIndex(with_plugins=False).load("wmt22_de_enn")


def test_metadata_language_is_read_and_checked():
    assert TaskIndex().load("cnn_dailymail").language == "en" and TaskIndex().load("wmt22_de_en").language is None
    base = {"task": "t", "dataset_path": "x", "doc_to_text": "{{a}}", "generation_kwargs": {"until": ["\\n"], "max_gen_toks": 4},
            "metric_list": [{"metric": "chrf"}]}
    assert parse_task({**base, "metadata": {"version": 1, "language": "en"}}, "t.yaml").language == "en"
    with pytest.raises(ConfigError, match="metadata.language"):
        parse_task({**base, "metadata": {"version": 1, "language": 3}}, "t.yaml")


def test_metadata_version_is_optional_as_in_lm_eval():
    data = {k: v for k, v in VALID.items() if k != "metadata"}
    assert parse_task(data, "toy.yaml").version is None
    assert parse_task({**VALID, "metadata": {"version": 2.0}}, "toy.yaml").version == 2.0
