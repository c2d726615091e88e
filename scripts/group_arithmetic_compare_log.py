"""Compare a group-arithmetic run with a log of the original code (modular_addition_simple2.py).

    python scripts/group_arithmetic_compare_log.py RUN_FOLDER ORIGINAL.log

The original logs 'Train Accuracy/Loss: a/l' and 'Test Accuracy/Loss: a/l' before epoch e's step for
e < init_save_range and every save_interval epochs after (the Figure 3 log: 0..199, then every 100); both
are read from the log's header. Prints, at every epoch both have, the largest accuracy and loss
differences, and the first epochs at which train accuracy reaches 1.0 and test accuracy 0.5, 0.9, 1.0.
"""
import json
import re
import sys
from pathlib import Path


def read_log(path):
    text = Path(path).read_text()
    header = dict(re.findall(r"^(\w+): (.*)$", text.split("\n\n")[0], re.M))
    first, every, total = int(header["init_save_range"]), int(header["save_interval"]), int(header["num_epochs"])
    epochs = sorted(set(range(first)) | set(range(0, total, every)))
    pairs = lambda name: [(float(a), float(b)) for a, b in re.findall(name + r" Accuracy/Loss: ([\d.e-]+)/([\d.e-]+)", text)]
    return {e: (tr, te) for e, tr, te in zip(epochs, pairs("Train"), pairs("Test"))}


def firsts(accuracies):
    out = []
    for key, level in (("train", 1.0), ("test", 0.5), ("test", 0.9), ("test", 1.0)):
        out.append(next((e for e, acc in sorted(accuracies.items()) if acc[key] >= level), None))
    return out


def main(run, log_path):
    log = read_log(log_path)
    ours = {r["epoch"]: r for r in map(json.loads, (Path(run) / "metrics.jsonl").read_text().splitlines())}
    common = sorted(set(log) & set(ours))
    acc = max(max(abs(ours[e]["train_accuracy"] - log[e][0][0]), abs(ours[e]["test_accuracy"] - log[e][1][0]))
              for e in common)
    loss = {e: max(abs(ours[e]["train_loss"] - log[e][0][1]), abs(ours[e]["test_loss"] - log[e][1][1])) for e in common}
    print(f"{len(common)} epochs compared ({common[0]}..{common[-1]}): largest accuracy difference {acc:.3g}, "
          f"largest loss difference {max(loss.values()):.3g} (at epoch {max(loss, key=loss.get)})")
    drift = next((e for e in common if loss[e] > 1e-5), None)
    if drift is None:
        print("losses within 1e-5 at every compared epoch")
    else:
        print(f"first loss difference above 1e-5 at epoch {drift} ({loss[drift]:.3g})")
    print("first evaluated epoch with train 1.0, test 0.5, 0.9, 1.0:  run", firsts(
        {e: {"train": r["train_accuracy"], "test": r["test_accuracy"]} for e, r in ours.items()}),
        " log", firsts({e: {"train": tr[0], "test": te[0]} for e, (tr, te) in log.items()}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run_folder, log_file = sys.argv[1:]
    if not (Path(run_folder) / "metrics.jsonl").is_file():
        sys.exit(f"error: {run_folder} holds no metrics.jsonl: give a run's folder (python main.py --config "
                 "conf/group_arithmetic_fig3_replay.py --results-path fig3_replay makes one)")
    if not Path(log_file).is_file():
        sys.exit(f"error: no file {log_file}: the original's log is not shipped with this project; download "
                 "ssl/real-dataset/cogo/modular_addition_simple2_fig3.log from github.com/facebookresearch/luckmatters")
    main(run_folder, log_file)
