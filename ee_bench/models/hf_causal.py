"""Hugging Face causal-LM wrapper with per-layer decoding (paper §3.1, §4).

Every block's output ``h^ℓ`` is decoded by the model's own final norm and LM head
(:class:`~ee_bench.models.unembed.Unembed`) inside one forward pass: forward hooks on the blocks
reduce each layer to (top-1, probability, entropy) for the requested positions as the forward pass
goes, so no (L × T × V) tensor is ever built. The final layer's statistics come from the model's
own logits, so row L−1 reproduces ``model(...).logits`` exactly.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ee_bench.errors import EEBenchError
from ee_bench.models.arch import DecoderParts, locate_decoder_parts
from ee_bench.models.base import load_checkpoint, pick_device, pick_dtype
from ee_bench.models.capture import (
    LayerAnalysis,
    assemble_analysis,
    capture_block_outputs,
    empty_analyses,
    reduce_selected_logits,
    split_analysis,
)
from ee_bench.models.contracts import CausalExitModel
from ee_bench.models.gguf_cache import load_gguf_cached
from ee_bench.models.packaging import gguf_file
from ee_bench.models.unembed import Unembed

logger = logging.getLogger(__name__)


def truncate_output(ids: list[int], until: tuple[str, ...], eos_token_ids, decode) -> tuple[list[int], str]:
    """Cut generated ids after the first EOS or the token that completes a stop string.

    Args:
        ids: generated token ids. until: stop strings. eos_token_ids: ids that end generation.
        decode: token ids → text (special tokens skipped).

    Returns:
        (kept token ids, including the terminating token; output text with the stop string
        and anything after it removed).
    """
    kept: list[int] = []
    for tid in ids:
        kept.append(tid)
        if tid in eos_token_ids:
            break
        text = decode(kept)
        if any(u in text for u in until):
            break
    text = decode(kept)
    cut = min((text.index(u) for u in until if u in text), default=len(text))
    return kept, text[:cut].strip()


def until_criteria(prompt_width: int, until: tuple[str, ...], decode):
    """A ``StoppingCriteria`` that ends each row once its decoded continuation (the ids after the first
    ``prompt_width``) contains a stop string (transformers' own ``stop_strings`` needs a BPE-style
    vocabulary; this works for any)."""
    from transformers import StoppingCriteria

    class UntilCriteria(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):  # (B, T) -> (B,) bool
            done = [any(u in decode(row[prompt_width:].tolist()) for u in until) for row in input_ids]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return UntilCriteria()


class HFCausalLM(CausalExitModel):
    """A ``transformers`` causal LM with per-layer decoding.

    Args:
        model: a loaded ``*ForCausalLM``.
        tokenizer: its tokenizer.
        name: name recorded in results.
        chat_template: wrap prompts in the tokenizer's chat template.
        stop_tokens: extra tokens that end generation (added to the EOS set).

    Raises:
        ModelStructureError: if the model's blocks / final norm / head cannot be located.
    """

    def __init__(self, model, tokenizer, name: str, chat_template: bool = False, stop_tokens: tuple[str, ...] = ()):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.chat_template = chat_template
        self.parts: DecoderParts = locate_decoder_parts(model)
        self.n_layers = len(self.parts.layers)
        self.device = next(model.parameters()).device
        softcap = getattr(model.config, "final_logit_softcapping", None)
        self.unembed = Unembed(self.parts.final_norm, self.parts.head, softcap=softcap)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        eos = set()
        for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
            if source is not None:
                eos.update(source if isinstance(source, list) else [source])
        for tok in stop_tokens:
            tid = tokenizer.convert_tokens_to_ids(tok)
            if tid is None or tid == tokenizer.unk_token_id:
                raise EEBenchError(f"stop token {tok!r} is not in {name}'s vocabulary; fix the card's stop_tokens")
            eos.add(int(tid))
        self.eos_token_ids: tuple[int, ...] = tuple(sorted(eos))

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_card(cls, card, device: str | None = None, dtype: str | None = None) -> HFCausalLM:
        """Load the card's checkpoint (hub id, local folder, or a GGUF file inside a package).

        A GGUF checkpoint goes through the dequantised-weights cache
        (:func:`~ee_bench.models.gguf_cache.load_gguf_cached`); ``model_args`` ``gguf_cache=false``
        loads the GGUF file directly every time.

        Raises:
            EEBenchError: if the checkpoint cannot be found or loaded, or a stop token is not in
                the vocabulary.
        """
        from transformers import AutoModelForCausalLM  # deferred: transformers' Auto classes import slowly

        kwargs: dict[str, Any] = dict(card.model_args)
        use_cache = kwargs.pop("gguf_cache", True)
        if not isinstance(use_cache, bool):
            raise EEBenchError(f"model_args gguf_cache must be true or false, got {use_cache!r}")
        if not card.gguf:
            model, tokenizer, dev = load_checkpoint(card, AutoModelForCausalLM, device, dtype, kwargs)
        else:
            dev = pick_device(device)
            source = str(gguf_file(card.gguf))
            try:
                model, tokenizer, info = load_gguf_cached(Path(source), pick_dtype(dtype or card.dtype, dev),
                                                          use_cache=use_cache, **kwargs)
            except (OSError, TypeError, ValueError) as exc:
                raise EEBenchError(f"Could not load the GGUF checkpoint {source!r} for model {card.name}: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0]} Reinstall the package "
                                   f"that ships it (make install) or check --model_args.") from None
            logger.info("%s: %s", card.name, info)
            if "device_map" not in kwargs:
                model = model.to(dev)
        return cls(model, tokenizer, card.name, chat_template=card.chat_template, stop_tokens=card.stop_tokens)

    def describe(self) -> dict[str, Any]:
        cfg = self.model.config
        text_cfg = cfg.get_text_config()  # multimodal configs (e.g. gemma3) keep sizes in a text config
        return {
            "name": self.name, "model_type": cfg.model_type, "n_layers": self.n_layers,
            "hidden_size": text_cfg.hidden_size, "vocab_size": text_cfg.vocab_size, "dtype": str(self.model.dtype),
            "device": str(self.device), "chat_template": self.chat_template, "eos_token_ids": list(self.eos_token_ids),
        }

    # ------------------------------------------------------------------ prompts and generation
    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a prompt, through the chat template when the card asks for it."""
        if self.chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            )
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(text)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def left_pad(self, rows: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Left-pad token-id rows with the pad token: (B, W) int64 ids and (B, W) 0/1 attention mask
        on the model's device (W = the longest row)."""
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    def truncate_output(self, ids: list[int], until: tuple[str, ...]) -> tuple[list[int], str]:
        """:func:`truncate_output` with this model's EOS set and tokenizer."""
        return truncate_output(ids, until, self.eos_token_ids, self.decode)

    def _until_criteria(self, prompt_width: int, until: tuple[str, ...]):
        return until_criteria(prompt_width, until, self.decode)

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], until: tuple[str, ...], max_gen_toks: int,
                 **generate_kwargs) -> list[tuple[list[int], str]]:
        """Greedy decoding from the final layer (``model.generate``, left-padded batch).

        Args:
            prompts: B prompt token-id lists.
            until: stop strings; max_gen_toks: token budget.
            generate_kwargs: passed on to ``model.generate`` (e.g. ``assistant_early_exit=E``, batch 1).

        Returns:
            B (output token ids, output text) pairs, truncated by :meth:`truncate_output`.
        """
        from transformers import StoppingCriteriaList

        ids, mask = self.left_pad(prompts)
        criteria = StoppingCriteriaList([self._until_criteria(ids.shape[1], until)] if until else [])
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_gen_toks,
            eos_token_id=list(self.eos_token_ids), pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=criteria, top_p=None, top_k=None, temperature=None, **generate_kwargs,
        )
        gen = out[:, ids.shape[1]:].tolist()
        return [self.truncate_output(row, until) for row in gen]

    # ------------------------------------------------------------------ per-layer analysis
    def capture_blocks(self, select: tuple[Tensor, Tensor], keep_hidden: bool) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """Forward hooks that reduce each block's output at the selected positions
        (:func:`~ee_bench.models.capture.capture_block_outputs` with this model's blocks and ``Unembed``).

        Args:
            select: (batch index (N,), position index (N,)) of the positions to decode.
            keep_hidden: also keep the (N, H) block outputs and block-0 inputs.

        Returns:
            A context manager yielding the dict filled during the forward pass: ``stats[ℓ]`` for
            ℓ < L−1, and ``hidden[ℓ]`` / ``embeddings`` when ``keep_hidden``.
        """
        return capture_block_outputs(self.parts.layers, select, keep_hidden, self.unembed.reduce)

    @torch.no_grad()
    def analyse_positions(self, input_ids: Tensor, attention_mask: Tensor, select: tuple[Tensor, Tensor],
                          keep_hidden: bool = False) -> LayerAnalysis:
        """Per-layer next-token statistics at selected positions, in one forward pass.

        Layers 0..L−2 are reduced by forward hooks as the pass goes (:meth:`capture_blocks`, logits
        in tiles of ``unembed.tile_elems``); row L−1 is reduced from the model's own logits, a few
        rows at a time. Position ids follow the attention mask, so a left-padded row gets the same
        positions (and statistics) as when it is run alone, as in ``generate``.

        Args:
            input_ids: (B, T) int64. attention_mask: (B, T) 0/1 (left padding).
            select: (batch index (N,), position index (N,)).
            keep_hidden: also return hidden states (for gates that read them).

        Returns:
            :class:`LayerAnalysis` with (L, N) stats on the CPU; row L−1 is reduced from the model's logits.
        """
        rows, cols = (s.to(self.device) for s in select)
        width = input_ids.shape[1]
        keep = int(width - cols.min().item())  # logits only for the last `keep` positions
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)  # (B, T), as generate does
        with self.capture_blocks((rows, cols), keep_hidden) as store:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=False, logits_to_keep=keep)
        logits, cols_kept = out.logits, cols - (width - keep)  # (B, keep, V)
        del out
        final = reduce_selected_logits(logits, rows, cols_kept, self.unembed.tile_elems)
        del logits
        return self.captured_layers(store, final)

    def captured_layers(self, store: dict[str, Any], final: tuple[Tensor, Tensor, Tensor]) -> LayerAnalysis:
        """Assemble what :meth:`capture_blocks` caught into a :class:`LayerAnalysis` on the CPU
        (:func:`~ee_bench.models.capture.assemble_analysis`).

        Args:
            store: the dict :meth:`capture_blocks` filled (N selected positions).
            final: (top1, top1_prob, entropy), each (N,), of layer L−1, reduced from the model's own logits.

        Returns:
            (L, N) stats; (L, N, H) hidden states and (N, H) embeddings when they were kept.
        """
        return assemble_analysis(store, final, self.n_layers)

    def analyse_outputs(self, prompts: list[list[int]], outputs: list[list[int]], keep_hidden: bool = False) -> list[LayerAnalysis]:
        """Per-layer statistics of every generated token, teacher-forced in one forward pass.

        Token i of output b is predicted at position (len(prompt_b) + i − 1) of prompt_b + output_b.

        Returns:
            B analyses; analysis b has N = len(outputs[b]) columns (0 for an empty output).
        """
        rows_in = [p + o[:-1] for p, o in zip(prompts, outputs)]
        ids, mask = self.left_pad(rows_in)
        width = ids.shape[1]
        b_idx, t_idx, sizes = [], [], []
        for b, o in enumerate(outputs):
            n = len(o)
            sizes.append(n)
            b_idx += [b] * n
            t_idx += list(range(width - n, width))
        if not b_idx:
            return empty_analyses(self.n_layers, len(outputs))
        res = self.analyse_positions(ids, mask, (torch.tensor(b_idx), torch.tensor(t_idx)), keep_hidden)
        return split_analysis(res, sizes)
