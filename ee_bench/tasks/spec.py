"""Task YAML: strict lm-eval-harness vocabulary, one meaning per key.

A task file holds these keys (``include`` merges a shared file first; the including file wins):

============================  =====================================================================
``task``                       task name (str); in a group file, the list of member task names
``group``                      group name (group files only; their ``task`` is a list)
``include``                    path of a YAML file (relative to this one) whose keys are defaults
``dataset_path``               hub dataset id (``abisee/cnn_dailymail``), ``sacrebleu/<test set>``,
                               or ``json`` with ``dataset_kwargs.data_files`` (relative paths are
                               resolved against the YAML file)
``dataset_name``               hub config (or the sacrebleu language pair)
``dataset_kwargs``             extra keyword arguments for ``datasets.load_dataset``
``test_split``                 split evaluated
``offline``                    ee-bench extension: how to read the official distribution layout
                               under ``--data-dir`` (``format`` plus format-specific keys)
``output_type``                ``generate_until`` (default) or ``multiple_choice``
``doc_to_text``                Jinja template of the prompt (the paper's Table 8 wording)
``doc_to_target``              Jinja template of the reference
``doc_to_choice``              list of label words (``multiple_choice`` only)
``generation_kwargs``          ``until`` (list of stop strings) and ``max_gen_toks`` (int), both required
``metric_list``                list of ``{metric: name, **options}``
``metadata``                   ``version`` (optional, as in lm-eval; recorded), free-form ``description``,
                               and ``language``: the ISO 639-1 code of the outputs where no language
                               pair says it (``en`` for CNN/DailyMail and NarrativeQA)
``encoder_fields``             ee-bench extension: document fields (one, or two for pairs) fed to an
                               encoder classifier instead of ``doc_to_text``
``process_docs``               name of a registered document processor (lm-eval's hook, by name:
                               ``ee_bench.tasks.loaders.DOC_PROCESSORS``) applied to the loaded rows,
                               hub or offline, e.g. to gather NarrativeQA's answers into ``refs``
``seq2seq_source``             ee-bench extension: Jinja template of the text an encoder-decoder
                               translator's encoder reads (e.g. ``"{{src}}"``), used instead of
                               ``doc_to_text`` (neither the chat template nor the Table 8 instruction);
                               the model card may prepend a prefix (T5) and set language codes (NLLB)
``truncation``                 ee-bench extension: ``{field: name, max_tokens: int}``, the document
                               field cut (from its end) so the prompt fits; the instruction and
                               the prompt end stay intact
============================  =====================================================================

Every other field of lm-eval's ``TaskConfig`` is accepted as written and classified (honoured,
recorded with no effect on a test-split evaluation, or refused with the reason) by
:mod:`ee_bench.tasks.lm_eval_vocab`; a file that uses a feature only lm-eval implements (few-shot
examples, ``description``, filters, lm-eval metrics such as TER …) is built by lm-eval and analysed
by ee-bench (``TaskSpec.engine == "lm-eval"``). ``generation_kwargs.max_gen_toks`` defaults to
lm-eval's 256 (``TaskSpec.max_gen_toks_source`` says so in the results); ``metric_list`` entries may
carry lm-eval's standard ``aggregation`` and ``higher_is_better`` keys.

Unknown keys are errors ("Did you mean"); all problems of a file are reported together
(:class:`ConfigError`). Only ``yaml.safe_load`` is used (``!function`` tags are read as data and refused).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ee_bench.errors import ConfigError
from ee_bench.metrics.base import METRICS
from ee_bench.task_runner_registry import TASK_RUNNERS
from ee_bench.tasks import lm_eval_vocab as vocab
from ee_bench.tasks.templates import template_problems

TASK_KEYS = {*vocab.TASK_CONFIG_FIELDS, *vocab.EE_BENCH_EXTENSIONS, *vocab.LOADER_KEYS}
OUTPUT_TYPES = vocab.LM_EVAL_OUTPUT_TYPES
GENERATION_KEYS = set(vocab.GENERATION_KEYS)


def known_output_types() -> list[str]:
    """lm-eval's output types, then those a plug-in task runner adds (names ``"<kind>/<output_type>"``
    in :data:`~ee_bench.task_runner_registry.TASK_RUNNERS`)."""
    extra = sorted({n.split("/", 1)[1] for n in TASK_RUNNERS.names() if "/" in n} - set(OUTPUT_TYPES))
    return [*OUTPUT_TYPES, *extra]


def read_yaml(path: Path) -> dict[str, Any]:
    """Read one YAML mapping with ``yaml.safe_load``.

    Raises:
        ConfigError: if the file is not valid YAML or is not a mapping.
    """
    try:
        data = vocab.safe_load_with_functions(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"malformed YAML: {exc}".replace("\n", " ")]) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"expected a mapping of keys, got {type(data).__name__}"])
    return data


def resolve_includes(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load ``path`` with its ``include`` chain merged (the including file's keys win).

    Raises:
        ConfigError: on an include cycle, a missing include, or malformed YAML.
    """
    path = path.resolve()
    if path in _seen:
        raise ConfigError(str(path), [f"include cycle: {' -> '.join(p.name for p in (*_seen, path))}"])
    data = read_yaml(path)
    inc = data.pop("include", None)
    if inc is None:
        return data
    incs = inc if isinstance(inc, list) else [inc]  # lm-eval also takes a list, merged in order
    if not (incs and all(isinstance(i, str) for i in incs)):
        raise ConfigError(str(path), ["'include' must be a path string (or a list of them)"])
    base: dict[str, Any] = {}
    for one in incs:
        inc_path = (path.parent / one).resolve()
        if not inc_path.exists():
            raise ConfigError(str(path), [f"include file {one!r} not found (looked at {inc_path})"])
        base.update(resolve_includes(inc_path, (*_seen, path)))
    return {**base, **data}



def is_lm_eval(spec) -> bool:
    """Whether lm-eval builds, runs and scores this resolved task (an ``LmEvalTask``, ``engine ==
    "lm-eval"``) rather than ee-bench (a :class:`TaskSpec`). The one place that asks."""
    return getattr(spec, "engine", "ee-bench") == "lm-eval"

@dataclass(frozen=True)
class TaskSpec:
    """A validated task (see the module docstring for each key's meaning)."""

    task: str
    source_file: str
    dataset_path: str | None
    dataset_name: str | None
    dataset_kwargs: dict[str, Any]
    test_split: str | None
    offline: dict[str, Any] | None
    output_type: str
    doc_to_text: str
    doc_to_target: str | None
    doc_to_choice: list[str] | None
    until: tuple[str, ...]
    max_gen_toks: int
    metric_list: tuple[dict[str, Any], ...]
    version: Any
    description: str | None = None
    language: str | None = None
    truncation: dict[str, Any] | None = None
    encoder_fields: tuple[str, ...] | None = None
    process_docs: str | None = None
    seq2seq_source: str | None = None
    engine: str = "ee-bench"
    lm_eval_reasons: tuple[str, ...] = ()
    max_gen_toks_source: str = "task file"
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def spec_hash(self) -> str:
        """sha256 of the resolved spec (canonical JSON), recorded in results for provenance."""
        blob = json.dumps(self.raw, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()

    @property
    def metric_names(self) -> list[str]:
        return [m["metric"] for m in self.metric_list]


@dataclass(frozen=True)
class GroupSpec:
    """A named list of tasks (lm-eval ``group``)."""

    group: str
    tasks: tuple[str, ...]
    source_file: str


def _check_generation(gk: Any, problems: list[str]) -> tuple[tuple[str, ...], int, str]:
    if not isinstance(gk, dict):
        problems.append("'generation_kwargs' is required for generate_until tasks: give 'until' (and 'max_gen_toks')")
        return (), 0, ""
    for key in sorted(set(gk) - GENERATION_KEYS):
        problems.append(f"unknown key generation_kwargs.{key!r}{_hint(key, GENERATION_KEYS)} "
                        f"(allowed: {', '.join(sorted(GENERATION_KEYS))})")
    until = gk.get("until")
    if not (isinstance(until, list) and all(isinstance(u, str) and u for u in until)):
        problems.append("'generation_kwargs.until' must be an explicit list of non-empty stop strings")
        until = []
    mgt = gk.get("max_gen_toks")
    source = "task file"
    if mgt is None:  # lm-eval's hf model falls back to 256 as well
        mgt, source = vocab.DEFAULT_MAX_GEN_TOKS, f"lm-eval's default ({vocab.DEFAULT_MAX_GEN_TOKS}); the task file leaves it unset"
    if not (isinstance(mgt, int) and not isinstance(mgt, bool) and mgt > 0):
        problems.append("'generation_kwargs.max_gen_toks' must be a positive integer")
        mgt = 0
    return tuple(until), int(mgt), source


def _hint(name: str, allowed) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(allowed), n=3, cutoff=0.6)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def _ee_metric_names() -> set[str] | None:
    try:
        return set(METRICS.names())
    except Exception:  # a broken metric plug-in is reported where metrics are resolved
        return None


def parse_task(data: dict[str, Any], source: str) -> TaskSpec | GroupSpec:
    """Validate a resolved task mapping, collecting every problem.

    Raises:
        ConfigError: listing all problems found.
    """
    problems: list[str] = []
    for key in sorted(set(data) - TASK_KEYS):
        problems.append(f"unknown key {key!r}{_hint(key, TASK_KEYS)}: neither ee-bench nor lm-eval knows it "
                        f"(allowed: {', '.join(sorted(TASK_KEYS))})")
    if "group" in data:
        tasks = data.get("task")
        if not isinstance(data["group"], str):
            problems.append("'group' must be a string")
        if not (isinstance(tasks, list) and tasks and all(isinstance(t, str) for t in tasks)):
            problems.append("a group file needs 'task': a non-empty list of task names")
        if problems:
            raise ConfigError(source, problems)
        return GroupSpec(group=data["group"], tasks=tuple(tasks), source_file=source)

    if not isinstance(data.get("task"), str):
        problems.append("'task' (the task name, a string) is required")
    problems += vocab.refusals(data)
    reasons = vocab.lm_eval_features(data, _ee_metric_names())
    engine = "lm-eval" if reasons else "ee-bench"
    extensions = [k for k in vocab.EE_BENCH_EXTENSIONS if k in data]
    if reasons and extensions:
        problems.append(f"this file uses ee-bench extensions ({', '.join(extensions)}) and features only lm-eval "
                        f"implements ({'; '.join(reasons)}); one runner cannot honour both: drop one side")
    output_type = data.get("output_type", "generate_until")
    known = known_output_types()
    if output_type not in known:
        problems.append(f"'output_type' must be one of {', '.join(known)}, got {output_type!r}")
    for key in ("doc_to_text",):
        if not isinstance(data.get(key), str):
            problems.append(f"'{key}' (a Jinja template string) is required")
    if "seq2seq_source" in data and not isinstance(data["seq2seq_source"], str):
        problems.append("'seq2seq_source' must be a Jinja template string, e.g. '{{src}}'")
    if "doc_to_target" in data and not isinstance(data["doc_to_target"], str):
        problems.append("'doc_to_target' must be a Jinja template string")
    for key in ("doc_to_text", "doc_to_target"):  # parsed in the sandbox now: bad syntax / escapes fail at load
        if isinstance(data.get(key), str):
            problems += template_problems(data[key], key)
    choices = data.get("doc_to_choice")
    if output_type == "multiple_choice" and engine == "ee-bench":
        if not (isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) for c in choices)):
            problems.append("multiple_choice tasks need 'doc_to_choice': a list of at least two label words")
    elif choices is not None and output_type != "multiple_choice":
        problems.append("'doc_to_choice' is only allowed with output_type: multiple_choice")
    until, mgt, mgt_source = ((), 0, "")
    if output_type == "generate_until":
        until, mgt, mgt_source = _check_generation(data.get("generation_kwargs"), problems)
    elif "generation_kwargs" in data:
        problems.append("'generation_kwargs' is only allowed with output_type: generate_until")
    if not data.get("dataset_path") and not data.get("offline"):
        problems.append("give 'dataset_path' (hub) and/or 'offline' (local layout) so the data can be found")
    for key in ("dataset_path", "dataset_name", "test_split", "process_docs", "training_split",
                "validation_split", "fewshot_split", "description", "target_delimiter", "fewshot_delimiter",
                "gen_prefix", "task_alias"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            problems.append(f"'{key}' must be a string")
    nf = data.get("num_fewshot")
    if nf is not None and not (isinstance(nf, int) and not isinstance(nf, bool) and nf >= 0):
        problems.append(f"'num_fewshot' must be a non-negative integer, got {nf!r}")
    for key in ("dataset_kwargs", "offline", "truncation"):
        if key in data and not isinstance(data[key], dict):
            problems.append(f"'{key}' must be a mapping")
    if isinstance(data.get("offline"), dict) and not isinstance(data["offline"].get("format"), str):
        problems.append("'offline.format' (the local layout's name) is required")
    enc = data.get("encoder_fields")
    if enc is not None and not (isinstance(enc, list) and 1 <= len(enc) <= 2 and all(isinstance(f, str) for f in enc)):
        problems.append("'encoder_fields' must be a list of one or two document field names")
    metrics = data.get("metric_list")
    if not (isinstance(metrics, list) and metrics and all(isinstance(m, dict) and isinstance(m.get("metric"), str) for m in metrics)):
        problems.append("'metric_list' must be a non-empty list of mappings with a 'metric' name")
        metrics = []
    meta = data.get("metadata")
    if meta is None:  # optional, as in lm-eval; a file without it records version null
        meta = {}
    elif not isinstance(meta, dict):  # keys are free-form, as in lm-eval
        problems.append("'metadata' must be a mapping (e.g. {version: 1.0})")
        meta = {}
    if meta.get("language") is not None and not (isinstance(meta["language"], str) and meta["language"].strip()):
        problems.append("'metadata.language' must be the outputs' language code, e.g. 'en'")
    if problems:
        raise ConfigError(source, problems)
    return TaskSpec(
        task=data["task"],
        source_file=source,
        dataset_path=data.get("dataset_path"),
        dataset_name=data.get("dataset_name"),
        dataset_kwargs=dict(data.get("dataset_kwargs") or {}),
        test_split=data.get("test_split"),
        offline=data.get("offline"),
        output_type=output_type,
        doc_to_text=data["doc_to_text"],
        doc_to_target=data.get("doc_to_target"),
        doc_to_choice=list(choices) if isinstance(choices, list) else None,
        until=until,
        max_gen_toks=mgt,
        metric_list=tuple(dict(m) for m in metrics),
        version=meta.get("version"),
        description=meta.get("description") if isinstance(meta.get("description"), str) else None,
        language=meta.get("language"),
        truncation=data.get("truncation"),
        encoder_fields=tuple(data["encoder_fields"]) if data.get("encoder_fields") else None,
        process_docs=data.get("process_docs"),
        seq2seq_source=data.get("seq2seq_source"),
        engine=engine,
        lm_eval_reasons=tuple(reasons),
        max_gen_toks_source=mgt_source or "task file",
        raw=data,
    )


def load_task_file(path: Path) -> TaskSpec | GroupSpec:
    """Read, include-resolve and validate one task YAML file."""
    return parse_task(resolve_includes(path), str(path))


GEN_KWARGS_KEYS = ("max_gen_toks", "do_sample", "temperature")
"""What ``--gen_kwargs`` may set (lm-eval's option): the token budget; greedy decoding only."""


def parse_gen_kwargs(text: str | None) -> dict[str, Any]:
    """lm-eval's ``--gen_kwargs`` string (``max_gen_toks=64,do_sample=false``) as overrides.

    Args:
        text: comma-separated ``key=value`` pairs, or None / empty for none.

    Returns:
        ``{"max_gen_toks": N}`` when a budget is given, else ``{}``: ``do_sample=false`` and
        ``temperature=0`` are accepted (lm-eval users pass them) and change nothing, since ee-bench
        decodes greedily.

    Raises:
        ConfigError: a pair without ``=``, a key given twice, an unknown key (``until`` included: stop
            strings hold commas, so they stay in the task file), a budget that is not a positive integer,
            sampling turned on.
    """
    if not text or not text.strip():
        return {}
    out: dict[str, Any] = {}
    problems, seen = [], set()
    for pair in (x.strip() for x in text.split(",")):
        key, eq, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if key in seen:
            problems.append(f"{key} is given twice; give each key once")
            continue
        seen.add(key)
        if not eq or not key:
            problems.append(f"{pair!r} is not key=value, e.g. --gen_kwargs max_gen_toks=64")
        elif key == "max_gen_toks":
            if not value.isdigit() or int(value) <= 0:
                problems.append(f"max_gen_toks={value!r} must be a positive integer, e.g. max_gen_toks=64")
            else:
                out["max_gen_toks"] = int(value)
        elif key == "do_sample":
            if value.lower() not in ("false", "0"):
                problems.append(f"do_sample={value} is refused: ee-bench decodes greedily (its oracle compares "
                                f"every layer's argmax with the final one's); drop it or give do_sample=false")
        elif key == "temperature":
            try:
                ok = float(value) == 0.0
            except ValueError:
                ok = False
            if not ok:
                problems.append(f"temperature={value} is refused: ee-bench decodes greedily; drop it or give temperature=0")
        else:
            problems.append(f"unknown key {key!r}{_hint(key, GEN_KWARGS_KEYS)} (allowed: {', '.join(GEN_KWARGS_KEYS)}; "
                            f"stop strings stay in the task file's generation_kwargs.until)")
    if problems:
        raise ConfigError("--gen_kwargs", problems)
    return out


def with_max_gen_toks(spec: TaskSpec, max_gen_toks: int, source: str) -> TaskSpec:
    """``spec`` with a new token budget (``--gen_kwargs max_gen_toks=N``), recorded in its raw mapping so
    that ``spec_hash`` (and the resume key built from it) changes with it.

    Args:
        spec: a ``generate_until`` task. max_gen_toks: tokens, > 0. source: what set it, for the results.
    """
    gk = {**(spec.raw.get("generation_kwargs") or {}), "max_gen_toks": max_gen_toks}
    return replace(spec, max_gen_toks=max_gen_toks, max_gen_toks_source=source,
                   raw={**spec.raw, "generation_kwargs": gk})
