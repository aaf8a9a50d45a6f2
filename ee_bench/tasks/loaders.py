"""Reading a task's documents: from the hub (or sacrebleu), or offline from a local folder.

The same task YAML drives both paths:

- **local** — when ``--data-dir DIR`` or ``EE_BENCH_DATA_DIR`` is set and the YAML has an ``offline``
  block, documents are read from DIR in the official distribution layout (see
  ``../shared/data/README.md`` for the layouts) by the reader registered for ``offline.format``;
- **hub** — otherwise ``dataset_path`` is loaded with ``datasets.load_dataset`` (or, for
  ``sacrebleu/<test set>``, with sacrebleu's own downloader).

If neither works, :class:`DataNotFoundError` names both options.

Every document is a dict. Translation documents carry ``src``, ``ref`` (reference A), ``refs`` (all
references), ``src_lang``/``tgt_lang`` (ISO codes) and ``src_lang_name``/``tgt_lang_name``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ee_bench.errors import ConfigError, DataNotFoundError, EEBenchError
from ee_bench.hub import offline_if_unreachable
from ee_bench.preflight import path_inside
from ee_bench.registry import Registry
from ee_bench.tasks.spec import TaskSpec

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "EE_BENCH_DATA_DIR"

LANGUAGE_NAMES = {
    "de": "German", "en": "English", "fr": "French", "ja": "Japanese", "ru": "Russian",
    "zh": "Chinese", "cs": "Czech", "uk": "Ukrainian", "hr": "Croatian",
}

Reader = Callable[[Path, TaskSpec, dict[str, Any]], list[dict[str, Any]]]
OFFLINE_READERS: Registry[Reader] = Registry("offline data format")


def translation_doc(src: str, refs: list[str], pair: str) -> dict[str, Any]:
    """One translation document for language pair ``pair`` ("de-en")."""
    s, t = pair.split("-")
    return {
        "src": src, "ref": refs[0], "refs": refs, "src_lang": s, "tgt_lang": t,
        "src_lang_name": LANGUAGE_NAMES.get(s, s), "tgt_lang_name": LANGUAGE_NAMES.get(t, t),
    }


def inside(root: Path, path: Path, what: str = "offline path", trusted: Sequence[str | os.PathLike] = ()) -> Path:
    """``path`` resolved (symlinks and ``..`` followed), refused unless it lies inside ``root`` or one of
    the folders the user named as trusted (``--trust-path``).

    Task files come from strangers: an ``offline.path`` of ``/etc/passwd`` or ``../../secret`` must not
    read outside the data folder. A user's own task file may name data elsewhere (lm-eval task files
    often give absolute ``data_files``); the user widens the containment explicitly, folder by folder.

    Raises:
        EEBenchError: naming the escaping path, the folder it must stay in, and ``--trust-path``.
    """
    real, base = Path(path).resolve(), Path(root).resolve()
    roots = [base, *(Path(t).resolve() for t in trusted)]
    if all(path_inside(r, real) in (None, r) for r in roots):
        raise EEBenchError(f"The task's {what} {path} resolves to {real}, outside the folder {base}. "
                           f"Offline paths must be relative paths inside --data-dir (data_files: inside the "
                           f"task file's folder). Fix the task file, or, if you trust the folder that holds "
                           f"the data, name it: --trust-path {real.parent} (repeatable).")
    return real


def target_language(spec: TaskSpec, docs: list[dict[str, Any]]) -> str | None:
    """The ISO code of the language a task's outputs are in, for metrics that tokenise by language
    (BLEU's ``zh``/``ja`` tokenisers) and the report's English-only analyses: the documents'
    ``tgt_lang``, else the task file's ``metadata.language``, else the second half of a ``dataset_name``
    such as ``de-en``, else None. ``docs`` may be empty (the task alone decides). The one place this is
    worked out."""
    if docs and docs[0].get("tgt_lang"):
        return str(docs[0]["tgt_lang"])
    if spec.language:
        return spec.language
    pair = spec.dataset_name or ""
    return pair.split("-")[1] if "-" in pair else None


def _read_lines(path: Path) -> list[str]:
    """Segments of a one-segment-a-line file. Only "\n" splits (not str.splitlines, which would also
    split on U+2028 and friends); placeholders such as #PRS_ORG# pass through untouched."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise EEBenchError(f"{path} is not valid UTF-8 (byte {exc.object[exc.start:exc.start + 1]!r} at offset "
                           f"{exc.start}). Re-encode the file as UTF-8.") from None
    return lines[:-1] if lines and lines[-1] == "" else lines


@OFFLINE_READERS.register("wmt_txt")
def read_wmt_txt(root: Path, spec: TaskSpec, offline: dict[str, Any]) -> list[dict[str, Any]]:
    """WMT22 systems-repo ``txt/`` layout.

    Files: ``<path>/sources/<testset>.<pair>.src.<s>`` and
    ``<path>/references/<testset>.<pair>.ref.<R>.<t>`` for R in A, B, … (those present).
    """
    pair = spec.dataset_name
    s, t = pair.split("-")
    base = root / offline["path"]
    testset = offline["testset"]
    src_file = inside(root, base / "sources" / f"{testset}.{pair}.src.{s}")
    if not src_file.exists():
        raise FileNotFoundError(src_file)
    srcs = _read_lines(src_file)
    ref_files = sorted((base / "references").glob(f"{testset}.{pair}.ref.*.{t}"))
    if not ref_files:
        raise FileNotFoundError(base / "references" / f"{testset}.{pair}.ref.A.{t}")
    refs = [_read_lines(inside(root, f)) for f in ref_files]
    for f, r in zip(ref_files, refs):
        if len(r) != len(srcs):
            raise EEBenchError(f"{f} has {len(r)} lines but {src_file} has {len(srcs)}; the files do not match.")
    return [translation_doc(src, [r[i] for r in refs], pair) for i, src in enumerate(srcs)]


def read_jsonl_file(path: Path, what: str = "data file") -> list[dict[str, Any]]:
    """Rows of a JSON-lines file, one JSON object a line (blank lines skipped).

    Raises:
        EEBenchError: the file is missing or a folder, not UTF-8, a line is not valid JSON, or a line
            is not a JSON object; each message names the file, the line and the fix.
    """
    import json

    path = Path(path)
    if path.is_dir():
        raise EEBenchError(f"{what} {path} is a folder; give a JSON-lines file (one JSON object a line).")
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    rows = []
    try:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EEBenchError(f"{what} {path} line {n} is not valid JSON ({exc.msg}, column {exc.colno}). "
                                       f"Fix or remove that line: the file must hold one JSON object a line.") from None
                if not isinstance(row, dict):
                    raise EEBenchError(f"{what} {path} line {n} is a JSON {type(row).__name__}, not an object. Each "
                                       f"line must be one document, a JSON object of fields (e.g. {{\"sentence\": …}}).")
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise EEBenchError(f"{what} {path} is not valid UTF-8 (byte {exc.object[exc.start:exc.start + 1]!r} near "
                           f"offset {exc.start}). Re-encode the file as UTF-8.") from None
    return rows


@OFFLINE_READERS.register("jsonl")
def read_jsonl(root: Path, spec: TaskSpec, offline: dict[str, Any]) -> list[dict[str, Any]]:
    """One JSON object per line at ``<data-dir>/<offline.path>``."""
    return read_jsonl_file(inside(root, root / offline["path"]), f"Task {spec.task}'s data file")


def _pair_files(root: Path, spec: TaskSpec, offline: dict[str, Any]) -> tuple[str, Path, Path]:
    """(pair, source file, reference file) from ``offline.source`` / ``offline.reference`` name
    templates, in which ``{src}`` and ``{tgt}`` stand for the pair's language codes."""
    pair = spec.dataset_name or ""
    if pair.count("-") != 1:
        raise ConfigError(spec.source_file, [f"'dataset_name' must be a language pair like de-en, got {pair!r}"])
    s, t = pair.split("-")
    base = root / offline["path"]
    return (pair, inside(root, base / offline["source"].format(src=s, tgt=t)),
            inside(root, base / offline["reference"].format(src=s, tgt=t)))


_SGM_SEG = re.compile(r"<seg[^>]*>(.*)</seg>")


def read_sgm_segments(path: Path) -> list[str]:
    """Segments of a WMT "fake SGML" file (pre-2021 ``test-full`` layout), as sacrebleu reads them.

    Each line starting with ``<seg `` holds one segment; its text is taken as is (WMT14's files do
    not escape ``&``) with surrounding whitespace stripped and inner runs of whitespace collapsed.

    Raises:
        FileNotFoundError: if the file is missing.
    """
    out = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("<seg "):
            m = _SGM_SEG.search(line)
            out.append(re.sub(r"\s+", " ", (m.group(1) if m else "").strip()))
    return out


@OFFLINE_READERS.register("wmt_sgm")
def read_wmt_sgm(root: Path, spec: TaskSpec, offline: dict[str, Any]) -> list[dict[str, Any]]:
    """WMT ``test-full`` SGML layout (WMT14 and earlier; sacrebleu's ``wmt14/full``).

    Offline keys: ``path`` (folder), ``source`` and ``reference`` (file names with ``{src}``/``{tgt}``,
    e.g. ``newstest2014-deen-src.{src}.sgm``).

    Raises:
        FileNotFoundError: if a file is missing. EEBenchError: if the two files differ in segments.
    """
    pair, src_file, ref_file = _pair_files(root, spec, offline)
    srcs, refs = read_sgm_segments(src_file), read_sgm_segments(ref_file)
    if len(srcs) != len(refs):
        raise EEBenchError(f"{ref_file} has {len(refs)} segments but {src_file} has {len(srcs)}; the files do not match.")
    return [translation_doc(a, [b], pair) for a, b in zip(srcs, refs)]


@OFFLINE_READERS.register("parallel_txt")
def read_parallel_txt(root: Path, spec: TaskSpec, offline: dict[str, Any]) -> list[dict[str, Any]]:
    """Two aligned one-sentence-a-line files (e.g. fairseq's IWSLT14 ``test.de`` / ``test.en``).

    Offline keys: ``path`` (folder), ``source`` and ``reference`` (file names with ``{src}``/``{tgt}``,
    e.g. ``test.{src}``).

    Raises:
        FileNotFoundError: if a file is missing. EEBenchError: if the line counts differ.
    """
    pair, src_file, ref_file = _pair_files(root, spec, offline)
    srcs, refs = _read_lines(src_file), _read_lines(ref_file)
    if len(srcs) != len(refs):
        raise EEBenchError(f"{ref_file} has {len(refs)} lines but {src_file} has {len(srcs)}; the files do not match.")
    return [translation_doc(a, [b], pair) for a, b in zip(srcs, refs)]


# ---------------------------------------------------------------- process_docs (lm-eval's hook)
DocProcessor = Callable[[TaskSpec, list[dict[str, Any]]], list[dict[str, Any]]]
DOC_PROCESSORS: Registry[DocProcessor] = Registry("document processor")


@DOC_PROCESSORS.register("hf_translation")
def hf_translation_docs(spec: TaskSpec, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hub rows shaped ``{"translation": {"de": …, "en": …}}`` → translation documents for
    ``dataset_name`` (``de-en``: German source, English reference). Rows already in translation form
    (read offline) pass through."""
    s, t = (spec.dataset_name or "-").split("-")
    return [translation_doc(d["translation"][s], [d["translation"][t]], spec.dataset_name) if "translation" in d else d
            for d in docs]


@DOC_PROCESSORS.register("narrativeqa")
def narrativeqa_docs(spec: TaskSpec, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``deepmind/narrativeqa`` rows → ``context`` (the story's summary), ``question`` (text) and
    ``refs`` (every answer text; NarrativeQA has two), keeping the original fields under ``row``.

    Raises:
        EEBenchError: if a row lacks the summary, the question or the answers.
    """
    out = []
    for i, d in enumerate(docs):
        try:
            context = d["document"]["summary"]["text"]
            question = d["question"]["text"]
            refs = [a["text"] for a in d["answers"]]
        except (KeyError, TypeError) as exc:
            raise EEBenchError(f"NarrativeQA row {i} lacks {exc}; expected the deepmind/narrativeqa schema "
                               f"(document.summary.text, question.text, answers[].text).") from None
        if not refs:
            raise EEBenchError(f"NarrativeQA row {i} has no answers.")
        out.append({"context": context, "question": question, "refs": refs, "row": d})
    return out


def expected_local_path(spec: TaskSpec) -> str:
    off = spec.offline or {}
    return str(off.get("path", "(this task has no offline layout)"))


def data_dir_problem(data_dir: Path, hub: str | None = None) -> str | None:
    """Why ``data_dir`` cannot be a data folder (missing, or a file), or None; ``hub``: the task's
    hub source, named as the other option."""
    if data_dir.is_dir():
        return None
    what = "is a file, not a folder" if data_dir.exists() else "does not exist"
    where = f" ({data_dir.resolve()})" if not data_dir.is_absolute() else ""
    example = "" if data_dir.resolve() == Path("../shared/data").resolve() else ", e.g. ../shared/data"
    return (f"Data folder {data_dir}{where} {what}. Pass --data-dir (or set {DATA_DIR_ENV}) to an existing folder "
            f"in the official layouts{example} (a relative path counts from the current folder), or leave it out "
            f"to load {repr(hub) + ' ' if hub else ''}from the hub.")


def _load_local(data_dir: Path, spec: TaskSpec) -> list[dict[str, Any]]:
    problem = data_dir_problem(data_dir, spec.dataset_path)
    if problem:
        raise DataNotFoundError(problem)
    offline = dict(spec.offline or {})
    reader = OFFLINE_READERS.get(offline.get("format", ""))
    if not isinstance(offline.get("path"), str):
        raise ConfigError(spec.source_file, ["'offline.path' (a path relative to --data-dir) is required"])
    inside(data_dir, data_dir / offline["path"])
    try:
        docs = reader(data_dir, spec, offline)
    except IsADirectoryError as exc:
        raise EEBenchError(f"Task {spec.task}: {exc.filename} is a folder, but a data file was expected there. "
                           f"Put the official file at that path, or fix offline.path in {spec.source_file}.") from None
    except UnicodeDecodeError as exc:
        raise EEBenchError(f"Task {spec.task}: a data file under {data_dir / offline['path']} is not valid UTF-8 "
                           f"(byte {exc.object[exc.start:exc.start + 1]!r} at offset {exc.start}). Re-encode the "
                           f"file as UTF-8.") from None
    except KeyError as exc:
        raise ConfigError(spec.source_file, [f"offline block lacks the key {exc} that format "
                                             f"{offline.get('format')!r} needs"]) from None
    except FileNotFoundError as exc:
        raise DataNotFoundError(
            f"Task {spec.task}: {exc.filename or exc} is missing under the data folder {data_dir}. "
            f"Put the official files at {data_dir / expected_local_path(spec)}, or drop --data-dir / "
            f"{DATA_DIR_ENV} to load {spec.dataset_path!r} from the hub."
        ) from None
    return _postprocess(spec, docs)


def _load_sacrebleu(spec: TaskSpec) -> list[dict[str, Any]]:
    from sacrebleu.dataset import DATASETS

    name = spec.dataset_path.split("/", 1)[1]
    if name not in DATASETS:
        raise ConfigError(spec.source_file, [f"sacrebleu has no test set {name!r}"])
    ds = DATASETS[name]
    pair = spec.dataset_name
    if pair not in ds.langpairs:
        raise ConfigError(spec.source_file, [f"sacrebleu {name} has no language pair {pair!r}"])
    srcs = list(ds.source(pair))
    refs = [list(r) for r in ds.references(pair)] if hasattr(ds, "references") and callable(ds.references) else []
    if not refs:
        refs = [_read_lines(Path(f)) for f in ds.get_reference_files(pair)]
    return [translation_doc(src, [r[i] for r in refs], pair) for i, src in enumerate(srcs)]


def _load_hub(spec: TaskSpec, trusted: Sequence[str | os.PathLike] = ()) -> list[dict[str, Any]]:
    if spec.dataset_path.startswith("sacrebleu/"):
        return _load_sacrebleu(spec)
    import datasets

    kwargs = dict(spec.dataset_kwargs)
    files = kwargs.get("data_files")
    if isinstance(files, dict):  # local files named in the YAML are relative to it
        here = Path(spec.source_file).parent
        kwargs["data_files"] = {k: str(inside(here, here / v, "data_files entry", trusted)) for k, v in files.items()}
        for f in kwargs["data_files"].values():  # our own reader names the file and line of a bad row
            if spec.dataset_path == "json" and f.endswith(".jsonl") and Path(f).is_file():
                read_jsonl_file(Path(f), f"Task {spec.task}'s data file (named in {spec.source_file})")
    with offline_if_unreachable():  # issue 24: an unreachable hub fails at once, from the cache or not at all
        ds = datasets.load_dataset(spec.dataset_path, spec.dataset_name, split=spec.test_split, **kwargs)
    return [dict(row) for row in ds]


def _postprocess(spec: TaskSpec, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if spec.process_docs:
        docs = DOC_PROCESSORS.get(spec.process_docs)(spec, docs)
    pair = spec.dataset_name
    if docs and "src" in docs[0] and "refs" not in docs[0] and pair and "-" in pair:
        docs = [translation_doc(d["src"], [d["ref"]] if isinstance(d["ref"], str) else d["ref"], pair) | d
                for d in docs]
    return docs


def load_docs(spec: TaskSpec, data_dir: str | os.PathLike | None = None,
              trusted: Sequence[str | os.PathLike] = ()) -> list[dict[str, Any]]:
    """Load a task's documents (local layout first when a data folder is given, else the hub).

    Args:
        spec: the task.
        data_dir: ``--data-dir``; falls back to ``$EE_BENCH_DATA_DIR``.
        trusted: folders outside the task file's own where its ``data_files`` may lie (``--trust-path``).

    Returns:
        The documents, in the dataset's order.

    Raises:
        DataNotFoundError: if the local folder lacks the files or neither source can be read; the
            message names both options.
    """
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir and spec.offline:
        return _load_local(Path(data_dir), spec)
    if data_dir and not spec.offline and data_dir_problem(Path(data_dir)):
        raise DataNotFoundError(data_dir_problem(Path(data_dir)))
    if not spec.dataset_path:
        raise DataNotFoundError(f"Task {spec.task} has no hub source; pass --data-dir.")
    try:
        return _postprocess(spec, _load_hub(spec, trusted))
    except EEBenchError:
        raise
    except Exception as exc:  # network, missing cache, hub errors
        files = (spec.dataset_kwargs or {}).get("data_files")
        if isinstance(files, dict) and spec.dataset_path in ("json", "csv", "text", "parquet"):
            raise DataNotFoundError(
                f"Could not read the local data files {sorted(files.values())} of task {spec.task} "
                f"(named in {spec.source_file}): {type(exc).__name__}: {str(exc)[:200]}. Fix the file (one "
                f"JSON object a line, UTF-8) or the data_files entry.") from None
        local = (f"pass --data-dir DIR (or set {DATA_DIR_ENV}) with the official files at "
                 f"DIR/{expected_local_path(spec)}") if spec.offline else "this task has no offline layout"
        raise DataNotFoundError(
            f"Could not load the data of task {spec.task}. The hub source {spec.dataset_path!r}"
            f"{' (' + spec.dataset_name + ')' if spec.dataset_name else ''} failed "
            f"({type(exc).__name__}: {str(exc)[:200]}). Either make the hub reachable (or its cache "
            f"present), or {local}."
        ) from None
