"""lm-eval's own tasks under ee-bench's analysis: lm-eval builds and scores, ee-bench looks inside.

A task reaches this runner in two ways (:mod:`ee_bench.tasks.resolve`):

- by name through lm-eval's ``TaskManager`` (``--tasks lm_eval:wmt16-de-en``, or a plain name that is not
  an ee-bench task), with ``--include_path`` folders passed to the ``TaskManager`` too;
- as a task file ee-bench read (``--include_path``) that uses a feature only lm-eval implements
  (:func:`ee_bench.tasks.lm_eval_vocab.lm_eval_features`), handed to lm-eval as a config mapping.

Then, per task:

1. lm-eval builds it (``lm_eval.api.task.ConfigurableTask``: its data loading, ``process_docs``, few-shot
   sampling with ``--seed``, ``doc_to_text``) and runs it with ``lm_eval.simple_evaluate`` on
   :class:`AnalysingHFLM`, which *is* lm-eval's ``hf`` model (``HFLM``) around ee-bench's already loaded
   model: the prompts, batching, stop sequences, outputs, filters, ``process_results`` and aggregation are
   lm-eval's own code, so the scores are those ``lm_eval --model hf`` reports. It only records the token
   ids that ``HFLM._model_generate`` produced.
2. ee-bench analyses the requests: for ``generate_until``, every generated token (cut after the token that
   completes a stop sequence or EOS, :meth:`~ee_bench.models.hf_causal.HFCausalLM.truncate_output`) is
   teacher-forced through the wrapper's per-layer statistics
   (:meth:`~ee_bench.models.hf_causal.HFCausalLM.analyse_outputs`); for ``multiple_choice``, the
   label-restricted per-layer distribution of :func:`~ee_bench.models.choice.score_choices` at the end of
   lm-eval's context. The oracle, gate sweep, samples and leaderboard row follow as for any ee-bench task.

For ``loglikelihood_rolling`` (perplexity) tasks every token of the text is analysed teacher-forced after
lm-eval's prefix token (:func:`_analyse_rolling`); ``loglikelihood`` tasks are refused ("not supported yet").

Data without the hub: ``dataset_path: json`` with local ``data_files`` loads through HF datasets' local
json builder; with ``--data-dir DIR`` a task whose ``dataset_path`` is a hub id reads
``DIR/<dataset_path>/<dataset_name>/<split>.jsonl`` (or ``.json``) instead (:func:`local_data_overrides`).
Templates of every task built here render in Jinja's sandbox (:func:`sandboxed_templates`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ee_bench.errors import ConfigError, DataNotFoundError, EEBenchError, UnknownNameError
from ee_bench.tasks import lm_eval_vocab as vocab
from ee_bench.types import DocRecord

logger = logging.getLogger(__name__)

PREFIX = "lm_eval:"
SPLIT_KEYS = ("test_split", "validation_split", "training_split", "fewshot_split")


# ---------------------------------------------------------------- finding and building tasks
@lru_cache(maxsize=4)
def task_manager(include_paths: tuple[str, ...] = (), include_defaults: bool = True):
    """lm-eval's ``TaskManager`` over its installed tasks and ``include_paths`` (cached: indexing lm-eval's
    ~14,000 task files takes ~15 s on one CPU core)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_paths) or None, include_defaults=include_defaults)


@dataclass(frozen=True)
class LmEvalTask:
    """A task that lm-eval builds, with ee-bench's view of it (the attributes the evaluation loop reads).

    Attributes:
        task: lm-eval's task name. config: the resolved mapping given to ``ConfigurableTask`` (local-data
            overrides applied). source_file: its YAML. origin: where it was found.
        lm_task: the built ``ConfigurableTask`` (its data already loaded).
        docs: the documents of the evaluated split (after ``--limit``); total: the split's size.
        reasons: why lm-eval builds it (empty for a task loaded by name). data_note: where the data came from.
    """

    task: str
    config: dict[str, Any] = field(repr=False)
    source_file: str
    origin: str
    lm_task: Any = field(repr=False)
    docs: list[Any] = field(repr=False)
    total: int
    reasons: tuple[str, ...] = ()
    data_note: str = "as the task file says"
    recorded: dict[str, Any] = field(default_factory=dict)
    engine: str = "lm-eval"

    @property
    def output_type(self) -> str:
        return self.lm_task.OUTPUT_TYPE

    @property
    def version(self) -> Any:
        return (self.config.get("metadata") or {}).get("version")

    @property
    def generation_kwargs(self) -> dict[str, Any]:
        return dict(self.lm_task.config.generation_kwargs or {})

    @property
    def until(self) -> tuple[str, ...]:
        until = self.generation_kwargs.get("until") or []
        return tuple([until] if isinstance(until, str) else until)

    @property
    def max_gen_toks(self) -> int:
        return int(self.generation_kwargs.get("max_gen_toks") or vocab.DEFAULT_MAX_GEN_TOKS)

    @property
    def max_gen_toks_source(self) -> str:
        if self.output_type != "generate_until":
            return "not a generation task"
        if self.generation_kwargs.get("max_gen_toks"):
            return "task file"
        return f"lm-eval's default ({vocab.DEFAULT_MAX_GEN_TOKS}); the task file leaves it unset"

    @property
    def metric_list(self) -> tuple[dict[str, Any], ...]:
        return tuple(dict(m) for m in (self.config.get("metric_list") or []))

    @property
    def spec_hash(self) -> str:
        """sha256 of lm-eval's printable dump of the task config (functions as their source)."""
        blob = json.dumps(self.lm_task.dump_config(), sort_keys=True, ensure_ascii=False, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def task_info(self) -> dict[str, Any]:
        """Facts for the results' ``task_info``: who built and scored the task, and from what."""
        cfg = self.lm_task.config
        return {"built_by": "lm-eval", "lm_eval_origin": self.origin, "lm_eval_reasons": list(self.reasons),
                "num_fewshot": cfg.num_fewshot or 0, "data": self.data_note,
                "max_gen_toks_source": self.max_gen_toks_source,
                "chat_template": "not applied: lm-eval builds the prompts, and its hf model applies none unless asked",
                "recorded_unused": dict(self.recorded)}


def _inside(path: Path, roots: list[Path]) -> bool:
    path = path.resolve()
    return any(path.is_relative_to(r.resolve()) for r in roots)


def local_data_overrides(cfg: dict[str, Any], data_dir: str | Path | None, source: str) -> tuple[dict[str, Any], str]:
    """The config changes that make lm-eval read a hub data set from ``--data-dir`` instead.

    With ``DIR/<dataset_path>/<dataset_name>/<test_split>.jsonl`` (or ``.json``) present, the task gets
    ``dataset_path: json`` and ``dataset_kwargs.data_files`` naming the split files found (HF datasets'
    local json builder; rows keep the hub's fields, e.g. ``translation.de``). Splits without a local file
    that a zero-shot test-split evaluation never reads (``training_split``, ``validation_split``,
    ``fewshot_split``) are set to None: they are recorded, not used.

    Returns:
        (the new config, a note on where the data come from).

    Raises:
        ConfigError: if few-shot examples are asked for but their split has no local file, or the data
            path leaves the data folder.
    """
    path = cfg.get("dataset_path")
    if not data_dir or not isinstance(path, str) or path in ("json", "csv", "parquet", "text", "arrow"):
        return cfg, "as the task file says"
    root = Path(data_dir).resolve()
    folder = (root / path / (cfg.get("dataset_name") or "")).resolve()
    if not folder.is_relative_to(root):
        raise ConfigError(source, [f"dataset_path {path!r} leads outside --data-dir {data_dir}"])

    def file_for(split: str | None) -> Path | None:
        if not split:
            return None
        for ext in (".jsonl", ".json"):
            if (folder / f"{split}{ext}").is_file():
                return folder / f"{split}{ext}"
        return None

    test = cfg.get("test_split") or cfg.get("validation_split")
    if file_for(test) is None:
        return cfg, f"hub ({path}); no local file {folder / (str(test) + '.jsonl')}"
    out = dict(cfg)
    files = {}
    fewshot = (cfg.get("num_fewshot") or 0) > 0
    for key in SPLIT_KEYS:
        split = cfg.get(key)
        f = file_for(split)
        if f is not None:
            files[split] = str(f)
        elif split is not None:
            if fewshot and key != "test_split":
                raise ConfigError(source, [f"num_fewshot > 0 needs the {key} {split!r}, but {folder} has no "
                                           f"{split}.jsonl; add it, or set num_fewshot: 0"])
            out[key] = None  # recorded in the spec; a zero-shot test-split evaluation never reads it
    out["dataset_path"] = "json"
    out["dataset_name"] = None
    out["dataset_kwargs"] = {**(cfg.get("dataset_kwargs") or {}), "data_files": files}
    return out, f"local: {', '.join(sorted(files.values()))}"


def _resolve_data_files(cfg: dict[str, Any], yaml_file: Path) -> dict[str, Any]:
    """Relative ``dataset_kwargs.data_files`` of a file ee-bench read are relative to that file."""
    kwargs = cfg.get("dataset_kwargs")
    files = kwargs.get("data_files") if isinstance(kwargs, dict) else None
    if not isinstance(files, dict):
        return cfg
    fixed = {k: (str((yaml_file.parent / v).resolve()) if isinstance(v, str) and not Path(v).is_absolute() else v)
             for k, v in files.items()}
    return {**cfg, "dataset_kwargs": {**kwargs, "data_files": fixed}}


@contextlib.contextmanager
def sandboxed_templates():
    """Render lm-eval's Jinja templates (``lm_eval.utils.apply_template``) in Jinja's sandbox meanwhile.

    lm-eval renders with a plain ``jinja2.Environment``, in which a template can reach Python internals;
    a task file from a stranger is data, so ee-bench swaps in ``ImmutableSandboxedEnvironment`` with the
    same options and filters while it builds and runs lm-eval tasks.
    """
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from lm_eval import utils

    old = utils.env
    env = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader, undefined=jinja2.StrictUndefined,
                                        keep_trailing_newline=True)
    env.filters.update(old.filters)
    utils.env = env
    try:
        yield
    finally:
        utils.env = old


def _check_runnable(cfg: dict[str, Any], source: str, trusted: bool) -> None:
    problems = vocab.refusals(cfg)
    if trusted:  # lm-eval's installed functions are resolved to callables, never FunctionRef
        problems = [p for p in problems if "`!function" not in p]
    if problems:
        raise ConfigError(source, problems)


def build_task(name: str, cfg: dict[str, Any], source: str, origin: str, data_dir, limit: int | None,
               reasons: tuple[str, ...] = ()) -> LmEvalTask:
    """Let lm-eval build one task from a resolved config, and load its documents.

    Raises:
        ConfigError: a refused key. DataNotFoundError: lm-eval could not load the data.
    """
    from lm_eval.api.task import ConfigurableTask

    recorded = {k: cfg[k] for k, (cls, _) in vocab.TASK_CONFIG_FIELDS.items()
                if cls == vocab.RECORDED and k in cfg and not callable(cfg[k])}
    if "repeats" in cfg:
        recorded["repeats"] = cfg["repeats"]
    cfg, note = local_data_overrides(cfg, data_dir, source)
    cfg = {k: v for k, v in copy.deepcopy(cfg).items() if k not in ("tag", "group", "task_list", "include")}
    cfg["metadata"] = {**(cfg.get("metadata") or {}), "config_source": source}
    try:
        with sandboxed_templates():
            lm_task = ConfigurableTask(config=cfg)
    except (ConfigError, EEBenchError):
        raise
    except Exception as exc:  # hub unreachable, missing file, bad split, template error
        raise DataNotFoundError(
            f"lm-eval could not build task {name} from {source} ({type(exc).__name__}: {str(exc)[:300]}). "
            f"If its data set is on the hub, put a copy with the same fields at "
            f"--data-dir DIR/{cfg.get('dataset_path')}/{cfg.get('dataset_name') or ''}/<split>.jsonl, or "
            f"use dataset_path: json with local data_files.") from None
    docs = list(lm_task.eval_docs)
    if not docs:
        raise EEBenchError(f"lm-eval task {name} has no documents in its evaluated split.")
    return LmEvalTask(task=name, config=cfg, source_file=source, origin=origin, lm_task=lm_task,
                      docs=docs[:limit] if limit else docs, total=len(docs), reasons=reasons, data_note=note,
                      recorded=recorded)


def from_spec(spec, data_dir, limit: int | None) -> LmEvalTask:
    """Build an ee-bench-read task file (``spec.engine == "lm-eval"``) with lm-eval."""
    cfg = _resolve_data_files(dict(spec.raw), Path(spec.source_file))
    _check_runnable(cfg, spec.source_file, trusted=False)
    if problems := lm_eval_metric_problems(spec):
        raise ConfigError(spec.source_file, problems)
    return build_task(spec.task, cfg, spec.source_file, f"task file read by ee-bench: {spec.source_file}",
                      data_dir, limit, spec.lm_eval_reasons)


def from_name(name: str, include_paths: list[Path], data_dir, limit: int | None) -> LmEvalTask:
    """Look ``name`` up in lm-eval's ``TaskManager`` and build it.

    A task file under an ``--include_path`` folder is read as data (``!function`` refused, includes
    resolved by ee-bench); lm-eval's installed task files are read by lm-eval, functions included.

    Raises:
        UnknownNameError: if lm-eval knows no task of that name (with the closest names).
        EEBenchError: for a group or tag (give its member tasks). ConfigError: a refused key.
    """
    import difflib

    from lm_eval.tasks._index import Kind

    # --include_path folders first (as in lm-eval, where they override installed tasks), then the
    # installed tasks; two managers, so the big one is indexed once per process whatever the folders.
    managers = ([task_manager(tuple(str(p) for p in include_paths), include_defaults=False)] if include_paths else [])
    entry = None
    for tm in managers:
        entry = tm.task_index.get(name)
        if entry is not None:
            break
    if entry is None:
        tm = task_manager(())
        entry = tm.task_index.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, [n for m in (*managers, tm) for n in m.all_tasks], n=5, cutoff=0.6)
        raise UnknownNameError(
            f"Unknown task {name!r}: neither ee-bench nor lm-eval has it.{' Did you mean: ' + ', '.join(close) + '?' if close else ''} "
            f"List them with `ee-bench ls tasks` and `ee-bench ls tasks --lm-eval`; add folders with --include_path DIR.")
    if entry.kind in (Kind.GROUP, Kind.TAG):
        members = sorted(entry.tags)[:8] if entry.kind == Kind.TAG else []
        raise EEBenchError(f"{name} is an lm-eval {entry.kind.name.lower()}; ee-bench runs lm-eval tasks one by one: "
                           f"name its member tasks in --tasks{' (e.g. ' + ', '.join(members) + ')' if members else ''}.")
    if entry.kind != Kind.TASK or entry.yaml_path is None:
        raise EEBenchError(f"lm-eval task {name} is a Python class, not a task file; ee-bench runs task files only.")
    yaml_path = Path(entry.yaml_path)
    if _inside(yaml_path, include_paths):  # a stranger's file: read as data, with ee-bench's full checks
        from ee_bench.tasks.spec import parse_task, resolve_includes

        raw = resolve_includes(yaml_path)
        parse_task(raw, str(yaml_path))  # raises ConfigError listing every problem
        cfg = _resolve_data_files(raw, yaml_path)
        origin = f"lm-eval TaskManager, include_path file {yaml_path}"
    else:
        from lm_eval.tasks._yaml_loader import load_yaml

        cfg = load_yaml(yaml_path, resolve_func=True)
        _check_runnable(cfg, str(yaml_path), trusted=True)
        origin = f"lm-eval {_lm_eval_version()} package: {yaml_path}"
    if cfg.get("task") != name:
        cfg["task"] = name
    return build_task(name, cfg, str(yaml_path), origin, data_dir, limit)


def _lm_eval_version() -> str:
    from importlib import metadata

    return metadata.version("lm_eval")


def lm_eval_metric_problems(spec) -> list[str]:
    """Problems of an lm-eval-built task file's metrics and filters, found without a model.

    Metric names must be lm-eval's (``lm_eval.api.registry``), filter functions registered lm-eval filters.
    """
    import lm_eval.api.metrics  # noqa: F401  (fills lm-eval's metric registry)
    import lm_eval.filters  # noqa: F401  (fills its filter registry)
    from lm_eval.api.registry import METRIC_REGISTRY, filter_registry

    problems = []
    for m in spec.metric_list:
        if m["metric"] not in METRIC_REGISTRY:
            problems.append(f"metric {m['metric']!r} is not an lm-eval metric (this task is built by lm-eval "
                            f"because of: {'; '.join(spec.lm_eval_reasons)}); lm-eval's: {', '.join(sorted(METRIC_REGISTRY))}")
        if m.get("hf_evaluate"):
            problems.append(f"metric {m['metric']!r}: hf_evaluate metrics download code from the hub; refused")
    flist = spec.raw.get("filter_list")
    if flist is not None:
        if not isinstance(flist, list):
            problems.append("'filter_list' must be a list of {name, filter: [{function, ...}]}")
        else:
            for i, f in enumerate(flist):
                funcs = f.get("filter") if isinstance(f, dict) else None
                if not (isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(funcs, list)):
                    problems.append(f"filter_list[{i}] must be {{name: str, filter: [{{function: name, …}}]}}")
                    continue
                for fn in funcs:
                    name = fn.get("function") if isinstance(fn, dict) else None
                    if name not in filter_registry:
                        problems.append(f"filter_list[{i}] ({f['name']}): unknown filter {name!r}; lm-eval's "
                                        f"filters: {', '.join(sorted(filter_registry))}")
    return problems


# ---------------------------------------------------------------- running and analysing
def analysing_lm_class():
    """:class:`AnalysingHFLM`, defined on first use so importing this module does not import lm-eval's models."""
    from lm_eval.models.huggingface import HFLM

    class AnalysingHFLM(HFLM):
        """lm-eval's ``hf`` model around ee-bench's loaded model; records the ids it generates.

        Args:
            wrapper: an :class:`~ee_bench.models.hf_causal.HFCausalLM`. batch_size: lm-eval's batch size.
        """

        def __init__(self, wrapper, batch_size: int = 1) -> None:
            super().__init__(pretrained=wrapper.model, tokenizer=wrapper.tokenizer, batch_size=batch_size)
            self.wrapper = wrapper
            self.generated: dict[tuple[int, ...], list[int]] = {}  # unpadded prompt ids -> generated ids

        def _model_generate(self, context, max_length, stop, **generation_kwargs):  # (B, P) -> (B, P + G)
            mask = generation_kwargs.get("attention_mask")
            out = super()._model_generate(context, max_length, stop, **generation_kwargs)
            keep = torch.ones_like(context, dtype=torch.bool) if mask is None else mask.bool()
            for row, k, gen in zip(context, keep, out[:, context.shape[1]:]):
                self.generated[tuple(row[k].tolist())] = gen.tolist()
            return out

        def prompt_ids(self, context: str, gen_kwargs: dict[str, Any]) -> list[int]:
            """The ids ``generate_until`` fed for ``context`` (same encoding and left truncation)."""
            from lm_eval.models.utils import normalize_gen_kwargs

            max_gen = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)["max_gen_toks"]
            ids, mask = self.tok_batch_encode([context], left_truncate_len=self.max_length - max_gen,
                                              truncation=self.truncation)
            return ids[0][mask[0].bool()].tolist()

    return AnalysingHFLM


@dataclass(frozen=True)
class LmEvalRun:
    """One lm-eval task run, analysed.

    Attributes:
        records: one :class:`DocRecord` per document, by doc_id.
        metrics: lm-eval's aggregated scores (``bleu``; ``metric,filter`` for filters other than ``none``).
        metric_details: per metric: ``higher_is_better``, ``scored_by`` and the task file's direction note.
        lm_eval_results: lm-eval's own results entry for the task (scores, alias, ``n-samples``).
    """

    records: list[DocRecord]
    metrics: dict[str, float | None]
    metric_details: dict[str, dict[str, Any]]
    lm_eval_results: dict[str, Any]


def _metric_name(key: str) -> tuple[str, str]:
    metric, _, filt = key.partition(",")
    return metric, filt or "none"


def run_lm_eval_task(model, task: LmEvalTask, *, batch_size: int = 1, limit: int | None = None, seed: int = 1234,
                     keep_hidden: bool = False, progress=None) -> LmEvalRun:
    """Run a built lm-eval task with lm-eval's evaluator on ``model`` and analyse every request.

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM` (already loaded).
        task: from :func:`from_name` / :func:`from_spec`. batch_size: lm-eval's batch size.
        limit: lm-eval's ``--limit``. seed: lm-eval's few-shot seed (``fewshot_random_seed``).
        keep_hidden: keep hidden states for gates that read them. progress: tqdm bar, one step per document.

    Returns:
        :class:`LmEvalRun`.

    Raises:
        EEBenchError: for an output type ee-bench cannot analyse, or a model that is not a causal LM.
    """
    import lm_eval

    if task.output_type not in vocab.RUNNABLE_OUTPUT_TYPES:
        raise EEBenchError(f"lm-eval task {task.task} is {task.output_type}; ee-bench analyses "
                           f"{', '.join(vocab.RUNNABLE_OUTPUT_TYPES)} tasks only (loglikelihood is not supported yet).")
    if getattr(model, "kind", "causal") != "causal":
        raise EEBenchError(f"lm-eval tasks need a causal LM; {model.name} is a {model.kind} model.")
    lm = analysing_lm_class()(model, batch_size=batch_size)
    with sandboxed_templates():
        out = lm_eval.simple_evaluate(
            model=lm, tasks=[task.lm_task], task_manager=task_manager((), include_defaults=False), limit=limit,
            log_samples=True, bootstrap_iters=0, fewshot_random_seed=seed)
    name = task.lm_task.task_name
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    analyse = {"generate_until": _analyse_generation, "multiple_choice": _analyse_choice,
               "loglikelihood_rolling": _analyse_rolling}[task.output_type]
    records = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        records += analyse(model, lm, chunk, keep_hidden)
        if progress is not None:
            progress.update(len(chunk))
    scores = out["results"][name]
    hib = out.get("higher_is_better", {}).get(name, {})
    metrics, details = {}, {}
    for key, value in scores.items():
        if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
            continue  # "alias", "sample_len" and standard errors are not scores
        metric, filt = _metric_name(key)
        shown = metric if filt == "none" else key
        metrics[shown] = float(value)
        details[shown] = {"higher_is_better": _direction(task, metric, hib.get(metric)),
                          "scored_by": f"lm-eval {_lm_eval_version()} process_results + aggregation",
                          "filter": filt}
    return LmEvalRun(records, metrics, details, {k: v for k, v in scores.items() if not isinstance(v, str) or k == "alias"})


def _direction(task: LmEvalTask, metric: str, lm_eval_says: bool | None) -> bool:
    """A metric's direction: ee-bench's metric registry where it has the metric, else lm-eval's; a task
    file that states the opposite gets a warning."""
    from ee_bench.metrics.base import METRICS

    hib = METRICS.get(metric).higher_is_better if metric in METRICS.names() else bool(lm_eval_says in (None, True))
    for m in task.metric_list:
        if m.get("metric") == metric and isinstance(m.get("higher_is_better"), bool) and m["higher_is_better"] != hib:
            logger.warning("task %s says %s higher_is_better: %s; the metric registry says %s, which is used",
                           task.task, metric, m["higher_is_better"], hib)
    return hib


def _plain(value: Any) -> Any:
    """lm-eval's per-document values as JSON data (numpy scalars to Python numbers, tuples to lists)."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _analyse_generation(model, lm, samples: list[dict], keep_hidden: bool) -> list[DocRecord]:
    prompts, outputs, texts = [], [], []
    for s in samples:
        (context, gen_kwargs), = s["arguments"]
        ids = lm.prompt_ids(context, gen_kwargs)
        gen = lm.generated.get(tuple(ids))
        if gen is None:
            raise EEBenchError(f"internal: no generation recorded for document {s['doc_id']}; lm-eval's request "
                               f"encoding and ee-bench's look-up disagree.")
        until = list(gen_kwargs.get("until") or [])
        kept, _ = model.truncate_output(gen, tuple([until] if isinstance(until, str) else until))
        prompts.append(ids)
        outputs.append(kept)
        texts.append(s["resps"][0][0])
    analyses = model.analyse_outputs(prompts, outputs, keep_hidden=keep_hidden)
    records = []
    for s, ids, kept, text, an in zip(samples, prompts, outputs, texts, analyses):
        target = s["target"]
        records.append(DocRecord(
            doc_id=s["doc_id"], prompt=s["arguments"][0][0], prompt_token_ids=ids, output_text=text,
            output_token_ids=kept, prediction=s["filtered_resps"][0], references=_plain(target if isinstance(target, list) else [target]),
            stats=an.stats, hidden=an.hidden, embeddings=an.embeddings,
            extra={"lm_eval": {m: _plain(s[m]) for m in s["metrics"]}, "filter": s["filter"]},
        ))
    return records


def _analyse_choice(model, lm, samples: list[dict], keep_hidden: bool) -> list[DocRecord]:
    from ee_bench.models.choice import score_choices

    records = []
    for s in samples:
        context = s["arguments"][0][0]
        pairs = [lm._encode_pair(context, cont) if context else ([lm.prefix_token_id], lm.tok_encode(cont))
                 for _, cont in s["arguments"]]
        ctx_ids = pairs[0][0]
        n_spaces = len(context) - len(context.rstrip())
        conts = [(context[-n_spaces:] if n_spaces else "") + cont for _, cont in s["arguments"]]
        sc = score_choices(model, [ctx_ids], conts, keep_hidden=keep_hidden)[0]
        lls = [r[0][0] for r in s["resps"]]
        pred = int(max(range(len(lls)), key=lambda i: lls[i]))
        gold = s["target"]
        records.append(DocRecord(
            doc_id=s["doc_id"], prompt=context, prompt_token_ids=ctx_ids, output_text=s["arguments"][pred][1],
            output_token_ids=[pairs[pred][1][0]], prediction=pred, references=_plain(gold if isinstance(gold, list) else [gold]),
            stats=sc.stats, hidden=sc.hidden, embeddings=sc.embeddings,
            extra={"lm_eval": {m: _plain(s[m]) for m in s["metrics"]}, "loglik": _plain(lls),
                   "choices": [c for _, c in s["arguments"]]},
        ))
    return records


def _analyse_rolling(model, lm, samples: list[dict], keep_hidden: bool) -> list[DocRecord]:
    """Perplexity tasks: the per-token view of the teacher-forced text.

    Each text is tokenised as lm-eval's ``loglikelihood_rolling`` does (``tok_encode``) and fed after
    lm-eval's prefix token; every text token is then an "output" token whose per-layer statistics are
    read at the position that predicts it, so the oracle asks, token by token, from which layer on the
    model's own final top-1 was already the top-1. lm-eval scores the log-likelihood (rolling windows).

    Raises:
        EEBenchError: for a text longer than the model's context (lm-eval would split it into windows).
    """
    prompts, outputs = [], []
    for s in samples:
        (text,) = s["arguments"][0][:1]
        ids = lm.tok_encode(text)
        if len(ids) + 1 > lm.max_length:
            raise EEBenchError(f"document {s['doc_id']} has {len(ids)} tokens, more than the model's context "
                               f"({lm.max_length}); per-token analysis of rolling windows is not supported yet.")
        prompts.append([lm.prefix_token_id])
        outputs.append(ids)
    analyses = model.analyse_outputs(prompts, outputs, keep_hidden=keep_hidden)
    records = []
    for s, prompt, ids, an in zip(samples, prompts, outputs, analyses):
        records.append(DocRecord(
            doc_id=s["doc_id"], prompt="", prompt_token_ids=prompt, output_text=s["arguments"][0][0],
            output_token_ids=ids, prediction=_plain(s["resps"][0][0]), references=_plain([s["target"]]),
            stats=an.stats, hidden=an.hidden, embeddings=an.embeddings,
            extra={"lm_eval": {m: _plain(s[m]) for m in s["metrics"]}, "loglikelihood_nats": _plain(s["resps"][0][0])},
        ))
    return records
