"""``ee-hf``: an lm-eval model that runs ee-bench's early exit inside lm-evaluation-harness.

It is lm-eval's own ``hf`` model (:class:`lm_eval.models.huggingface.HFLM`: the same tokenisation,
truncation, chat templates, stop-sequence handling and request ordering) with two methods replaced:

- **generate_until** decodes with the gate: ``_model_generate`` runs ee-bench's early-exit loop
  (:class:`~ee_bench.decoding.early_exit.EarlyExitDecoder`, greedy, the chosen KV strategy) instead of
  ``model.generate``; lm-eval then cuts the text at the stop sequences as it does for ``hf``.
- **loglikelihood** (and ``loglikelihood_rolling``, which lm-eval builds on it) scores each
  continuation token with its *exit layer's distribution*. Definition: the context and continuation
  run through every block once (teacher-forced, exact keys/values, as in the paper's §4 analysis);
  at each position p that predicts a continuation token, the gate is evaluated layer by layer on that
  position's statistics (top-1 probability, entropy, top-1 streak, hidden states — exactly
  :func:`~ee_bench.exits.decide.gate_exit_layers`), giving an exit layer e_p (L−1 if it never fires);
  the token's log-probability is ``log_softmax(head(final_norm(h_p^{e_p})))[token]`` and "greedy"
  means every token is the argmax of its exit layer's distribution. Where e_p = L−1 the model's own
  logits are used, so a gate that never fires gives exactly the ``hf`` model's numbers.

model_args (lm-eval's ``k=v,k2=v2``):

- ``pretrained``: an ee-bench model card (``ee-bench ls models``, e.g. ``smollm2-135m-ee``), a local
  checkpoint folder, or a hub id (loaded through ee-bench's ``hf-causal`` wrapper);
- ``gate_file``: the probe file of ``gate=classifier`` (``ee-bench fit-gate``), as ``--gate-file``;
- ``threshold_warmup`` (tokens, default 0): generation's threshold warm-up, as ``--threshold-warmup``
  (:func:`~ee_bench.exits.decide.warmed_threshold`); like ``min_prefix`` it applies to ``generate_until``,
  not to the teacher-forced log-likelihoods;
- ``gate`` (default ``confidence``; any registered gate, plug-ins included), ``threshold`` (τ;
  default the gate's ``default_threshold``), ``kv`` (``copy`` | ``recompute`` | ``deferred`` | plug-ins;
  default ``recompute``), ``min_prefix`` (generated tokens that never exit; default 4, ee-bench's one default
  :data:`~ee_bench.exits.decide.DEFAULT_MIN_PREFIX`);
- ``measure_speedup`` (default true): decode every generation batch at full depth too, with the same
  block loop, to measure the speed-up (doubles generation time);
- ``exit_stats_path``: a JSON file rewritten with the exit statistics after every request batch;
- ``dtype`` (ee-bench's: auto | float32 | bfloat16 | float16), ``device``, ``batch_size``,
  ``max_length`` and the other :class:`HFLM` options (``add_bos_token``, ``truncation``, …).

Sampling is not supported (the early-exit loop is greedy): ``do_sample=true`` or a temperature > 0
raises an error. The card's ``chat_template`` flag is not used: lm-eval's ``--apply_chat_template``
decides. The card's stop tokens do end generation (they join the EOS set).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from ee_bench.errors import EEBenchError
from ee_bench.exits.decide import DEFAULT_MIN_PREFIX, check_min_prefix, check_threshold_warmup, gate_exit_layers
from ee_bench.exits.kv import KV_STRATEGIES
from ee_bench.lm_eval.stats import ExitStatsRecorder
from ee_bench.models.contracts import CausalExitModel
from ee_bench.models.unembed import reduce_logits

logger = logging.getLogger(__name__)


class SamplingNotSupportedError(EEBenchError):
    """A task asked ``ee-hf`` to sample; the early-exit loop decodes greedily."""


def card_for(pretrained: str):
    """The ee-bench model card for ``pretrained``: a shipped card, a local checkpoint folder, or else
    a hub id (``org/name``) loaded by the ``hf-causal`` wrapper under that name.

    Raises:
        UnknownNameError: for a name that is none of these (the message lists the cards).
    """
    from dataclasses import replace

    from ee_bench.errors import UnknownNameError
    from ee_bench.models.cards import resolve_card

    try:
        return resolve_card(pretrained)
    except UnknownNameError:
        if "/" not in pretrained:
            raise
    return replace(resolve_card("hf-causal", f"pretrained={pretrained}"), name=pretrained)


@register_model("ee-hf")
class EarlyExitLM(HFLM):
    """lm-eval's ``hf`` model with early-exit generation and exit-layer log-likelihoods.

    Args:
        pretrained: ee-bench card name, local checkpoint folder or hub id.
        gate: registered gate name. threshold: τ (None: the gate's default). kv: KV strategy name.
        min_prefix: generated tokens 0 … min_prefix−1 never exit. gate_file: the probes of
            ``gate=classifier``. threshold_warmup: W, tokens (0: a constant τ), for generation.
        measure_speedup: also decode each generation batch at full depth and time both.
        exit_stats_path: JSON file for the exit statistics (rewritten after each batch), or None.
        device, dtype: where and in what precision ee-bench loads the model.
        **kwargs: passed on to :class:`HFLM` (batch_size, max_length, add_bos_token, truncation, …).

    Raises:
        UnknownNameError: unknown card, gate or KV strategy. ThresholdError: τ out of range.
        EEBenchError: a checkpoint that cannot be loaded.
    """

    def __init__(self, pretrained: str, gate: str = "confidence", threshold: float | None = None,
                 kv: str = "recompute", min_prefix: int = DEFAULT_MIN_PREFIX, measure_speedup: bool = True,
                 exit_stats_path: str | None = None, device: str | None = None, dtype: str | None = None,
                 gate_file: str | None = None, threshold_warmup: float = 0.0, **kwargs: Any) -> None:
        from ee_bench.exits.classifier_gate import gate_from_options
        from ee_bench.models.cards import load_model

        gate_obj = gate_from_options(str(gate), gate_file, options=("ee-hf gate=", "gate_file="))
        self.gate_file = None if gate_file is None else str(gate_file)
        KV_STRATEGIES.get(str(kv))
        check_min_prefix(int(min_prefix), "ee-hf min_prefix")
        try:
            warmup = float(threshold_warmup)
        except ValueError:
            raise EEBenchError(f"ee-hf threshold_warmup {threshold_warmup!r} is not a number of tokens; "
                               f"give e.g. threshold_warmup=4.") from None
        self.threshold_warmup = check_threshold_warmup(warmup, gate_obj, "ee-hf threshold_warmup")
        try:  # sec: τ is checked before the device and the model (a bad τ must be blamed, not the device)
            gate_obj.check_threshold(gate_obj.default_threshold if threshold is None else float(threshold))
        except ValueError:
            raise EEBenchError(f"ee-hf threshold {threshold!r} is not a number; give e.g. threshold=0.9.") from None
        card = card_for(str(pretrained))
        wrapper = load_model(card, device=device, dtype=dtype)
        if not isinstance(wrapper, CausalExitModel):
            raise EEBenchError(f"ee-hf needs a causal LM; {card.name} is a {wrapper.kind} model. "
                               f"Pass a decoder model card (ee-bench ls models).")
        self.wrapper = wrapper
        if hasattr(gate_obj, "check_model"):  # probes fitted on another model's depth or width
            gate_obj.check_model(wrapper.n_layers, wrapper.describe()["hidden_size"], card.name)
        self.gate_name, self.gate = str(gate), gate_obj
        self.threshold = gate_obj.check_threshold(gate_obj.default_threshold if threshold is None else float(threshold),
                                                  wrapper.n_layers)
        self.kv = str(kv)
        self.min_prefix = int(min_prefix)
        self._decoder = None  # built on first generate_until (it checks the architecture)
        self._warmed_up = False
        super().__init__(pretrained=wrapper.model, tokenizer=wrapper.tokenizer, **kwargs)
        self.card_name = card.name
        self.stats = ExitStatsRecorder(
            {"model": card.name, "gate": self.gate_name, "threshold": self.threshold, "kv": self.kv,
             "min_prefix": self.min_prefix, "threshold_warmup": self.threshold_warmup, "gate_file": self.gate_file},
            wrapper.n_layers, bool(measure_speedup), exit_stats_path)

    @property
    def n_layers(self) -> int:
        return self.wrapper.n_layers

    # ------------------------------------------------------------------ log-likelihood
    @torch.no_grad()
    def exit_logits(self, input_ids: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the exit layer's distribution at given positions of one sequence.

        Args:
            input_ids: (1, T) int64, one sequence without padding.
            positions: (n,) int64 positions whose next-token distribution is wanted.

        Returns:
            logits: (n, V) in the model's dtype: ``head(final_norm(h^{e_p}))``, or the model's own
                logits where e_p = L−1. exit_layers: (n,) int64 0-based exit layers e_p.
        """
        L = self.n_layers
        rows = torch.zeros_like(positions)
        with self.wrapper.capture_blocks((rows.to(self.device), positions.to(self.device)), keep_hidden=True) as store:
            logits = self.model(input_ids).logits  # (1, T, V), the same call as HFLM._model_call
        final = logits[0, positions.to(logits.device)]  # (n, V)
        an = self.wrapper.captured_layers(store, reduce_logits(final))  # (L, n) stats, (L, n, H) hidden
        hidden = an.hidden
        exits = gate_exit_layers(self.gate, an.stats, self.threshold, hidden, an.embeddings)  # (n,)
        early = (exits < L - 1).nonzero().squeeze(1)
        if early.numel():
            h = hidden[exits[early], early].to(device=self.device, dtype=final.dtype)  # (k, H)
            final = final.clone()
            final[early.to(final.device)] = self.wrapper.unembed(h).to(final.dtype)
        return final, exits

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        """Score (cache key, context ids, continuation ids) requests with exit-layer distributions.

        Truncation is HFLM's: ``(context + continuation)[-(max_length + 1):][:-1]``. Requests run one
        at a time (no padding), in their given order.

        Returns:
            One (sum of continuation log-probabilities in nats, all tokens greedy) per request.
        """
        res = []
        for cache_key, context_enc, continuation_enc in tqdm(requests, disable=disable_tqdm or self.rank != 0,
                                                             desc="ee-hf loglikelihood"):
            if not context_enc or not continuation_enc:
                raise EEBenchError("ee-hf got an empty context or continuation; lm-eval should have added a prefix token.")
            inp = (context_enc + continuation_enc)[-(self.max_length + 1):][:-1]
            contlen = len(continuation_enc)
            positions = torch.arange(len(inp) - contlen, len(inp))
            logits, exits = self.exit_logits(torch.tensor([inp], dtype=torch.long, device=self.device), positions)
            logp = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)  # (n, V)
            cont = torch.tensor(continuation_enc, dtype=torch.long, device=logp.device)
            greedy = bool((logp.argmax(dim=-1) == cont).all())
            answer = (float(logp.gather(1, cont.unsqueeze(1)).sum()), greedy)
            res.append(answer)
            self.stats.loglikelihood.n_requests += 1
            self.stats.loglikelihood.add(exits.tolist())
            if cache_key is not None:
                self.cache_hook.add_partial("loglikelihood", cache_key, answer)
        self.stats.flush()
        return res

    # ------------------------------------------------------------------ generation
    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs) -> torch.Tensor:
        """Early-exit greedy decoding of a left-padded batch; returns (B, P + G) ids like ``generate``.

        Args:
            context: (B, P) int64 left-padded prompts. max_length: P + max_gen_toks.
            stop: stop strings (lm-eval adds the EOS text). generation_kwargs: ``attention_mask``
                (B, P); ``do_sample`` / ``temperature`` must ask for greedy decoding.

        Raises:
            SamplingNotSupportedError: for ``do_sample=True`` or a temperature > 0.
        """
        from ee_bench.decoding.early_exit import EarlyExitDecoder

        mask = generation_kwargs.pop("attention_mask", None)
        temperature = generation_kwargs.pop("temperature", 0.0) or 0.0
        if generation_kwargs.pop("do_sample", False) or float(temperature) > 0.0:
            raise SamplingNotSupportedError(
                "ee-hf decodes greedily (the early-exit loop has no sampling); the task or --gen_kwargs asks for "
                "sampling (do_sample / temperature > 0). Drop it, or override the task's with "
                "--gen_kwargs do_sample=false,temperature=0.")
        ignored = sorted(k for k in generation_kwargs if k not in ("top_p", "top_k", "num_beams"))
        if ignored:
            logger.warning("ee-hf ignores generation kwargs %s (greedy early-exit decoding)", ", ".join(ignored))
        if self._decoder is None:
            self._decoder = EarlyExitDecoder(self.wrapper)
        keep = torch.ones_like(context, dtype=torch.bool) if mask is None else mask.bool()
        prompts = [row[k].tolist() for row, k in zip(context, keep)]
        budget = int(max_length) - context.shape[1]
        args = dict(gate=self.gate, threshold=self.threshold, kv=self.kv, until=list(stop), max_gen_toks=budget,
                    min_prefix=self.min_prefix, threshold_warmup=self.threshold_warmup)
        tally = self.stats.generate_until
        full = None
        if self.stats.measure_speedup:
            if not self._warmed_up:  # one untimed run of each mode
                self._decode(prompts, args, full_depth=True)
                self._decode(prompts, args, full_depth=False)
                self._warmed_up = True
            full, full_s = self._decode(prompts, args, full_depth=True)
            tally.full_wall_s += full_s
            tally.full_tokens += full.counts.tokens
        result, ee_s = self._decode(prompts, args, full_depth=False)
        tally.ee_wall_s += ee_s
        tally.ee_tokens += result.counts.tokens
        tally.n_requests += len(prompts)
        for i, trace in enumerate(result.traces):
            tally.add(list(trace.exit_layers))
            if full is not None:
                tally.same_output += int(trace.token_ids == full.traces[i].token_ids)
        self.stats.flush()
        pad = self.tokenizer.pad_token_id
        width = max((len(t.token_ids) for t in result.traces), default=0)
        out = torch.full((context.shape[0], context.shape[1] + width), pad, dtype=context.dtype, device=context.device)
        out[:, : context.shape[1]] = context
        for i, trace in enumerate(result.traces):
            out[i, context.shape[1]: context.shape[1] + len(trace.token_ids)] = torch.tensor(trace.token_ids)
        return out

    def _decode(self, prompts: list[list[int]], args: dict[str, Any], full_depth: bool):
        """One timed decoding call: (DecodeResult, wall seconds)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        if full_depth:
            result = self._decoder.decode(prompts, None, None, args["kv"], args["until"], args["max_gen_toks"],
                                          exit_layers=())
        else:
            result = self._decoder.decode(prompts, args["gate"], args["threshold"], args["kv"], args["until"],
                                          args["max_gen_toks"], min_prefix=args["min_prefix"],
                                          threshold_warmup=args["threshold_warmup"])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return result, time.perf_counter() - t0

    def get_model_info(self) -> dict:
        """lm-eval's model info, plus the ee-bench card and the early-exit setting."""
        try:
            info = super().get_model_info()
        except Exception:  # noqa: BLE001 - HFLM expects a hub id here; ours may be a card name
            info = {}
        return {**info, "ee_bench": {"model": self.card_name, "gate": self.gate_name, "threshold": self.threshold,
                                     "kv": self.kv, "min_prefix": self.min_prefix, "n_layers": self.n_layers,
                                     "threshold_warmup": self.threshold_warmup, "gate_file": self.gate_file}}
