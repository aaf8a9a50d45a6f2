"""lm-eval-harness's task vocabulary, field by field: what ee-bench does with each ``TaskConfig`` key.

Every field of ``lm_eval.config.task.TaskConfig`` (lm-eval 0.4.13; ``tests/test_lm_eval_tasks.py``
checks that this table names exactly the installed version's fields) is in one of three classes:

- **honoured**: it changes the evaluation, exactly as lm-eval defines it;
- **recorded**: accepted and kept in the resolved spec (and its hash), with no effect on a zero-shot
  evaluation of the test split, the only thing ee-bench evaluates;
- **refused**: an error that says why (sampling, repeated sampling, code, multimodal input).

A key that is in neither lm-eval's vocabulary nor ee-bench's is a typo: an error with "Did you mean".

Some honoured keys are implemented only by lm-eval (few-shot sampling, descriptions, delimiters,
``gen_prefix``, filters, choice templates, lm-eval metrics such as TER). A task file that uses one of
them is *built by lm-eval* (``lm_eval.api.task.ConfigurableTask``) and analysed by ee-bench
(:mod:`ee_bench.lm_eval.tasks`); :func:`lm_eval_features` lists the reasons. Everything else runs on
ee-bench's own runners. The table is rendered in ``docs/lm_eval.md``.

``!function`` tags (lm-eval's way to put Python into a task file) are read as :class:`FunctionRef`
markers by :func:`safe_load_with_functions`, never imported: in a file ee-bench reads they are
refused (code in a task file; see the security rules in ``../shared/STYLE.md`` §10). lm-eval's own
installed tasks, loaded by name (``lm_eval:NAME``), keep their functions: that is lm-eval's installed
code, which lm-eval users already run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

HONOURED = "honoured"
RECORDED = "recorded"
REFUSED = "refused"

# TaskConfig field -> (class, what ee-bench does with it). Order as in lm-eval's dataclass.
TASK_CONFIG_FIELDS: dict[str, tuple[str, str]] = {
    "task": (HONOURED, "the task name"),
    "task_alias": (RECORDED, "lm-eval's display name in its own tables; ee-bench reports `task`"),
    "tag": (RECORDED, "lm-eval's index labels; no effect on an evaluation"),
    "custom_dataset": (REFUSED, "a Python callable that builds the data set: code in a task file"),
    "dataset_path": (HONOURED, "data source; with `--data-dir DIR`, a lm-eval-built task reads "
                               "`DIR/<dataset_path>/<dataset_name>/<split>.jsonl`, or the file ee-bench's own task "
                               "of that hub data set reads (GLUE: `DIR/glue/<task>/validation.jsonl`), never the hub"),
    "dataset_name": (HONOURED, "data set configuration (e.g. the language pair)"),
    "dataset_kwargs": (HONOURED, "passed to `datasets.load_dataset`; relative `data_files` are "
                                 "resolved against the YAML file"),
    "training_split": (RECORDED, "only a few-shot source (lm-eval uses it when `num_fewshot` > 0 and "
                                 "there is no `fewshot_split`); ee-bench evaluates `test_split`"),
    "validation_split": (RECORDED, "as `training_split`; evaluated only when there is no `test_split`"),
    "test_split": (HONOURED, "the split evaluated"),
    "fewshot_split": (HONOURED, "where few-shot examples come from (with `num_fewshot` > 0)"),
    "process_docs": (HONOURED, "an ee-bench document processor by name; lm-eval's installed tasks "
                               "keep their own functions; a `!function` in a file ee-bench reads is refused"),
    "doc_to_text": (HONOURED, "the prompt (Jinja template or document field)"),
    "doc_to_target": (HONOURED, "the reference (Jinja template or document field)"),
    "doc_to_image": (REFUSED, "multimodal input; ee-bench analyses text models"),
    "doc_to_audio": (REFUSED, "multimodal input; ee-bench analyses text models"),
    "unsafe_code": (HONOURED, "`false` is recorded; `true` (tasks that execute model-written code) is refused"),
    "doc_to_choice": (HONOURED, "the choices of a multiple_choice task (list, template or field)"),
    "process_results": (REFUSED, "a `!function` (code) in a file ee-bench reads; lm-eval's installed "
                                 "tasks keep theirs"),
    "use_prompt": (REFUSED, "promptsource templates (an extra package, not installed); write `doc_to_text`"),
    "description": (HONOURED, "text put before the few-shot examples and the prompt"),
    "target_delimiter": (HONOURED, "between prompt and answer (few-shot examples, multiple-choice continuations)"),
    "fewshot_delimiter": (HONOURED, "between few-shot examples"),
    "fewshot_config": (HONOURED, "few-shot sampler and its overrides (lm-eval's `FewshotConfig`)"),
    "num_fewshot": (HONOURED, "number of few-shot examples, sampled by lm-eval with `--seed`"),
    "metric_list": (HONOURED, "metrics; `aggregation` and `higher_is_better` are lm-eval's standard "
                              "keys, not metric options"),
    "output_type": (HONOURED, "`generate_until` and `multiple_choice`; `loglikelihood` (LAMBADA-style) and "
                              "`loglikelihood_rolling` (perplexity) when lm-eval builds the task"),
    "generation_kwargs": (HONOURED, "`until`, `max_gen_toks` (default 256, lm-eval's); `do_sample: false` "
                                    "and `temperature: 0` recorded; sampling refused"),
    "repeats": (HONOURED, "`1` is recorded; more is repeated sampling of a greedy decoder: refused"),
    "filter_list": (HONOURED, "lm-eval's filters on the outputs, where every function is a registered "
                              "lm-eval filter"),
    "should_decontaminate": (RECORDED, "lm-eval's decontamination report; no effect on scores"),
    "doc_to_decontamination_query": (RECORDED, "as `should_decontaminate`"),
    "gen_prefix": (HONOURED, "text put after the prompt, before the answer"),
    "metadata": (HONOURED, "`version` (optional, as in lm-eval) and free-form keys, recorded"),
}

# ee-bench's own keys that lm-eval does not have.
EE_BENCH_EXTENSIONS = ("offline", "truncation", "encoder_fields", "seq2seq_source")
# Keys of a task file that are not TaskConfig fields but that lm-eval's loader reads.
LOADER_KEYS = ("include", "group")

# lm-eval 0.4.13's aggregation registry (lm_eval.api.registry.AGGREGATION_REGISTRY), so a task file is
# checked without importing lm-eval; a test keeps this equal to the installed registry.
LM_EVAL_AGGREGATIONS = ("bits_per_byte", "bleu", "brier_score", "bypass", "chrf", "chrf++", "f1",
                        "matthews_corrcoef", "mean", "median", "nanmean", "perplexity", "ter",
                        "weighted_perplexity")
# lm-eval 0.4.13's metric registry (lm_eval.api.registry.METRIC_REGISTRY), likewise: a metric ee-bench
# lacks makes a file lm-eval's only when lm-eval has it; a name in neither stays a typo ("did you mean").
LM_EVAL_METRICS = ("acc", "acc_all", "acc_bytes", "acc_mutual_info", "acc_norm", "bits_per_byte", "bleu",
                   "brier_score", "bypass", "byte_perplexity", "chrf", "chrf++", "exact_match", "f1",
                   "likelihood", "mcc", "perplexity", "ter", "word_perplexity")
METRIC_STANDARD_KEYS = ("metric", "aggregation", "higher_is_better")
GENERATION_KEYS = ("until", "max_gen_toks", "do_sample", "temperature")
DEFAULT_MAX_GEN_TOKS = 256  # lm_eval.models.huggingface.HFLM(max_gen_toks=256)
RUNNABLE_OUTPUT_TYPES = ("generate_until", "multiple_choice", "loglikelihood", "loglikelihood_rolling")
LM_EVAL_OUTPUT_TYPES = ("generate_until", "multiple_choice", "loglikelihood", "loglikelihood_rolling")


@dataclass(frozen=True)
class FunctionRef:
    """A ``!function module.name`` tag read as data (never imported)."""

    target: str

    def __str__(self) -> str:
        return f"!function {self.target}"


class _FunctionSafeLoader(yaml.SafeLoader):
    pass


_FunctionSafeLoader.add_constructor(
    "!function", lambda loader, node: FunctionRef(str(loader.construct_scalar(node))))


def safe_load_with_functions(text: str) -> Any:
    """``yaml.safe_load`` that also reads lm-eval's ``!function`` tags, as :class:`FunctionRef` data.

    Raises:
        yaml.YAMLError: on malformed YAML (any other unknown tag included).
    """
    return yaml.load(text, Loader=_FunctionSafeLoader)


def function_refs(value: Any, path: str = "") -> list[tuple[str, FunctionRef]]:
    """Every (key path, :class:`FunctionRef`) inside a loaded YAML value."""
    if isinstance(value, FunctionRef):
        return [(path, value)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in function_refs(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in function_refs(v, f"{path}[{i}]")]
    return []


_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _is_field_name(value: Any) -> bool:
    """lm-eval reads a template without Jinja markup that names a document field as that field."""
    return isinstance(value, str) and bool(_FIELD_NAME.match(value))


def lm_eval_features(data: dict[str, Any], ee_metrics: set[str] | None = None) -> list[str]:
    """Why a task file needs lm-eval to build it: the honoured keys ee-bench's own runners do not
    implement, with the values that give them an effect. Empty: ee-bench's runners run it.

    Args:
        data: the resolved task mapping (includes merged).
        ee_metrics: ee-bench's metric names; a metric outside them (e.g. TER) is lm-eval's.
    """
    out = []
    if data.get("output_type") in ("loglikelihood", "loglikelihood_rolling"):
        out.append(f"output_type: {data['output_type']}")
    if (data.get("num_fewshot") or 0) > 0:
        out.append(f"num_fewshot: {data['num_fewshot']}")
    for key in ("fewshot_config", "filter_list", "gen_prefix"):
        if data.get(key) not in (None, {}, []):
            out.append(key)
    if data.get("description"):
        out.append("description")
    if data.get("target_delimiter", " ") != " " and data.get("output_type") == "multiple_choice":
        out.append("target_delimiter")
    if "doc_to_choice" in data and not isinstance(data["doc_to_choice"], list):
        out.append("doc_to_choice given as a template, field or mapping")
    for key in ("doc_to_text", "doc_to_target"):
        if _is_field_name(data.get(key)):
            out.append(f"{key} names a document field ({data[key]!r})")
    if ee_metrics is not None:
        for m in data.get("metric_list") or []:
            if isinstance(m, dict) and m.get("metric") in LM_EVAL_METRICS and m["metric"] not in ee_metrics:
                out.append(f"metric {m['metric']!r} (lm-eval's)")
    return out


def refusals(data: dict[str, Any]) -> list[str]:
    """Problems with lm-eval keys ee-bench refuses, each saying why (empty if none).

    Covers ``!function`` tags, sampling, ``repeats`` > 1, multimodal input, code-executing tasks,
    promptsource, unknown aggregations and non-boolean ``higher_is_better``.
    """
    problems = []
    for path, ref in function_refs(data):
        problems.append(f"'{path}' is `{ref}`: the main ee-bench command never runs Python code from a task "
                        f"file (task files are data). A file written for lm-eval's own CLI, like "
                        f"examples/lm-eval-tasks, runs with `ee-bench lm-eval --model ee-hf --include_path DIR "
                        f"--tasks NAME` (lm-eval's code path, docs/lm_eval.md); otherwise use a registered ee-bench "
                        f"document processor / metric, or lm-eval's own installed task by name (--tasks lm_eval:NAME).")
    for key in ("custom_dataset", "doc_to_image", "doc_to_audio", "use_prompt"):
        if data.get(key) not in (None, "", False) and not isinstance(data.get(key), FunctionRef):
            problems.append(f"'{key}' is refused: {TASK_CONFIG_FIELDS[key][1]}")
    if data.get("unsafe_code") not in (None, False):
        problems.append("'unsafe_code: true' is refused: the task executes model-written code")
    rep = data.get("repeats", 1)
    if rep != 1:
        problems.append(f"'repeats: {rep}' is refused: ee-bench decodes greedily, so every repeat would be "
                        f"identical (lm-eval uses repeats for sampling, e.g. majority voting); use repeats: 1")
    gk = data.get("generation_kwargs")
    if isinstance(gk, dict):
        if gk.get("do_sample") not in (None, False):
            problems.append(f"'generation_kwargs.do_sample: {gk['do_sample']}' is refused: ee-bench's oracle "
                            f"and gates are defined on greedy decoding (paper §4); use do_sample: false")
        temp = gk.get("temperature")
        if temp is not None and not (isinstance(temp, (int, float)) and not isinstance(temp, bool) and temp == 0):
            problems.append(f"'generation_kwargs.temperature: {temp}' is refused: a temperature above 0 is "
                            f"sampling; ee-bench decodes greedily (use temperature: 0 or leave it out)")
    out_type = data.get("output_type", "generate_until")
    if out_type in LM_EVAL_OUTPUT_TYPES and out_type not in RUNNABLE_OUTPUT_TYPES:
        problems.append(f"'output_type: {out_type}' is not supported yet: ee-bench analyses "
                        f"{', '.join(RUNNABLE_OUTPUT_TYPES)} tasks")
    for i, m in enumerate(data.get("metric_list") or []):
        if not isinstance(m, dict):
            continue
        agg = m.get("aggregation")
        if agg is not None and agg not in LM_EVAL_AGGREGATIONS:
            import difflib

            close = difflib.get_close_matches(str(agg), LM_EVAL_AGGREGATIONS, n=1)
            hint = f" Did you mean: {close[0]}?" if close else ""
            problems.append(f"metric_list[{i}] ({m.get('metric')}): unknown aggregation {agg!r}.{hint} "
                            f"lm-eval's aggregations: {', '.join(LM_EVAL_AGGREGATIONS)}")
        hib = m.get("higher_is_better")
        if hib is not None and not isinstance(hib, bool):
            problems.append(f"metric_list[{i}] ({m.get('metric')}): 'higher_is_better' must be true or false, got {hib!r}")
    return problems


def vocabulary_table() -> str:
    """The classification as a markdown table (rendered into ``docs/lm_eval.md``)."""
    rows = ["| `TaskConfig` field | class | what ee-bench does |", "|---|---|---|"]
    rows += [f"| `{k}` | {c} | {why} |" for k, (c, why) in TASK_CONFIG_FIELDS.items()]
    return "\n".join(rows)
