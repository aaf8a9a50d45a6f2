"""Finding and building lm-eval's tasks for ee-bench: by name through lm-eval's ``TaskManager``, or from a
task file ee-bench read; local data instead of the hub; Jinja's sandbox; refusals before anything runs.

See :mod:`ee_bench.lm_eval.tasks` for how a built task is run and analysed, and ``docs/lm_eval.md``.
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

from ee_bench.errors import (
    ConfigError,
    DataNotFoundError,
    EEBenchError,
    UnknownNameError,
)
from ee_bench.hub import offline_if_unreachable
from ee_bench.tasks import lm_eval_vocab as vocab
from ee_bench.tasks.local_aliases import hub_aliases, local_file_for

logger = logging.getLogger(__name__)

SPLIT_KEYS = ("test_split", "validation_split", "training_split", "fewshot_split")


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
        recorded: the recorded (unused) keys and their values. fewshot_seed: lm-eval's ``fewshot_random_seed``
            (``--seed``; 1234 is lm-eval's default too). max_gen_toks_override: the budget of
            ``--gen_kwargs max_gen_toks=N`` (None: the task file's, or lm-eval's 256).
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
    fewshot_seed: int = 1234
    engine: str = "lm-eval"
    max_gen_toks_override: int | None = None

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
        if self.max_gen_toks_override is not None:
            return self.max_gen_toks_override
        return int(self.generation_kwargs.get("max_gen_toks") or vocab.DEFAULT_MAX_GEN_TOKS)

    @property
    def max_gen_toks_source(self) -> str:
        if self.output_type != "generate_until":
            return "not a generation task"
        if self.max_gen_toks_override is not None:
            return f"--gen_kwargs max_gen_toks={self.max_gen_toks_override}"
        if self.generation_kwargs.get("max_gen_toks"):
            return "task file"
        return f"lm-eval's default ({vocab.DEFAULT_MAX_GEN_TOKS}); the task file leaves it unset"

    @property
    def metric_list(self) -> tuple[dict[str, Any], ...]:
        return tuple(dict(m) for m in (self.config.get("metric_list") or []))

    @property
    def spec_hash(self) -> str:
        """sha256 of lm-eval's printable dump of the task config (functions as their source)."""
        dump = self.lm_task.dump_config()
        if self.max_gen_toks_override is not None:  # --gen_kwargs: a new budget is a new task for resume
            dump = {**dump, "max_gen_toks_override": self.max_gen_toks_override}
        blob = json.dumps(dump, sort_keys=True, ensure_ascii=False, default=str).encode()
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

    With ``DIR/<dataset_path>/<dataset_name>/<test_split>.jsonl`` (or ``.json``) present, or the file that
    ee-bench's own task of the same hub data set reads (:func:`~ee_bench.tasks.local_aliases.local_file_for`,
    e.g. ``DIR/glue/sst2/validation.jsonl`` for ``nyu-mll/glue`` ``sst2``), the task gets
    ``dataset_path: json`` and ``dataset_kwargs.data_files`` naming the split files found (HF datasets'
    local json builder; rows keep the hub's fields, e.g. ``translation.de``). Splits without a local file
    that a zero-shot test-split evaluation never reads (``training_split``, ``validation_split``,
    ``fewshot_split``) are set to None: they are recorded, not used.

    Returns:
        (the new config, a note on where the data come from).

    Raises:
        ConfigError: if few-shot examples are asked for but their split has no local file, or the data
            path leaves the data folder.
        DataNotFoundError: if the evaluated split has no local file: with ``--data-dir`` the hub is
            never tried (no retries), so this fails at once.
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
        return local_file_for(root, path, cfg.get("dataset_name"), split)  # issue 24: ee-bench's own layout

    test = cfg.get("test_split") or cfg.get("validation_split")
    if file_for(test) is None:  # issue 24: --data-dir given, so no hub (and no retries): fail at once
        alias = [rel for (p, n, sp), rel in hub_aliases().items()
                 if p.split("/")[-1] == path.split("/")[-1] and n == cfg.get("dataset_name") and sp == test]
        raise DataNotFoundError(
            f"Task {cfg.get('task')}: --data-dir {data_dir} has no local copy of {path}"
            f"{'/' + cfg['dataset_name'] if cfg.get('dataset_name') else ''} split {test!r}. Looked for "
            f"{folder / (str(test) + '.jsonl')}{' and ' + str(root / alias[0]) if alias else ''}. Put the rows "
            f"there (the hub's fields, one JSON object per line), or leave out --data-dir to read the hub.")
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
               reasons: tuple[str, ...] = (), seed: int = 1234) -> LmEvalTask:
    """Let lm-eval build one task from a resolved config, and load its documents.

    Raises:
        ConfigError: a refused key. DataNotFoundError: lm-eval could not load the data.
    """
    import jinja2
    from lm_eval.api.task import ConfigurableTask

    recorded = {k: cfg[k] for k, (cls, _) in vocab.TASK_CONFIG_FIELDS.items()
                if cls == vocab.RECORDED and k in cfg and not callable(cfg[k])}
    if "repeats" in cfg:
        recorded["repeats"] = cfg["repeats"]
    cfg, note = local_data_overrides(cfg, data_dir, source)
    cfg = {k: v for k, v in copy.deepcopy(cfg).items() if k not in ("tag", "group", "task_list", "include")}
    cfg["metadata"] = {**(cfg.get("metadata") or {}), "config_source": source}
    offline = None
    try:
        with sandboxed_templates(), offline_if_unreachable() as offline:  # no hub: fail at once, no retries
            lm_task = ConfigurableTask(config=cfg)
    except (ConfigError, EEBenchError):
        raise
    except jinja2.exceptions.SecurityError as exc:
        raise ConfigError(source, [f"a template of task {name} reaches for Python internals, which Jinja's sandbox "
                                   f"refuses ({exc}); templates may only read document fields"]) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(source, [f"a template of task {name} failed on the first document: "
                                   f"{type(exc).__name__}: {exc}"]) from None
    except Exception as exc:  # hub unreachable, missing file, bad split
        hub = f"The hub cannot be used here ({offline}) and no local copy was found. " if offline else ""
        raise DataNotFoundError(
            f"lm-eval could not build task {name} from {source} ({type(exc).__name__}: {str(exc)[:300]}). {hub}"
            f"If its data set is on the hub, put a copy with the same fields at "
            f"--data-dir DIR/{cfg.get('dataset_path')}/{cfg.get('dataset_name') or ''}/<split>.jsonl, or "
            f"use dataset_path: json with local data_files.") from None
    docs = list(lm_task.eval_docs)
    if not docs:
        raise EEBenchError(f"lm-eval task {name} has no documents in its evaluated split.")
    if lm_task.OUTPUT_TYPE == "multiple_choice":  # issue 24: every document's choices, before the model loads
        check_choices(lm_task, docs[:limit] if limit else docs, name, source)
    return LmEvalTask(task=name, config=cfg, source_file=source, origin=origin, lm_task=lm_task,
                      docs=docs[:limit] if limit else docs, total=len(docs), reasons=reasons, data_note=note,
                      recorded=recorded, fewshot_seed=seed)


def check_choices(lm_task, docs: list[Any], name: str, source: str) -> None:
    """Render ``doc_to_choice`` on every evaluated document of a multiple-choice task (in the sandbox).

    Raises:
        ConfigError: naming the first document whose ``doc_to_choice`` fails or gives fewer than two
            choices (a log-likelihood comparison needs at least two).
    """
    for i, doc in enumerate(docs):
        try:
            with sandboxed_templates():
                choices = lm_task.doc_to_choice(doc)
        except Exception as exc:  # a template error, a missing field, a bad type: lm-eval raises many kinds
            raise ConfigError(source, [f"doc_to_choice of task {name} fails on document {i} "
                                       f"({type(exc).__name__}: {str(exc)[:200]}); fix the template or the data"]) from None
        if choices is None:  # lm-eval's answer to a template whose field the document lacks
            raise ConfigError(source, [f"doc_to_choice of task {name} fails on document {i} (it gives nothing: "
                                       f"does the document lack a field it reads?); fix the template or the data"])
        if not isinstance(choices, (list, tuple)) or len(choices) < 2:
            raise ConfigError(source, [f"doc_to_choice of task {name} gives {choices!r} on document {i}: a "
                                       f"multiple-choice task needs at least two choices per document"])


def from_spec(spec, data_dir, limit: int | None, seed: int = 1234) -> LmEvalTask:
    """Build an ee-bench-read task file (``spec.engine == "lm-eval"``) with lm-eval."""
    cfg = _resolve_data_files(dict(spec.raw), Path(spec.source_file))
    _check_runnable(cfg, spec.source_file, trusted=False)
    if problems := lm_eval_metric_problems(spec):
        raise ConfigError(spec.source_file, problems)
    return build_task(spec.task, cfg, spec.source_file, f"task file read by ee-bench: {spec.source_file}",
                      data_dir, limit, spec.lm_eval_reasons, seed)


def from_name(name: str, include_paths: list[Path], data_dir, limit: int | None, seed: int = 1234) -> LmEvalTask:
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
        miss = UnknownNameError(
            f"Unknown task {name!r}: neither ee-bench nor lm-eval has it.{' Did you mean: ' + ', '.join(close) + '?' if close else ''} "
            f"List them with `ee-bench ls tasks` and `ee-bench ls tasks --lm-eval`; add folders with --include_path DIR.")
        miss.suggestions = close  # read by task_resolution to merge both registries' hints into one message
        raise miss
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
    return build_task(name, cfg, str(yaml_path), origin, data_dir, limit, seed=seed)


def _lm_eval_version() -> str:
    from importlib import metadata

    return metadata.version("lm_eval")


def lm_eval_metric_problems(spec) -> list[str]:
    """Problems of an lm-eval-built task file's metrics and filters, found without a model.

    Metric names must be lm-eval's (``lm_eval.api.registry``), filter functions registered lm-eval filters.
    """
    import lm_eval.api.metrics
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
