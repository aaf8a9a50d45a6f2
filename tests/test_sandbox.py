"""Task files are data, never code: template payloads, offline path escapes and hostile names.

Every payload tries to create a marker file; each test asserts exit 2, that the message names the
task file, and that no marker exists afterwards (in `run`, `validate` and the lm-eval bridge)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tiny_models import save_tiny_llama, write_tiny_task

from ee_bench.cli import main
from ee_bench.files import result_paths, safe_name


def payloads(marker: Path) -> dict[str, str]:
    """Known Jinja escapes (cycler/lipsum globals, the __class__/__mro__/__subclasses__ walk), each
    writing ``marker`` if it ran; plus two that dodge a purely textual check."""
    m = str(marker)
    return {
        "cycler_globals": f"{{{{ cycler.__init__.__globals__.os.system('touch {m}') }}}}{{{{src}}}}",
        "lipsum_popen": f"{{{{ lipsum.__globals__['os'].popen('touch {m}').read() }}}}{{{{src}}}}",
        "class_mro_subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}{{src}}",
        "globals_item": "{{ joiner['__globals__'] }}{{src}}",
        "concat_item": f"{{{{ cycler['__in' ~ 'it__']['__glo' ~ 'bals__'].os.system('touch {m}') }}}}{{{{src}}}}",
        "attr_filter": f"{{{{ (cycler|attr('__init__')|attr('__globals__')).os.system('touch {m}') }}}}{{{{src}}}}",
    }


PAYLOAD_NAMES = list(payloads(Path("x")))


def write_task(folder: Path, name: str, doc_to_text: str) -> Path:
    write_tiny_task(folder, name=name, n_docs=2)
    path = folder / f"{name}.yaml"
    text = path.read_text(encoding="utf-8").replace('doc_to_text: "{{src}} w0"', f"doc_to_text: {json.dumps(doc_to_text)}")
    path.write_text(text, encoding="utf-8")
    return path


def assert_refused(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("ee-bench: error: ") == 1 or "error(s)" in err
    for f in fragments:
        assert f in err, f"{f!r} not in {err!r}"


@pytest.mark.parametrize("payload", PAYLOAD_NAMES)
def test_run_refuses_template_payload(payload, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative `touch` would land here
    marker = tmp_path / "pwned"
    path = write_task(tmp_path / "tasks", "evil", payloads(marker)[payload])
    code = main(["--model", "smollm2-135m-ee", "--tasks", "evil", "--include_path", str(tmp_path / "tasks"),
                 "--output_path", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert_refused(code, err, str(path), "unsafe")
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("payload", PAYLOAD_NAMES)
def test_validate_refuses_template_payload(payload, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    path = write_task(tmp_path / "tasks", "evil", payloads(marker)[payload])
    code = main(["validate", "--include_path", str(tmp_path / "tasks"), "--data-dir", str(tmp_path / "tasks")])
    out = capsys.readouterr().out
    assert code == 2
    assert str(path) in out and "unsafe" in out
    assert not marker.exists()


def test_static_check_names_every_escape_attribute():
    from ee_bench.tasks.templates import unsafe_names

    found = set(unsafe_names("{{ x.__class__.__mro__ }}{{ y.__subclasses__() }}{{ z['__globals__'] }}{{ src }}"))
    assert found == {"__class__", "__mro__", "__subclasses__", "__globals__"}
    assert unsafe_names("{{ src | upper }} {{ refs[0] }} {{ row.text }}") == []


def test_shipped_style_templates_still_render():
    from ee_bench.tasks.templates import render

    doc = {"src": "Hallo", "refs": ["a", "b"], "row": {"t": "x"}, "label": 1}
    assert render("{{src}} → {{refs[1]}} {{row.t}} {{ label + 1 }} {{ src | upper }}", doc) == "Hallo → b x 2 HALLO"


@pytest.mark.parametrize("payload", ["cycler_globals", "lipsum_popen", "class_mro_subclasses"])
def test_lm_eval_bridge_refuses_payload_before_the_model_loads(payload, tmp_path, capsys, monkeypatch):
    pytest.importorskip("lm_eval")
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    tasks = tmp_path / "lm_tasks"
    tasks.mkdir()
    (tasks / "docs.jsonl").write_text('{"q": "w1 w2", "a": "w3"}\n', encoding="utf-8")
    (tasks / "evil_lm.yaml").write_text(
        f"task: evil_lm\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tasks / 'docs.jsonl'}\n"
        f"test_split: test\noutput_type: generate_until\ndoc_to_text: {json.dumps(payloads(marker)[payload])}\n"
        'doc_to_target: "{{a}}"\ngeneration_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 2\n'
        "metric_list:\n  - metric: exact_match\nmetadata:\n  version: 1.0\n", encoding="utf-8")
    code = main(["lm-eval", "--model", "ee-hf", "--model_args", "pretrained=smollm2-135m-ee", "--tasks", "evil_lm",
                 "--include_path", str(tasks), "--limit", "1", "--device", "cpu",
                 "--output_path", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert_refused(code, err, str(tasks / "evil_lm.yaml"), "unsafe")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_lm_eval_renders_in_the_sandbox(tmp_path, monkeypatch):
    """A payload the textual scan cannot see is stopped when lm-eval renders it."""
    pytest.importorskip("lm_eval")
    import jinja2
    from lm_eval import utils

    from ee_bench.lm_eval import sandbox

    monkeypatch.chdir(tmp_path)
    sandbox.install()
    marker = tmp_path / "pwned"
    with pytest.raises(jinja2.exceptions.SecurityError):
        utils.apply_template(payloads(marker)["concat_item"], {"src": "x"})
    assert not marker.exists()
    assert utils.apply_template("{{ q | regex_replace('a', 'b') }}", {"q": "aa"}) == "bb"  # lm-eval's filter kept


@pytest.mark.parametrize("offline_path", ["/etc/passwd", "../../../../../../etc/passwd", "glue/../../outside.jsonl"])
def test_offline_path_must_stay_in_the_data_folder(offline_path, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "glue").mkdir(parents=True)
    (tmp_path / "outside.jsonl").write_text('{"src": "w1", "ref": "w1"}\n', encoding="utf-8")
    tasks = tmp_path / "tasks"
    write_tiny_task(tasks, name="escape", n_docs=1)
    text = (tasks / "escape.yaml").read_text(encoding="utf-8")
    text = text.replace("dataset_path: json\n", f"dataset_path: json\noffline: {{format: jsonl, path: {offline_path}}}\n")
    (tasks / "escape.yaml").write_text(text, encoding="utf-8")
    code = main(["--model", "smollm2-135m-ee", "--tasks", "escape", "--include_path", str(tasks),
                 "--data-dir", str(data), "--output_path", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert_refused(code, err, "outside the folder", str(data.resolve()))
    assert not (tmp_path / "out").exists()


def test_data_files_must_stay_in_the_task_folder(tmp_path, capsys):
    tasks = tmp_path / "tasks"
    write_tiny_task(tasks, name="escape2", n_docs=1)
    text = (tasks / "escape2.yaml").read_text(encoding="utf-8").replace("test: escape2.jsonl", "test: /etc/passwd")
    (tasks / "escape2.yaml").write_text(text, encoding="utf-8")
    code = main(["--model", "smollm2-135m-ee", "--tasks", "escape2", "--include_path", str(tasks),
                 "--output_path", str(tmp_path / "out")])
    assert_refused(code, capsys.readouterr().err, "data_files entry /etc/passwd", "outside the folder")


def test_trust_path_widens_data_files_containment(tmp_path, capsys):
    """Issue 21: a task file naming its own data elsewhere (an absolute data_files path, as lm-eval task
    files often have) is refused with the option that widens the containment; with it, the same file
    loads, and only from the named folder."""
    from ee_bench.tasks.loaders import load_docs
    from ee_bench.tasks.spec import load_task_file

    tasks, mine = tmp_path / "tasks", tmp_path / "mydata"
    write_tiny_task(tasks, name="mine", n_docs=2)
    mine.mkdir()
    (tasks / "mine.jsonl").rename(mine / "docs.jsonl")
    yaml_file = tasks / "mine.yaml"
    yaml_file.write_text(yaml_file.read_text(encoding="utf-8").replace("test: mine.jsonl", f"test: {mine / 'docs.jsonl'}"),
                         encoding="utf-8")
    code = main(["--model", "smollm2-135m-ee", "--tasks", "mine", "--include_path", str(tasks),
                 "--output_path", str(tmp_path / "out")])
    assert_refused(code, capsys.readouterr().err, "outside the folder", f"--trust-path {mine.resolve()}")
    assert not (tmp_path / "out").exists()
    spec = load_task_file(yaml_file)
    docs = load_docs(spec, None, [mine])
    assert [d["src"] for d in docs] == [json.loads(line)["src"] for line in (mine / "docs.jsonl").read_text().splitlines()]
    with pytest.raises(Exception, match="outside the folder"):
        load_docs(spec, None, [tmp_path / "elsewhere"])


@pytest.mark.parametrize("name, expected", [("..", "model"), (".", "model"), ("../../etc", "etc"),
                                            ("a/../b", "a_.._b"), (".hidden", "hidden"), ("smollm2-135m-ee", "smollm2-135m-ee")])
def test_safe_name(name, expected):
    assert safe_name(name) == expected


def test_card_named_dotdot_writes_inside_output_path(tmp_path, capsys):
    """A checkpoint whose ee_bench_card.yaml says name: ".." still writes under --output_path."""
    ckpt = save_tiny_llama(tmp_path / "ckpt")
    (ckpt / "ee_bench_card.yaml").write_text('name: ".."\nmodel: hf-causal\ndtype: float32\n', encoding="utf-8")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=1, max_gen_toks=2)
    out = tmp_path / "deep" / "out"
    code = main(["--model", str(ckpt), "--tasks", "tiny_copy", "--include_path", str(tasks), "--threshold", "0.9",
                 "--output_path", str(out), "--no-progress", "--device", "cpu"])
    capsys.readouterr()
    assert code == 0
    res, _ = result_paths(out, "..", "tiny_copy", "confidence")
    assert res.exists() and out.resolve() in res.resolve().parents
    assert sorted(os.listdir(tmp_path / "deep")) == ["out"]
