"""The pretrained path end to end, as a researcher runs it: `python main.py` with pretrained_path set to
a tiny checkpoint and tokenizer that the test itself saves with save_pretrained (nothing is downloaded).

What must come out: a finished run whose strings went through the checkpoint's own tokenizer as
space-separated digits, whose parameter counts are those of the checkpoint plus the one-logit head,
and whose trainable count is what finetune_layers / lora_r promise (computed here from the saved
weights, not from the code under test).
"""
import json
import re

import pytest

import main
import tiny_checkpoints
from conftest import TINY, write_settings
from tiny_checkpoints import HEAD_DIM, HEADS, HIDDEN, KV, LAYERS


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return tiny_checkpoints.write(tmp_path_factory.mktemp("pretrained"))


def expected_trainable(weights, finetune_layers, lora_r):
    head = HIDDEN + 1
    if lora_r:
        q_out, kv_out = HEADS * HEAD_DIM, KV * HEAD_DIM
        per_layer = lora_r * ((HIDDEN + q_out) + 2 * (HIDDEN + kv_out) + (q_out + HIDDEN))  # q, k, v, o
        return head + LAYERS * per_layer
    if finetune_layers == 0:
        return head  # 0 means the head alone (the original's code, not its README)
    if finetune_layers == -1:
        return head + sum(t.numel() for t in weights.values())
    top = tuple(f"layers.{i}." for i in range(LAYERS - finetune_layers, LAYERS))
    return head + sum(t.numel() for name, t in weights.items() if name.startswith(top + ("norm.",)))


@pytest.mark.parametrize("finetune_layers, lora_r", [(0, 0), (1, 0), (-1, 0), (0, 2)])
def test_main_fine_tunes_a_saved_checkpoint(saved, tmp_path, finetune_layers, lora_r):
    folder, weights = saved["qwen3"]
    values = {**TINY, "model": "qwen3_finetune", "pretrained_path": str(folder),
              "finetune_layers": finetune_layers, "lora_r": lora_r, "n_layer": None, "n_head": None,
              "n_embd": None, "lr": 1e-3, "n_epochs": 2}
    base = write_settings(tmp_path / "finetune.py", values)

    assert main.main(["--config", str(base), "--results-path", "run"]) == 0

    run = tmp_path / "run"
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    summary = json.loads((run / "summary.json").read_text())
    total = sum(t.numel() for t in weights.values()) + HIDDEN + 1
    assert summary["parameters"]["trainable"] == expected_trainable(weights, finetune_layers, lora_r)
    if not lora_r:  # LoRA adds its adapters to the total
        assert summary["parameters"]["total"] == total
    else:
        assert summary["parameters"]["total"] == total + summary["parameters"]["trainable"] - HIDDEN - 1
    assert 0.0 <= summary["final"]["test_accuracy"] <= 1.0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1, 2]

    # the fixture's vocabulary maps digit d to id d + 2: the logged first string must read that way
    log = (run / "logs.log").read_text()
    match = re.search(r"data fact encoding: the tokenizer of .*?; '([01 ]+)' -> \[([0-9, ]+)\]", log)
    assert match, log
    text, ids = match.group(1), [int(i) for i in match.group(2).split(",")]
    assert ids == [int(d) + 2 for d in text.split()]
    assert len(ids) == TINY["sequence_length"]


def test_a_tokenizerless_checkpoint_fails_with_a_clear_message(saved, tmp_path, capsys):
    folder, _ = saved["llama"]  # saved without a tokenizer
    values = {**TINY, "model": "deepseek_finetune", "pretrained_path": str(folder), "n_layer": None,
              "n_head": None, "n_embd": None}
    base = write_settings(tmp_path / "finetune.py", values)
    code = main.main(["--config", str(base), "--results-path", "run"])
    assert code != 0
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "failed"
    assert "holds no tokenizer" in (tmp_path / "run" / "logs.log").read_text()
    assert "holds no tokenizer" in capsys.readouterr().err


@pytest.mark.parametrize("conf", ["target_functions_finetune.py", "target_functions_finetune_cpu.py",
                                  "target_functions_finetune_as_run.py"])
def test_the_fine_tuning_confs_run_on_a_checkpoint(saved, tmp_path, conf):
    """The conf files as shipped (their from-scratch default sizes untouched), pointed at a checkpoint:
    the sizes come from the checkpoint and are recorded as None; a size set explicitly is refused."""
    from conftest import ROOT

    folder, _ = saved["qwen3"]
    small = ["--set", "n_epochs=1", "--set", "sequence_length=20", "--set", "test_set_size=40",
             "--set", "finetune_layers=1", "--set", f"pretrained_path='{folder}'"]
    assert main.main(["--config", str(ROOT / "conf" / conf), *small, "--results-path", "run"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["n_layer"] is None and config["n_head"] is None and config["n_embd"] is None
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "done"

    assert main.main(["--config", str(ROOT / "conf" / conf), *small, "--set", "n_layer=6",
                      "--results-path", "refused"]) == 2
    assert not (tmp_path / "refused").exists()
