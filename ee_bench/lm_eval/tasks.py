"""lm-eval's own tasks under ee-bench's analysis: lm-eval builds and scores, ee-bench looks inside.

A task reaches this runner in two ways (:mod:`ee_bench.task_resolution`):

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
lm-eval's prefix token (:func:`_analyse_rolling`); for ``loglikelihood`` tasks (LAMBADA-style) the
continuation's tokens after the context (:func:`_analyse_loglikelihood`). For ``multiple_choice`` and
``loglikelihood`` tasks every exit layer's (log-likelihood, ``is_greedy``) answers are scored by lm-eval's
``process_results`` into the task's metrics by layer (:mod:`ee_bench.lm_eval.by_layer`, issue 24).

Data without the hub: ``dataset_path: json`` with local ``data_files`` loads through HF datasets' local
json builder; with ``--data-dir DIR`` a task whose ``dataset_path`` is a hub id reads
``DIR/<dataset_path>/<dataset_name>/<split>.jsonl`` (or ``.json``) instead (:func:`local_data_overrides`).
Templates of every task built here render in Jinja's sandbox (:func:`sandboxed_templates`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from lm_eval.models.huggingface import HFLM

from ee_bench.errors import EEBenchError
from ee_bench.layer_metrics import LAYER_LOGLIK_KEY
from ee_bench.lm_eval.by_layer import GREEDY_KEY, layer_answers, lm_eval_metrics_by_layer, request_ids
from ee_bench.lm_eval.task_build import (
    LmEvalTask,
    _lm_eval_version,
    sandboxed_templates,
    task_manager,
)
from ee_bench.tasks import lm_eval_vocab as vocab
from ee_bench.types import DocRecord

logger = logging.getLogger(__name__)


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
                           f"{', '.join(vocab.RUNNABLE_OUTPUT_TYPES)} tasks only.")
    if getattr(model, "kind", "causal") != "causal":
        raise EEBenchError(f"lm-eval tasks need a causal LM; {model.name} is a {model.kind} model.")
    lm = AnalysingHFLM(model, batch_size=batch_size)
    with sandboxed_templates():
        out = lm_eval.simple_evaluate(
            model=lm, tasks=[task.lm_task], task_manager=task_manager((), include_defaults=False), limit=limit,
            log_samples=True, bootstrap_iters=0, fewshot_random_seed=seed)
    name = task.lm_task.task_name
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    analyse = {"generate_until": _analyse_generation, "multiple_choice": _analyse_choice,
               "loglikelihood": _analyse_loglikelihood, "loglikelihood_rolling": _analyse_rolling}[task.output_type]
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
        pairs = [request_ids(lm, context, cont) for _, cont in s["arguments"]]
        ctx_ids = pairs[0][0]
        n_spaces = len(context) - len(context.rstrip())
        conts = [(context[-n_spaces:] if n_spaces else "") + cont for _, cont in s["arguments"]]
        sc = score_choices(model, [ctx_ids], conts, keep_hidden=keep_hidden)[0]
        answers = [tuple(r[0]) for r in s["resps"]]
        lls = [a[0] for a in answers]
        pred = int(max(range(len(lls)), key=lambda i: lls[i]))
        by_layer, greedy = layer_answers(model, pairs, answers)  # issue 24: every layer's answers
        gold = s["target"]
        records.append(DocRecord(
            doc_id=s["doc_id"], prompt=context, prompt_token_ids=ctx_ids, output_text=s["arguments"][pred][1],
            output_token_ids=[pairs[pred][1][0]], prediction=pred, references=_plain(gold if isinstance(gold, list) else [gold]),
            stats=sc.stats, hidden=sc.hidden, embeddings=sc.embeddings,
            extra={"lm_eval": {m: _plain(s[m]) for m in s["metrics"]}, "loglik": _plain(lls),
                   "choices": [c for _, c in s["arguments"]], LAYER_LOGLIK_KEY: _plain(by_layer), GREEDY_KEY: greedy},
        ))
    return records


def _analyse_loglikelihood(model, lm, samples: list[dict], keep_hidden: bool) -> list[DocRecord]:
    """``loglikelihood`` tasks (LAMBADA-style: one context, one continuation per document).

    The continuation's tokens, teacher-forced after the context with lm-eval's own token ids, are the
    "output" tokens: the oracle and the gates see their per-layer statistics. Every layer's
    (log-likelihood, ``is_greedy``) of the continuation goes to ``extra`` (row L−1: lm-eval's answer).

    Raises:
        EEBenchError: for a document with more than one request (score such tasks as multiple_choice).
    """
    records = []
    for s in samples:
        if len(s["arguments"]) != 1:
            raise EEBenchError(f"document {s['doc_id']} has {len(s['arguments'])} loglikelihood requests; "
                               f"ee-bench analyses one (context, continuation) per document.")
        context, cont = s["arguments"][0][:2]
        ctx_ids, cont_ids = request_ids(lm, context, cont)
        if len(ctx_ids) + len(cont_ids) > lm.max_length + 1:
            raise EEBenchError(f"document {s['doc_id']} has {len(ctx_ids) + len(cont_ids)} tokens, more than the "
                               f"model's context ({lm.max_length}); lm-eval would cut its left end, ee-bench does not yet.")
        answer = tuple(s["resps"][0][0])
        an = model.analyse_outputs([ctx_ids], [cont_ids], keep_hidden=keep_hidden)[0]
        by_layer, greedy = layer_answers(model, [(ctx_ids, cont_ids)], [answer])
        records.append(DocRecord(
            doc_id=s["doc_id"], prompt=context, prompt_token_ids=ctx_ids, output_text=cont,
            output_token_ids=cont_ids, prediction=_plain(list(answer)), references=_plain([s["target"]]),
            stats=an.stats, hidden=an.hidden, embeddings=an.embeddings,
            extra={"lm_eval": {m: _plain(s[m]) for m in s["metrics"]},
                   LAYER_LOGLIK_KEY: [row[0] for row in by_layer], GREEDY_KEY: [row[0] for row in greedy]},
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


def evaluate_lm_eval_task(model, task: LmEvalTask, gate, thresholds: list[float], chosen: float, options, *,
                          threshold_swept: bool = True):
    """:func:`ee_bench.evaluation.evaluate_task` for a task lm-eval builds: stage 1 is
    :func:`run_lm_eval_task` (lm-eval's evaluator, ee-bench's per-layer pass), stage 2 the oracle and gate
    sweep of :func:`~ee_bench.exits.summary.summarise_exits` with lm-eval's scores; no measured stage.

    Args:
        model: the loaded causal wrapper. task: the built :class:`LmEvalTask`. gate, thresholds, chosen,
            threshold_swept: as for ``evaluate_task``. options: its ``EvalOptions`` (limit, batch size,
            progress; single process only).

    Returns:
        :class:`~ee_bench.evaluation.TaskResult`.

    Raises:
        EEBenchError: in a multi-process run, or for what :func:`run_lm_eval_task` refuses.
    """
    import sys
    import time

    from tqdm import tqdm

    from ee_bench.evaluation import Scores, TaskResult
    from ee_bench.exits.gates import gate_name
    from ee_bench.exits.summary import summarise_exits

    if options.dist.world_size > 1:
        raise EEBenchError(f"lm-eval task {task.task} runs in one process; launch without torchrun.")
    t_run = time.perf_counter()
    with tqdm(total=len(task.docs), desc=task.task, disable=not options.progress, file=sys.stderr) as bar:
        run = run_lm_eval_task(model, task, batch_size=options.batch_size, limit=options.limit,
                               seed=task.fewshot_seed, keep_hidden=gate.needs_hidden, progress=bar)
    run_s = time.perf_counter() - t_run
    t_an = time.perf_counter()
    by_layer = lm_eval_metrics_by_layer(task, run.records, run.metrics, options.seed)  # issue 24
    scores = Scores(summarise_exits(run.records, gate, thresholds, chosen), run.metrics, run.metric_details, None,
                    by_layer=by_layer)
    return TaskResult(
        spec=task, model_info=model.describe(), gate=gate_name(gate), threshold=chosen,
        threshold_swept=threshold_swept, records=tuple(run.records), scores=scores, measured_speedup=None,
        early_exit_samples=None, n_docs_total=task.total, world_size=1,
        timings={"run_s": run_s, "analysis_and_metrics_s": time.perf_counter() - t_an, "early_exit_and_speedup_s": 0.0},
    )
