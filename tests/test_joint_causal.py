"""Joint optimisation for causal LMs (tiny random decoders, offline): the loss by hand, layer sampling,
training lowers every layer's loss, LoRA merge, the saved card in other commands, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import build_tiny_gpt2, build_tiny_llama, save_tiny_llama, word_tokenizer, write_tiny_task

from ee_bench.cli import main
from ee_bench.training.causal_joint import IGNORE_INDEX, CausalJointTrainer, causal_distill_losses, causal_layer_losses
from ee_bench.training.joint import (
    layer_weights,
    sample_early_layers,
    sampled_layer_weights,
    weighted_sum,
)


def _batch():
    """Two right-padded rows: prompt tokens masked with −100, response tokens labelled, padding −100."""
    ids = torch.tensor([[1, 5, 9, 14, 20, 33, 2], [1, 7, 8, 40, 41, 2, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0]])
    labels = torch.tensor([[-100, -100, -100, -100, 20, 33, 2], [-100, -100, -100, 40, 41, 2, -100]])
    return ids, mask, labels


def _hand_layer_ces(model, ids, mask, labels, targets_of=None) -> list[float]:
    """Per-layer CE by an explicit loop: output_hidden_states → final norm → head → −log softmax.

    ``targets_of(layer, b, t, last_logits)`` may replace the label of position t (joint-distill)."""
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    base = model.transformer if hasattr(model, "transformer") else model.model
    norm = base.ln_f if hasattr(base, "ln_f") else base.norm
    L = len(out.hidden_states) - 1
    ces = []
    for layer in range(L):
        # hidden_states[L] has already gone through the final norm: the last layer is out.logits
        logits = out.logits if layer == L - 1 else model.lm_head(norm(out.hidden_states[layer + 1]))
        total, n = 0.0, 0
        for b in range(ids.shape[0]):
            for t in range(ids.shape[1] - 1):
                y = int(labels[b, t + 1])
                if y == IGNORE_INDEX:
                    continue
                if targets_of is not None:
                    y = targets_of(layer, L, out.logits[b, t].tolist(), y)
                z = logits[b, t].tolist()
                total += -(z[y] - math.log(sum(math.exp(v) for v in z)))
                n += 1
        ces.append(total / n)
    return ces


@pytest.mark.parametrize("build", [build_tiny_llama, build_tiny_gpt2])
def test_joint_loss_equals_hand_weighted_sum(build):
    model = build(seed=3)
    ids, mask, labels = _batch()
    ces = _hand_layer_ces(model, ids, mask, labels)
    L = len(ces)
    layers = list(range(L))
    for tile in (1 << 23, 96 * 2):  # one chunk, and chunks of 2 rows (5 + 3 response tokens)
        with torch.no_grad():
            got = causal_layer_losses(model, ids, mask, labels, layers, tile_elems=tile)
        torch.testing.assert_close(got, torch.tensor(ces), rtol=0, atol=1e-4)
    increasing = [(i + 1) / (L * (L + 1) / 2) for i in range(L)]  # w_i = i / Σ_j j, i = 1..L
    expected = sum(w * c for w, c in zip(increasing, ces))
    joint = weighted_sum(causal_layer_losses(model, ids, mask, labels, layers), layer_weights(L, "increasing"))
    assert float(joint.detach()) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("build", [build_tiny_llama, build_tiny_gpt2])
def test_joint_distill_targets_the_last_layers_top1(build):
    """joint-distill: early layers' CE towards the last layer's argmax, the last layer's towards the label."""
    model = build(seed=5)
    ids, mask, labels = _batch()

    def target(layer, n_layers, last_logits, label):
        if layer == n_layers - 1:
            return label
        return max(range(len(last_logits)), key=last_logits.__getitem__)  # the last layer's top-1, by a loop

    ces = _hand_layer_ces(model, ids, mask, labels, targets_of=target)
    layers = list(range(len(ces)))
    hooks_before = sum(len(m._forward_hooks) for m in model.modules())
    for tile in (1 << 23, 96 * 2):
        with torch.no_grad():
            got = causal_distill_losses(model, ids, mask, labels, layers, tile_elems=tile)
        torch.testing.assert_close(got, torch.tensor(ces), rtol=0, atol=1e-4)
    reference = _hand_layer_ces(model, ids, mask, labels)
    assert ces[-1] == pytest.approx(reference[-1], abs=1e-6)  # the teacher keeps the reference target
    assert ces[0] != pytest.approx(reference[0], abs=1e-3)  # a random model's top-1 is not the label
    with pytest.raises(Exception, match="needs the last block"):
        causal_distill_losses(model, ids, mask, labels, [0])
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks_before  # ours were removed, also after the error


def test_joint_distill_sampling_keeps_the_teacher():
    """Layer sampling under joint-distill always includes the last block, as under joint."""
    trainer = CausalJointTrainer.__new__(CausalJointTrainer)
    trainer.objective, trainer.n_layers, trainer.sample_layers, trainer.layer_seed = "joint-distill", 4, 2, 0
    trainer.weights = layer_weights(4, "uniform")
    layers, weights = trainer.step_layers(3)
    assert layers[-1] == 3 and len(layers) == 3
    assert float(weights.sum()) == pytest.approx(1 / 4 + 2 * (1 / 4) * 3 / 2)  # v_i = w_i (L−1)/k


def test_chunked_checkpointed_gradient_equals_unchunked():
    model = build_tiny_llama(seed=1).train()
    ids, mask, labels = _batch()
    grads = []
    for tile in (1 << 23, 96):  # whole layer at once vs one row per chunk (checkpointed)
        model.zero_grad()
        loss = weighted_sum(causal_layer_losses(model, ids, mask, labels, [0, 2, 3], tile_elems=tile),
                            torch.tensor([0.2, 0.3, 0.5]))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    # equal up to float32 summation order (per-chunk sums vs one sum): ~1e-6 of the largest gradient
    scale = float(grads[0].abs().max())
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-6 * max(scale, 1.0) * 10)


def test_layer_sampling_follows_the_documented_generator():
    # documented: first k of torch.randperm(L−1, generator=torch.Generator().manual_seed(seed + step)), sorted, + [L−1]
    for seed, step in ((0, 0), (7, 3), (11, 250)):
        perm = torch.randperm(29, generator=torch.Generator().manual_seed(seed + step)).tolist()
        assert sample_early_layers(30, 4, seed, step) == sorted(perm[:4]) + [29]
    assert sample_early_layers(4, 3, 5, 9) == [0, 1, 2, 3]
    draws = {tuple(sample_early_layers(30, 4, 0, s)) for s in range(20)}
    assert len(draws) > 1  # a new draw every step
    with pytest.raises(Exception, match="between 1 and L−1 = 3"):
        sample_early_layers(4, 4, 0, 0)


def test_sampled_weights_are_an_unbiased_estimate():
    w = layer_weights(4, "uniform")  # 0.25 each
    torch.testing.assert_close(sampled_layer_weights(w, [1, 3]), torch.tensor([0.75, 0.25]))
    ces = torch.tensor([3.0, 2.0, 1.5, 1.0])
    w = layer_weights(4, "increasing")  # 0.1, 0.2, 0.3, 0.4
    full = float((w * ces).sum())  # 0.3 + 0.4 + 0.45 + 0.4 = 1.55
    assert full == pytest.approx(1.55)
    subsets = [[0, 1], [0, 2], [1, 2]]  # every choice of k = 2 of the 3 early layers
    mean = sum(float(weighted_sum(ces[s + [3]], sampled_layer_weights(w, s + [3]))) for s in subsets) / 3
    assert mean == pytest.approx(full)


def _toy_data(tmp: Path, n: int = 24) -> Path:
    """Separable toy task: the instruction is one word w_i, the response is w_{i+10}."""
    path = tmp / "train.jsonl"
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"instruction": f"w{i}", "input": "", "output": f"w{(i + 10) % 60}"}) + "\n")
    return path


def _layer_losses_on(folder: Path, data: Path) -> list[float]:
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.training.causal_data import (
        instruction_examples,
        read_instruction_jsonl,
        tokenize_examples,
    )

    wrapper = load_model(resolve_card(str(folder)), device="cpu", dtype="float32")
    ds = tokenize_examples(instruction_examples(wrapper, read_instruction_jsonl(data)), wrapper.tokenizer, 256)
    assert len({len(r) for r in ds["input_ids"]}) == 1  # equal lengths: no padding needed
    t = {k: torch.tensor(ds[k]) for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        return causal_layer_losses(wrapper.model, t["input_ids"], t["attention_mask"], t["labels"],
                                   list(range(wrapper.n_layers))).tolist()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("joint_causal")
    base = save_tiny_llama(tmp / "base")
    data = _toy_data(tmp)
    out = tmp / "tiny-joint"
    assert main(["finetune", "--model", str(base), "--train_file", str(data), "--objective", "joint",
                 "--layer-weights", "increasing", "--max-steps", "40", "--lr", "1e-2", "--batch_size", "8",
                 "--device", "cpu", "--output_dir", str(out)]) == 0
    return tmp, base, data, out


def test_checkpoint_files_get_the_users_umask(trained):
    """safetensors writes through a 0600 temporary file; a saved checkpoint is an ordinary folder."""
    _, _, _, out = trained
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "ee_bench_finetune.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_training_lowers_every_layer_loss(trained):
    _, base, data, out = trained
    before, after = _layer_losses_on(base, data), _layer_losses_on(out, data)
    assert len(before) == 4
    for layer, (b, a) in enumerate(zip(before, after)):
        assert a < b - 0.5, f"layer {layer}: {b:.3f} -> {a:.3f}"
    record = json.loads((out / "ee_bench_finetune.json").read_text())
    assert record["global_steps"] == 40 and record["layer_weights"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    card = (out / "ee_bench_card.yaml").read_text()
    assert "model: hf-causal" in card and "increasing weights" in card


def test_lora_merge_reproduces_the_adapted_logits(tmp_path):
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.training.causal_finetune import CausalFinetuneConfig, add_lora

    model = build_tiny_llama(seed=2)
    peft_model = add_lora(model, CausalFinetuneConfig(model="x", lora=True, lora_r=4, lora_alpha=8))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:  # B starts at 0 (adapter = identity); make the adapter do something
                p.normal_(0, 0.2)
    ids, mask, _ = _batch()
    with torch.no_grad():
        adapted = peft_model(input_ids=ids, attention_mask=mask).logits
        plain = build_tiny_llama(seed=2)(input_ids=ids, attention_mask=mask).logits
    assert (adapted - plain).abs().max() > 1e-2
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    word_tokenizer().save_pretrained(tmp_path / "merged")
    loaded = load_model(resolve_card(str(tmp_path / "merged")), device="cpu", dtype="float32")
    with torch.no_grad():
        got = loaded.model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got, adapted, rtol=1e-4, atol=1e-4)


def test_lora_cli_saves_a_merged_checkpoint(trained):
    from safetensors.torch import load_file

    tmp, base, data, _ = trained
    out = tmp / "tiny-lora"
    assert main(["finetune", "--model", str(base), "--train_file", str(data), "--objective", "joint", "--lora",
                 "--lora-r", "4", "--sample-layers", "2", "--max-steps", "5", "--lr", "5e-2", "--batch_size", "8",
                 "--device", "cpu", "--output_dir", str(out)]) == 0
    w0, w1 = load_file(base / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(w0) == set(w1)  # merged: no adapter tensors left, no new parameters
    assert not any("lora" in k for k in w1)
    changed = {k for k in w0 if not torch.equal(w0[k], w1[k])}
    assert changed and all(k.startswith("model.layers.") and k.endswith("proj.weight") for k in changed)
    assert "lm_head.weight" not in changed and "model.norm.weight" not in changed  # shared head frozen under LoRA


def test_saved_checkpoint_works_in_run_trace_and_similarity(trained, tmp_path, capsys):
    _, _, _, out = trained
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=3)
    assert main(["--model", str(out), "--tasks", "tiny_copy", "--include_path", str(tasks), "--limit", "2",
                 "--device", "cpu", "--no-progress", "--output_path", str(tmp_path / "runs")]) == 0
    res = json.loads((tmp_path / "runs" / "tiny-joint" / "results_tiny_copy_confidence.json").read_text())
    assert res["model"] == "tiny-joint" and res["n_docs"]["evaluated"] == 2
    record = json.loads((out / "ee_bench_finetune.json").read_text())  # the training command travels with the -J rows
    assert res["provenance"]["training"]["command"] == record["command"]
    assert res["provenance"]["training"]["global_steps"] == record["global_steps"]
    capsys.readouterr()
    assert main(["trace", "--model", str(out), "--text", "w1 w2 w3", "--kv", "copy,recompute", "--max-gen-toks", "4",
                 "--min-prefix", "1", "--json", "--device", "cpu"]) == 0
    trace = json.loads(capsys.readouterr().out)
    assert trace["model"] == "tiny-joint" and len(trace["traces"]) == 2
    assert main(["similarity", "--model", str(out), "--task", "tiny_copy", "--include_path", str(tasks),
                 "--limit", "3", "--device", "cpu", "--output_dir", str(tmp_path / "sim")]) == 0
    sim = json.loads((tmp_path / "sim" / "similarity.json").read_text())
    prof = sim["profiles"][0]
    assert prof["n_layers"] == 4 and prof["kl_to_last"][3] == pytest.approx(0.0, abs=1e-9)
    assert (tmp_path / "sim" / "similarity.png").stat().st_size > 0


def _exit_code(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("extra,fragment", [
    (["--batch_size", "0"], "--batch_size must be a positive integer"),
    (["--lr", "nan"], "--lr must be a positive finite number"),
    (["--epochs", "-1"], "--epochs must be a positive number"),
    (["--max-steps", "0"], "--max-steps must be a positive integer"),
    (["--sample-layers", "4"], "between 1 and L−1 = 3"),
])
def test_bad_numbers_exit_2(trained, extra, fragment, capsys, tmp_path):
    _, base, data, _ = trained
    code, err = _exit_code(["finetune", "--model", str(base), "--train_file", str(data), "--device", "cpu",
                            "--output_dir", str(tmp_path / "o"), *extra], capsys)
    assert code == 2 and fragment in err
    assert not (tmp_path / "o").exists()


def test_corrupt_jsonl_and_empty_folder_exit_2(trained, capsys, tmp_path):
    _, base, _, _ = trained
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "w1", "output": "w2"}\n{"instruction": "w1", "output"\n')
    code, err = _exit_code(["finetune", "--model", str(base), "--train_file", str(bad), "--output_dir",
                            str(tmp_path / "o")], capsys)
    assert code == 2 and "line 2 is not valid JSON" in err
    (tmp_path / "empty").mkdir()
    code, err = _exit_code(["finetune", "--model", str(tmp_path / "empty"), "--task-type", "causal", "--train_file",
                            str(bad), "--output_dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "folder without a checkpoint (no config.json)" in err
    assert not (tmp_path / "o").exists()


def test_two_processes_train_with_gloo(trained, tmp_path):
    """torchrun (what `accelerate launch` starts) with two CPU processes: DDP on gloo, one checkpoint."""
    import socket

    _, base, data, _ = trained
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with socket.socket() as s:  # a free port: other runs on a shared machine may hold a fixed one
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           port, "-m", "ee_bench", "finetune", "--model", str(base), "--train_file", str(data),
                           "--max-steps", "2", "--batch_size", "4", "--device", "cpu", "--output_dir",
                           str(tmp_path / "ddp")], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "ddp" / "ee_bench_finetune.json").read_text())
    assert record["world_size"] == 2 and record["global_steps"] == 2
    assert proc.stdout.count("saved ") == 1  # only rank 0 writes


def test_decoder_similarity_by_hand(tiny_llama_lm):
    from ee_bench.decoder_similarity import profile_decoder

    model = tiny_llama_lm
    prompt, resp = [1, 5, 9, 14], [20, 33, 2]
    ids = torch.tensor([prompt + resp[:-1]])
    with torch.no_grad():
        out = model.model(input_ids=ids, output_hidden_states=True)
        pos = slice(len(prompt) - 1, ids.shape[1])  # the positions that predict the 3 response tokens
        last = out.logits[0, pos].softmax(-1).double()
        p0 = model.model.lm_head(model.model.model.norm(out.hidden_states[1][0, pos])).softmax(-1).double()
    kl = float((last * (last / p0).log()).sum(-1).mean())  # KL(p_last ‖ p_0), nats
    m = 0.5 * (last + p0)
    js = float((0.5 * (last * (last / m).log()).sum(-1) + 0.5 * (p0 * (p0 / m).log()).sum(-1)).mean())
    for max_elems in (1 << 21, 4 * 96):  # one chunk; one token per chunk (combined by token counts)
        prof = profile_decoder(model, [prompt], [resp], max_elems=max_elems)
        assert prof.n_examples == 3 and prof.n_layers == 4
        assert prof.kl_to_last[0] == pytest.approx(kl, rel=1e-4)
        assert prof.js_to_last[0] == pytest.approx(js, rel=1e-4)
        assert prof.mean_confidence[0] == pytest.approx(float(p0.max(-1).values.mean()), rel=1e-5)
        assert prof.mean_confidence[3] == pytest.approx(float(last.max(-1).values.mean()), rel=1e-5)
        assert prof.kl_to_last[3] == pytest.approx(0.0, abs=1e-6) and prof.kl_next[3] is None


def test_task_examples_use_the_evaluation_prompt_and_mask_it(tiny_llama_lm, tmp_path):
    from ee_bench.task_runners.generation import build_prompts
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs
    from ee_bench.training.causal_data import task_examples, tokenize_examples

    folder = write_tiny_task(tmp_path / "tasks", n_docs=3)
    spec = TaskIndex([folder]).expand(["tiny_copy"])[0]
    docs = load_docs(spec, None)
    examples = task_examples(tiny_llama_lm, spec, docs)
    assert [e.prompt_ids for e in examples] == [ids for _, ids in build_prompts(tiny_llama_lm, spec, docs)]
    assert [e.response for e in examples] == [d["ref"] for d in docs]
    ds = tokenize_examples(examples, tiny_llama_lm.tokenizer, 256)
    vocab = tiny_llama_lm.tokenizer.get_vocab()
    for ex, ids, labels in zip(examples, ds["input_ids"], ds["labels"]):
        resp = [vocab[w] for w in ex.response.split()] + [2]  # word ids, then EOS (id 2)
        assert ids == ex.prompt_ids + resp
        assert labels == [-100] * len(ex.prompt_ids) + resp
    short = tokenize_examples(examples[:1], tiny_llama_lm.tokenizer, len(examples[0].prompt_ids) + 2)
    assert short["labels"][0][-2:] == short["input_ids"][0][-2:] and len(short["labels"][0]) == len(examples[0].prompt_ids) + 2


def test_alpaca_prompt_forms():
    from ee_bench.training.causal_data import alpaca_prompt

    assert alpaca_prompt({"instruction": "Add 2 and 3.", "input": "", "output": "5"}) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n")
    assert alpaca_prompt({"instruction": "Translate.", "input": "Hallo", "output": "Hello"}) == (
        "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
        "response that appropriately completes the request.\n\n### Instruction:\nTranslate.\n\n### Input:\nHallo"
        "\n\n### Response:\n")
