"""Sweeps end to end: the questions, the grid, every file of every run, failures, resume, repeats."""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import main
import report
import settings
import sweep
from conftest import ROOT, TINY, fake_slurm, write_settings
from results import RunDir

RUN_FILES = {"config.py", "config.json", "status.json", "logs.log", "metrics.jsonl", "summary.json", "claim.json"}


def scripted(answers, yes=True):
    return sweep.collect(sweep.ScriptedAsker(answers), yes=yes)


def test_grid_is_the_cartesian_product_last_name_fastest(tiny_base):
    plan = scripted([str(tiny_base), "lr", "0.1x1", "0.2x1", "END", "batch_size", "5x1", "10", "END", "END"])
    assert plan.job_count == 4
    points = sweep.grid(plan)
    assert [(p["lr"], p["batch_size"]) for p in points] == [(0.1, 5), (0.1, 10), (0.2, 5), (0.2, 10)]


def test_repeats_become_replicates_with_distinct_seeds(tiny_base):
    plan = scripted([str(tiny_base), "lr", "0.1x3", "0.2x2", "END", "END"])
    points = sweep.grid(plan)
    assert plan.job_count == 5 == len(points)
    assert [(p["lr"], p.get("seed", TINY.get("seed", 0))) for p in points] == \
        [(0.1, 0), (0.1, 1), (0.1, 2), (0.2, 0), (0.2, 1)]
    plan = scripted([str(tiny_base), "seed", "10x2", "20", "END", "lr", "0.1x2", "END", "END"])
    assert [(p["seed"], p["lr"]) for p in sweep.grid(plan)] == [(10, 0.1), (11, 0.1), (12, 0.1), (13, 0.1),
                                                               (20, 0.1), (21, 0.1)]


def test_flags_take_the_same_path_as_answers(tiny_base):
    answers = sweep.flags_to_answers(str(tiny_base), ["lr=0.1x2,0.2", "target_func='func7'x1"])
    assert answers == [str(tiny_base), "lr", "0.1x2", "0.2", "END", "target_func", "'func7'x1", "END", "END"]


@pytest.mark.parametrize("answers, needle", [
    (["missing.py"], "settings file not found"),
    (["{base}", "lrr"], "did you mean 'lr'"),
    (["{base}", "lr", "fastx2"], "lr = 'fast' has the wrong type"),
    (["{base}", "lr", "END"], "at least one value"),
    (["{base}", "lr", "0.1", "END", "lr"], "already varied"),
    (["{base}", "task"], "cannot be varied"),
    (["{base}", "sequence_length", "10", "END", "target_func", "func16", "END", "END"],
     "sequence_length = 10 does not suit func16"),
    (["{base}", "target_func", "func7", "func16", "END", "sequence_length", "10", "END", "END"], "impossible"),
])
def test_scripted_mistakes_are_named(tiny_base, answers, needle):
    answers = [a.format(base=tiny_base) for a in answers]
    with pytest.raises((sweep.SweepError, settings.SettingsError)) as err:
        scripted(answers)
    assert needle in str(err.value)


# what submitit 1.5.4 gives as the error of a local job whose worker was killed with kill -9 (captured)
KILLED = ("Job 4730 (task: 0) with path /x/log/4730_0_result.pkl\n"
          "has not produced any output (state: FINISHED)\n"
          "No error stream produced. Look at stdout: /x/log/4730_0_log.out\n"
          "----------------------------------------\n"
          "submitit INFO (2026-12-02 09:19:28,632) - Starting with JobEnvironment(job_id=4730, hostname=vm)\n"
          "submitit INFO (2026-12-02 09:19:28,632) - Loading pickle: /x/log/4730_submitted.pkl\n")


@pytest.mark.parametrize("message, replaced", [
    (KILLED, True),
    (KILLED.replace("state: FINISHED", "state: CANCELLED by 1000"), False),  # scancel: on purpose
])
def test_a_worker_killed_without_a_word_fails_its_run_in_status_and_log_and_is_replaced(message, replaced, tmp_path):
    import io
    from types import SimpleNamespace
    run = RunDir(tmp_path / "0")
    run.path.mkdir()
    run.claim("token-1")
    run.set_status("running")
    run.file("logs.log").write_text("2026-12-02 09:19:30 INFO step 100: ...\n")
    job = SimpleNamespace(exception=lambda: RuntimeError(message), job_id="4730",
                          paths=SimpleNamespace(stderr="4730.err"))
    out = io.StringIO()
    assert sweep._settle(job, SimpleNamespace(run_names=["0"], token="token-1"), tmp_path, out=out) is replaced
    for text in (out.getvalue(), run.status()["error"], run.file("logs.log").read_text().splitlines()[-1]):
        assert "killed? out of memory?" in text and "has not produced" not in text and "Job 4730" not in text
    assert run.status()["state"] == "failed"


def test_a_job_whose_disk_filled_points_to_the_log_that_holds_the_error(tmp_path):
    """A worker on a full disk may leave its stderr file empty and the error in its stdout file: the line
    names that file and says disk full."""
    import io
    from types import SimpleNamespace
    (tmp_path / "7_0_log.err").write_text("")
    (tmp_path / "7_0_log.out").write_text("Traceback ...\nOSError: [Errno 28] No space left on device: 'x'\n")
    job = SimpleNamespace(exception=lambda: RuntimeError("submitit ERROR - Submitted job triggered an exception"),
                          job_id="7", paths=SimpleNamespace(stderr=str(tmp_path / "7_0_log.err"),
                                                            stdout=str(tmp_path / "7_0_log.out")))
    out = io.StringIO()
    sweep._settle(job, SimpleNamespace(run_names=[], token="token-1"), tmp_path, out=out)
    assert "disk full" in out.getvalue() and "resume the sweep" in out.getvalue()
    assert f"(its log: {tmp_path / '7_0_log.out'})" in out.getvalue()


@pytest.mark.parametrize("vary", [
    ["lr_schedule='multistep'", "lr_milestones=[1,2],[1]"], ["lr_milestones=[1,2],[1]", "lr_schedule='multistep'"],
    ["lr=1e-6", "eta_min=0.0"], ["eta_min=0.0", "lr=1e-6"]])
def test_flags_whose_values_need_each_other_are_accepted_in_either_order(tiny_base, vary):
    # each value was checked against the base and the settings varied before it: the order of the flags
    # decided whether lr_schedule = 'multistep' (needs lr_milestones) or lr = 1e-6 (< the base's eta_min) passed
    base = write_settings(tiny_base.parent / "base_eta.py", {**TINY, "lr_schedule": "cosine", "eta_min": 1e-5})
    plan = sweep.collect(sweep.ScriptedAsker(sweep.flags_to_answers(str(base), vary)), yes=True)
    assert len(sweep.grid(plan)) == (2 if "milestones" in "".join(vary) else 1)


def test_resume_names_the_sweeps_there_are_and_a_damaged_manifest(tiny_base, capsys):
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0", "--executor", "inprocess", "--yes"]) == 0
    capsys.readouterr()
    for given in ("7", "results_new/7"):
        assert sweep.main(["--resume", given]) == 2
        assert "there is no sweep results_new/7; the sweeps in results_new: 0" in capsys.readouterr().err
    Path("results_new/0/sweep.json").write_text('{"runs": [')
    assert sweep.main(["--resume", "0"]) == 2
    err = capsys.readouterr().err
    assert "results_new/0/sweep.json cannot be read (damaged?)" in err and "Traceback" not in err


def test_an_impossible_grid_from_flags_writes_no_answers_file(tiny_base, capsys):
    # a person at the prompts gets their answers saved; flags are already on the command line
    assert sweep.main(["--base", str(tiny_base), "--vary", "sequence_length=10", "--vary", "target_func='func16'",
                       "--executor", "inprocess", "--yes"]) == 2
    assert "sequence_length = 10 does not suit func16" in capsys.readouterr().err
    assert not list(Path(".").glob("sweep_answers_*"))


def test_an_empty_vary_value_is_named_as_such(tiny_base):
    with pytest.raises(sweep.SweepError, match="--vary 'lr=': give at least one value after '='"):
        sweep.flags_to_answers(str(tiny_base), ["lr="])
    # a doubled comma was dropped without a word: a grid of two values where three were meant
    with pytest.raises(sweep.SweepError, match="--vary 'lr=0.1,,0.3': an empty value"):
        sweep.flags_to_answers(str(tiny_base), ["lr=0.1,,0.3"])


def test_a_wrong_flag_value_is_named_by_its_flag_not_by_the_question(tiny_base, capsys):
    assert sweep.main(["--base", str(tiny_base), "--vary", "lr=0.1,abc", "--executor", "inprocess", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "--vary lr=0.1,abc: 'abc':" in err and "Specify" not in err


def test_a_mistake_in_the_grid_is_said_before_the_missing_yes(tiny_base, capsys):
    assert sweep.main(["--base", str(tiny_base), "--vary", "lr=-1", "--executor", "inprocess"]) == 2
    err = capsys.readouterr().err
    assert "lr = -1" in err and "add --yes" not in err


def test_a_base_naming_a_missing_checkpoint_says_to_edit_it(tmp_path):
    # a --vary of pretrained_path does not stand in for the base's own (the base is built as it stands)
    base = write_settings(tmp_path / "base.py", {**TINY, "model": "qwen3_finetune", "n_layer": None, "n_head": None,
                                                 "n_embd": None, "pretrained_path": str(tmp_path / "missing")})
    with pytest.raises(sweep.SweepError) as err:
        scripted([str(base), "pretrained_path", f"'{tmp_path}'", "END", "END"])
    assert "is not a folder" in str(err.value) and "edit its pretrained_path" in str(err.value)


def _interactive(keys, timeout=30):
    """Drive sweep.collect through questionary with scripted keystrokes; fail rather than hang."""
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    outcome = {}

    def target():
        with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
            sender = threading.Thread(target=lambda: [inp.send_text(k) or time.sleep(0.05) for k in keys])
            sender.start()
            try:
                outcome["plan"] = sweep.collect(sweep.QuestionaryAsker())
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc
            sender.join()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the prompts waited for input that never came"
    return outcome


def test_interactive_prompts_reask_after_a_wrong_answer(tiny_base):
    backspaces = "\x7f" * 10
    keys = [f"{tiny_base}\r",
            "lrr\r", backspaces + "lr\r",          # unknown name: re-asked
            "0.1x2\r", "fast\r", backspaces + "0.2\r", "END\r",  # wrong type: re-asked
            "END\r",
            "maybe\r", backspaces + "y\r"]          # not y/n: re-asked
    outcome = _interactive(keys)
    assert "error" not in outcome, outcome.get("error")
    plan = outcome["plan"]
    assert plan.vary == [("lr", [(0.1, 2), (0.2, 1)])]
    assert plan.job_count == 3
    assert plan.answers == [str(tiny_base), "lr", "0.1x2", "0.2", "END", "END", "y"]


def test_interactive_no_cancels(tiny_base):
    outcome = _interactive([f"{tiny_base}\r", "END\r", "n\r"])
    assert isinstance(outcome.get("error"), sweep.Cancelled)


def _check_run_folder(path, expected_overrides):
    names = {p.name for p in path.iterdir()}
    assert RUN_FILES <= names, names
    assert not [n for n in names if n.endswith(".tmp")]
    status = json.loads((path / "status.json").read_text())
    assert status["state"] == "done"
    config = json.loads((path / "config.json").read_text())
    for key, value in expected_overrides.items():
        assert config[key] == value
    assert settings.load(path / "config.py") == settings.build(config)  # config.py is a valid --config
    metrics = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(config["n_epochs"] + 1))
    for m in metrics:
        assert {"step", "epoch", "samples", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                "lr", "elapsed"} <= set(m)
    summary = json.loads((path / "summary.json").read_text())
    assert summary["final"]["test_accuracy"] == metrics[-1]["test_accuracy"]
    log = (path / "logs.log").read_text()
    assert "parameters" in log and "data fact" in log and log.count("eval epoch") == len(metrics)


def test_inprocess_sweep_end_to_end(tiny_base, tmp_path, capsys):
    code = sweep.main(["--base", str(tiny_base), "--vary", "target_func=func7,func10", "--vary", "seed=0,1",
                       "--executor", "inprocess", "--yes"])
    assert code == 0
    folder = tmp_path / "results_new" / "0"
    manifest = json.loads((folder / "sweep.json").read_text())
    assert [r["overrides"] for r in manifest["runs"]] == [
        {"target_func": f, "seed": s} for f in ("func7", "func10") for s in (0, 1)]
    assert manifest["answers"][0] == str(tiny_base) and manifest["submissions"][0]["job_ids"]
    for run in manifest["runs"]:
        _check_run_folder(folder / run["run"], run["overrides"])
    table = report.rows(folder)
    assert [(r["target_func"], r["seed"], r["status"]) for r in table] == [
        ("func7", 0, "done"), ("func7", 1, "done"), ("func10", 0, "done"), ("func10", 1, "done")]
    assert all(isinstance(r["test_accuracy"], float) and r["wall_time"] > 0 for r in table)


def test_local_executor_sweep_with_a_failing_job(tmp_path):
    from transformers import BloomConfig

    empty = tmp_path / "not_a_model"
    BloomConfig(n_layer=1, hidden_size=16, n_head=2).save_pretrained(empty)
    (empty / "model.safetensors").write_bytes(b"not weights")
    # valid settings (the third run's pretrained folder holds a BLOOM config.json and a weights file, which
    # validation reads and sees), but the weights are no weights: that run fails when it starts
    # (the base keeps the default model sizes, which a pretrained run takes from its checkpoint instead)
    base = write_settings(tmp_path / "base.py", {k: v for k, v in TINY.items()
                                                 if k not in ("n_layer", "n_head", "n_embd")})
    answers = tmp_path / "answers.txt"
    answers.write_text(f"{base}\npretrained_path\nNonex2\n'{empty}'x1\nEND\nEND\ny\n")
    proc = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "--answers", str(answers),
                           "--executor", "local", "--max-parallel", "2"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    folder = tmp_path / "results_new" / "0"
    states = {r["run"]: r["status"] for r in report.rows(folder)}
    assert states == {"0": "done", "1": "done", "2": "failed"}
    for name in ("0", "1"):
        _check_run_folder(folder / name, {"model": "bloom"})
    assert "run failed" in (folder / "2" / "logs.log").read_text()
    assert "Traceback" in (folder / "2" / "logs.log").read_text()
    assert "run 2 failed" in proc.stdout and "--resume 0" in proc.stdout


def test_resume_reruns_exactly_what_is_not_done(tiny_base, tmp_path):
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1,2", "--executor", "inprocess", "--yes"]) == 0
    folder = tmp_path / "results_new" / "0"
    # what an interruption leaves: one run interrupted half-way, one never started
    RunDir(folder / "1").set_status("interrupted", error="interrupted")
    RunDir(folder / "2").set_status("queued")
    (folder / "2" / "summary.json").unlink()
    done_before = (folder / "0" / "metrics.jsonl").stat().st_mtime_ns
    assert sweep.main(["--resume", "0", "--executor", "inprocess"]) == 0
    assert (folder / "0" / "metrics.jsonl").stat().st_mtime_ns == done_before
    assert all(RunDir(folder / n).status()["state"] == "done" for n in "012")
    assert RunDir(folder / "1").status()["attempts"] == 1
    assert sweep.main(["--resume", "0", "--executor", "inprocess"]) == 0  # nothing left: a no-op


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a script's `sweep.py ... &` inherits


@pytest.mark.parametrize("stop", ["ctrl-c", "kill", "kill-background"])
def test_a_stopped_sweep_keeps_finished_runs_and_resume_completes(tmp_path, stop):
    base = write_settings(tmp_path / "slow.py", {**TINY, "n_epochs": 40, "train_set_size": 100})
    proc = subprocess.Popen([sys.executable, str(ROOT / "sweep.py"), "--base", str(base), "--vary",
                             "seed=0,1,2,3,4,5", "--executor", "local", "--max-parallel", "1", "--yes"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=_ignore_sigint if stop == "kill-background" else None)
    folder = tmp_path / "results_new" / "0"
    deadline = time.time() + 120
    while time.time() < deadline and not (folder / "0" / "summary.json").exists():
        time.sleep(0.1)
    if stop == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C at the terminal does: every process gets it
    else:
        proc.send_signal(signal.SIGTERM)  # `kill <pid>`: only the sweep gets it, it must stop its workers
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if stop == "ctrl-c" else 143), err
    assert "would not stop" not in err
    assert "Traceback" not in err, err  # submitit's controllers print one each unless kept off the terminal
    assert "--resume 0" in err
    states = {r["run"]: r["status"] for r in report.rows(folder)}
    assert states["0"] == "done" and "done" in states.values() and set(states.values()) != {"done"}
    # no worker is left training after the sweep returned (a worker SIGKILLed by submitit one second
    # after its SIGINT, on a loaded machine, may leave a run marked running by a dead process: resumable)
    assert sweep._alive_runs(folder, list(states)) == []
    finished = {n for n, s in states.items() if s == "done"}
    stamps = {n: (folder / n / "summary.json").stat().st_mtime_ns for n in finished}
    resumed = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "--resume", "0", "--executor", "local"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert {r["status"] for r in report.rows(folder)} == {"done"}
    assert stamps == {n: (folder / n / "summary.json").stat().st_mtime_ns for n in finished}


def test_kill_stops_a_run_like_ctrl_c_and_keeps_every_evaluation(tmp_path):
    base = write_settings(tmp_path / "slow.py", {**TINY, "n_epochs": 2000, "eval_every": 1})
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--config", str(base), "--results-path", "run"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "logs.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "eval epoch 5 " in log.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted" in err
    assert RunDir(tmp_path / "run").status()["state"] == "interrupted"
    logged = [int(e) for e in re.findall(r"eval epoch (\d+) ", log.read_text())]
    # metrics.jsonl is rewritten at most every 2 s; the stop must still flush every evaluation logged
    assert [r["epoch"] for r in RunDir(tmp_path / "run").read_metrics()] == logged and len(logged) >= 6


def test_repeating_a_run_from_its_folder_gives_the_same_metrics(tiny_base, tmp_path):
    assert main.main(["--config", str(tiny_base), "--results-path", "first"]) == 0
    assert main.main(["--config", "first/config.py", "--results-path", "second"]) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("elapsed", "eval_time")} for r in rows]  # noqa
    first, second = RunDir("first").read_metrics(), RunDir("second").read_metrics()
    assert strip(first) == strip(second) and len(first) == TINY["n_epochs"] + 1
    # and a different seed gives different metrics (the comparison above can fail)
    assert main.main(["--config", str(tiny_base), "--set", "seed=5", "--results-path", "third"]) == 0
    assert strip(RunDir("third").read_metrics()) != strip(first)


def test_main_without_results_path_gets_a_fresh_numbered_folder(tiny_base, tmp_path):
    assert main.main(["--config", str(tiny_base)]) == 0
    assert main.main(["--config", str(tiny_base)]) == 0
    assert sorted(p.name for p in (tmp_path / "results_new").iterdir()) == ["0", "1"]
    assert RunDir(tmp_path / "results_new" / "1" / "0").status()["state"] == "done"


def test_report_csv(tiny_base, tmp_path):
    assert sweep.main(["--base", str(tiny_base), "--vary", "lr=0.01x2", "--executor", "inprocess", "--yes"]) == 0
    assert report.main([str(tmp_path / "results_new" / "0"), "--csv", "out.csv"]) == 0
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0].startswith("run,lr,seed,status") and len(lines) == 3


def test_report_shows_a_run_whose_folder_was_deleted_as_missing(tiny_base, tmp_path):
    import shutil
    assert sweep.main(["--base", str(tiny_base), "--vary", "lr=0.01,0.02,0.03", "--executor", "inprocess",
                       "--yes"]) == 0
    shutil.rmtree(tmp_path / "results_new" / "0" / "1")
    table = report.rows(tmp_path / "results_new" / "0")
    assert [(row["run"], row["lr"], row["status"]) for row in table] == [("0", 0.01, "done"), ("1", 0.02, "missing"),
                                                                        ("2", 0.03, "done")]
    assert "results_new/0/1 is gone" in table[1]["error"]


def test_slurm_script_has_an_array_and_no_gpu_line(tiny_base, tmp_path, monkeypatch):
    fake = fake_slurm(tmp_path, monkeypatch, job=4242)
    code = sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1,2", "--executor", "slurm",
                       "--partition", "gpu", "--yes"])
    assert code == 0
    script = (fake / "submitted.sh").read_text()
    assert "#SBATCH --array=0-2" in script and "#SBATCH --partition=gpu" in script
    assert "gres" not in script and "gpus" not in script
    manifest = json.loads((tmp_path / "results_new" / "0" / "sweep.json").read_text())
    assert manifest["submissions"][0]["job_ids"][0].startswith("4242")


def test_report_columns_keep_metrics_together_and_wall_time_last():
    table = [{"run": "0", "status": "done", "test_accuracy": 0.5, "wall_time": 3.0},
             {"run": "1", "status": "failed", "test_accuracy": 1.0, "first_epoch_test_accuracy_1": 20,
              "wall_time": 2.0, "error": "boom"}]
    assert report.columns(table) == ["run", "status", "test_accuracy", "first_epoch_test_accuracy_1",
                                     "wall_time", "error"]


def test_a_stop_after_the_summary_keeps_the_run_done(tiny_base, tmp_path, monkeypatch):
    """Ctrl-C landing between summary.json and status 'done' must not mark a finished run interrupted
    (resume would train it again); a stop before the summary still marks it interrupted."""
    import training
    real_train = training.train

    def finish_then_stop(settings, run_dir, log, started=None):
        real_train(settings, run_dir, log, started)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", finish_then_stop)
    values = settings.load(str(tiny_base))
    with pytest.raises(KeyboardInterrupt):
        main.run(values, tmp_path / "late")
    assert RunDir(tmp_path / "late").status()["state"] == "done"

    def stop_early(settings, run_dir, log, started=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", stop_early)
    with pytest.raises(KeyboardInterrupt):
        main.run(values, tmp_path / "early")
    assert RunDir(tmp_path / "early").status()["state"] == "interrupted"


def _sweep_with_a_running_run(tiny_base, pid):
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes"]) == 0
    folder = Path("results_new") / "0"
    run = RunDir(folder / "1")
    run.set_status("running")  # records this host and this pid ...
    record = json.loads(run.file("status.json").read_text())
    record["pid"] = pid  # ... which we replace by the process under test
    run.file("status.json").write_text(json.dumps(record))
    return folder


def test_resume_refuses_a_run_whose_process_is_alive_and_waits_for_one_that_exits(tiny_base):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = _sweep_with_a_running_run(tiny_base, sleeper.pid)
        with pytest.raises(sweep.SweepError, match=f"still running on this machine: run 1 \\(pid {sleeper.pid}\\);"
                                                   f".* or kill -INT {sleeper.pid}: workers ignore a plain"):
            sweep.prepare_resume(folder, grace=0.5)
        assert RunDir(folder / "0").status()["state"] == "done"  # nothing was touched
        # a process that exits within the grace period no longer blocks the resume
        threading.Timer(0.5, sleeper.kill).start()
        threading.Timer(0.6, sleeper.wait).start()
        _, todo = sweep.prepare_resume(folder, grace=20)
        assert todo == ["1"] and RunDir(folder / "1").status()["state"] == "queued"
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombie detection reads /proc")
def test_resume_treats_a_killed_unreaped_worker_as_gone(tiny_base):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while time.time() < deadline:  # exited but not waited for: a zombie, which os.kill(pid, 0) still finds
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    try:
        folder = _sweep_with_a_running_run(tiny_base, child.pid)
        _, todo = sweep.prepare_resume(folder, grace=0.0)
        assert todo == ["1"]
    finally:
        child.wait()


@pytest.mark.parametrize("argv, words", [
    (["--vary", "seed=0", "--set", "n_epochs=1"], "sweep.py has no --set (n_epochs=1)"),  # was read as --setup
    (["--vary", "seed=0", "--time", "0"], "--time must be at least 1"),
    (["--vary", "seed=0", "--runs-per-job", "0"], "--runs-per-job must be at least 1"),
    (["--resume", "0", "--vary", "seed=5"], "--resume re-queues a sweep's own runs"),
])
def test_sweep_options_that_would_be_misread_or_cannot_work_are_refused(argv, words, tiny_base, capsys):
    with pytest.raises(SystemExit) as exit_:
        sweep.main(["--base", str(tiny_base), *argv, "--executor", "inprocess", "--yes"])
    assert exit_.value.code == 2 and words in capsys.readouterr().err
    assert not (Path("results_new") / "0").exists()


def test_a_slurm_sweep_where_there_is_no_slurm_is_refused_before_anything_is_queued(tiny_base, monkeypatch, capsys):
    monkeypatch.setattr(sweep.shutil, "which", lambda tool: None)
    with pytest.raises(SystemExit) as exit_:
        sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "slurm", "--yes"])
    assert exit_.value.code == 2
    assert "--executor slurm needs SLURM's sbatch and srun" in capsys.readouterr().err
    assert not Path("results_new").exists()


def test_the_resume_command_names_a_results_root_other_than_the_default():
    # printed after an interrupted or unfinished sweep: without --results-root it would resume another sweep
    assert sweep.resume_command(Path("results_new") / "3") == "python sweep.py --resume 3"
    assert sweep.resume_command(Path("/data/sweeps") / "3") == "python sweep.py --resume 3 --results-root /data/sweeps"
    # a root with a space pastes back as one argument
    command = sweep.resume_command(Path("/data/my sweeps") / "3")
    assert sweep.parse_args(shlex.split(command)[2:]).results_root == "/data/my sweeps"


@pytest.mark.parametrize("older_manifest", [False, True])
def test_a_resume_makes_a_deleted_or_damaged_run_folder_again_from_the_manifest(tiny_base, tmp_path, capsys,
                                                                                older_manifest):
    """W&B's complaint (orchestration.md): resuming a grid does not re-run deleted runs. sweep.json holds each
    run's settings, so a deleted folder is made again and trained; a damaged config.json is written again.
    older_manifest: a sweep.json written before base_values was kept (its built base_settings serve)."""
    import shutil
    from results import RunDir, atomic_write_json, read_json
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1,2,3", "--executor", "inprocess", "--yes"]) == 0
    folder = tmp_path / "results_new" / "0"
    if older_manifest:
        manifest = read_json(folder / "sweep.json")
        del manifest["base_values"]
        atomic_write_json(folder / "sweep.json", manifest)
    before = {name: RunDir(folder / name).read_metrics() for name in ("1", "2", "3")}
    assert all(before.values())
    shutil.rmtree(folder / "1")
    (folder / "2" / "config.json").write_text("{damaged")  # its config.py, written with it, holds its settings
    RunDir(folder / "2").set_status("failed")
    (folder / "3" / "config.json").write_text("{damaged")  # both damaged: the manifest's settings, and what the
    (folder / "3" / "config.py").write_text("lr = ")  # run left is set aside (it may come from other settings)
    RunDir(folder / "3").set_status("failed")
    (folder / "0" / "config.json").unlink()  # a finished run's: its settings come back, it is not trained again
    finished = (folder / "0" / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert sweep.main(["--resume", "0", "--executor", "inprocess"]) == 0
    err = capsys.readouterr().err
    manifest_said = "sweep.json (the base settings an older manifest keeps)" if older_manifest else "sweep.json"
    assert "run 0: results_new/0/0/config.json could not be read; its settings were written again from its " \
           "config.py (overrides {'seed': 0}), its other files kept" in err
    assert (folder / "0" / "summary.json").stat().st_mtime_ns == finished
    assert f"run 1: results_new/0/1 was missing; made again from {manifest_said} (overrides {{'seed': 1}})" in err
    assert "run 2: results_new/0/2/config.json could not be read; its settings were written again from its " \
           "config.py (overrides {'seed': 2}), its other files kept" in err
    assert f"run 3: results_new/0/3/config.json could not be read; its settings were written again from " \
           f"{manifest_said} (overrides {{'seed': 3}}); its metrics.jsonl, which may come from other settings, " \
           "set aside as metrics.jsonl.orphaned: it trains from the start" in err
    assert (folder / "3" / "metrics.jsonl.orphaned").exists()
    assert "Traceback" not in err
    for name in ("0", "1", "2", "3"):
        assert RunDir(folder / name).status()["state"] == "done"
        assert RunDir(folder / name).config()["seed"] == int(name)
    # the same run as the sweep first trained (timings aside)
    untimed = lambda records: [{k: v for k, v in r.items() if k not in ("elapsed", "eval_time")} for r in records]  # noqa
    for name in ("1", "2", "3"):
        assert untimed(RunDir(folder / name).read_metrics()) == untimed(before[name])
    assert "Repeat it with: python main.py --config results_new/0/1/config.py" in (folder / "1" / "config.py").read_text()


def test_a_run_of_a_sweep_made_before_a_setting_existed_is_made_again_as_that_sweep_ran(tmp_path, capsys):
    """A parity sweep made before fresh_inputs and dropout_noise existed: its manifest's settings lack them. A
    run made again from the manifest (its folder deleted) takes the values its sibling runs read back (the
    earlier stream and masks: settings.ADDED_SINCE), not today's defaults, so the sweep stays one sweep."""
    from results import RunDir, atomic_write_json, read_json
    base = write_settings(tmp_path / "parity.py", {"task": "parity_cot", "n_bits": 8, "k": 2, "n_valid": 16,
                                                    "n_embd": 8, "batch_size": 16, "n_samples": 32, "progress": "off",
                                                    "eval_every_samples": None, "eval_every_steps": 2,
                                                    "entropy_samples": 8})
    assert sweep.main(["--base", str(base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes"]) == 0
    folder = tmp_path / "results_new" / "0"
    manifest = read_json(folder / "sweep.json")
    for name in ("fresh_inputs", "dropout_noise"):  # as the code before them wrote the manifest
        del manifest["base_settings"][name]
    atomic_write_json(folder / "sweep.json", manifest)
    import shutil
    shutil.rmtree(folder / "1")
    capsys.readouterr()
    assert sweep.main(["--resume", "0", "--executor", "inprocess"]) == 0
    config = RunDir(folder / "1").config()
    assert (config["fresh_inputs"], config["dropout_noise"], config["seed"]) == ("independent", "torch", 1)
    assert RunDir(folder / "1").status()["state"] == "done"


def test_a_run_folder_that_cannot_be_made_again_is_left_out_and_the_others_resume(tiny_base, tmp_path, capsys):
    import shutil
    from results import RunDir
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes",
                       "--no-wait"]) == 0
    folder = tmp_path / "results_new" / "0"
    RunDir(folder / "0").set_status("failed")
    shutil.rmtree(folder / "1")
    (folder / "1").write_text("a file where the run's folder was")
    capsys.readouterr()
    assert sweep.main(["--resume", "0", "--executor", "inprocess"]) == 1
    err = capsys.readouterr().err
    assert "run 1 left out: results_new/0/1 has no readable config.json and cannot be made again" in err
    assert "{'seed': 1}" in err and "Traceback" not in err
    assert RunDir(folder / "0").status()["state"] == "done"


def test_a_worker_killed_without_a_word_is_said_to_be_killed_not_named_by_submitit_s_last_log_line(tmp_path):
    # kill -9 / the out-of-memory killer: submitit's error is its log, whose last line is its own INFO line
    import io
    from types import SimpleNamespace

    from results import RunDir
    run = RunDir(tmp_path / "0")
    run.path.mkdir()
    run.claim("token-1")
    run.set_status("running")
    log = ("submitit INFO (2026-12-02 05:00:00,000) - Starting with JobEnvironment(job_id=42)\n"
           "submitit INFO (2026-12-02 05:00:00,001) - Loading pickle: /x/42_submitted.pkl\n"
           "----------------------------------------\n")  # (a separator submitit writes after a crash)
    job = SimpleNamespace(exception=lambda: RuntimeError(log), job_id="42", paths=SimpleNamespace(stderr="42.err"))
    out = io.StringIO()
    sweep._settle(job, SimpleNamespace(run_names=["0"], token="token-1"), tmp_path, out=out)
    assert "Loading pickle" not in out.getvalue() and "killed? out of memory?" in out.getvalue()
    assert "-----" not in out.getvalue()
    status = run.status()
    assert status["state"] == "failed" and "killed? out of memory?" in status["error"]
    assert "Loading pickle" not in status["error"]


def test_a_sweep_whose_folder_cannot_be_filled_leaves_no_folder_that_resume_cannot_read(tiny_base, monkeypatch,
                                                                                            capsys):
    # the disk fills while the runs' folders are written: no sweep.json yet, so no --resume could take it
    import errno
    real = RunDir.write_settings
    written = []

    def full_on_the_second(self, *args, **kwargs):
        written.append(self.path.name)
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path / "config.py"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RunDir, "write_settings", full_on_the_second)
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1,2", "--executor", "inprocess", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing was queued" in err and "Traceback" not in err
    assert not any(Path("results_new").iterdir())


def test_a_results_folder_that_turns_read_only_mid_sweep_gets_one_line_and_the_resume_command(tiny_base, monkeypatch,
                                                                                               capsys):
    import errno

    def read_only(jobs, workers, folder, run_names, **_):
        raise OSError(errno.EROFS, "Read-only file system", str(folder / "0" / "claim.json"))

    stopped = []
    monkeypatch.setattr(sweep, "wait", read_only)
    monkeypatch.setattr(sweep, "_stop_jobs", lambda jobs, folder, run_names: stopped.append(len(jobs)) or "")
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "error: Read-only file system: " in err and "claim.json" in err and "Traceback" not in err
    assert "resume with: python sweep.py --resume" in err
    assert stopped == [1]  # its workers were stopped first: none trains on behind the message


def test_a_second_ctrl_c_during_the_first_s_cleanup_still_gives_the_resume_command(tiny_base, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "wait", interrupted)
    monkeypatch.setattr(sweep, "stop_workers", interrupted)  # the second Ctrl-C lands in the cleanup
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes"]) == 130
    err = capsys.readouterr().err
    assert "nothing queued" not in err and "resume with: python sweep.py --resume" in err


@pytest.mark.parametrize("ending", ["silent", "stopped"])
def test_runs_a_killed_worker_never_reached_go_to_a_new_worker(ending, tiny_base, monkeypatch, capsys):
    # the worker of runs 0 and 1 is killed (kill -9, the out-of-memory killer) while it trains run 0: run 0
    # fails, and run 1, which it never reached, is trained by a new worker instead of staying queued
    from types import SimpleNamespace
    submitted = []

    def fake_submit(args, folder, run_names, manifest):
        submitted.append(list(run_names))
        token = f"token-{len(submitted)}"
        first = RunDir(folder / run_names[0])
        if len(submitted) == 1:  # killed while training run 0
            first.claim(token)
            if ending == "silent":  # kill -9: the run stays 'running', submitit has nothing but its own lines
                first.set_status("running")
                error = RuntimeError(KILLED)
            else:  # kill -INT: the worker marks its run interrupted and its job ends with the KeyboardInterrupt
                first.set_status("interrupted", error="interrupted")
                error = RuntimeError("Traceback (most recent call last):\n  ...\nKeyboardInterrupt\n")
        else:
            first.set_status("done")
            error = None
        job = SimpleNamespace(done=lambda: True, exception=lambda: error, job_id=str(len(submitted)),
                              paths=SimpleNamespace(stderr="x.err"))
        return [job], [SimpleNamespace(run_names=list(run_names), token=token)]

    monkeypatch.setattr(sweep, "submit", fake_submit)
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "local", "--yes"]) == 1
    folder = Path("results_new") / "0"
    if ending == "stopped":  # a worker stopped on purpose is not replaced
        assert submitted == [["0", "1"]] and RunDir(folder / "1").status()["state"] == "queued"
        assert RunDir(folder / "0").status()["state"] == "interrupted"
        return
    assert submitted == [["0", "1"], ["1"]]
    assert [RunDir(folder / n).status()["state"] for n in "01"] == ["failed", "done"]
    assert "a worker ended before reaching run 1: new workers take them" in capsys.readouterr().err


def test_a_bad_grid_value_is_quoted_once_in_its_error(tiny_base, capsys):
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0x0", "--executor", "inprocess", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "'0x0': the count after 'x' must be at least 1" in err and err.count("'0x0'") == 1


def test_plot_says_so_where_no_run_has_what_its_plots_need(tmp_path, capsys):
    import plot
    run = RunDir(tmp_path / "sw" / "0")
    run.path.mkdir(parents=True)
    run.write_settings(settings.build({"task": "assoc_memory"}))
    run.set_status("failed", error="killed")
    assert plot.main([str(tmp_path / "sw")]) == 1
    assert "nothing to plot: no run in" in capsys.readouterr().err


def test_the_last_report_of_a_resume_counts_the_whole_sweep(tiny_base, capsys):
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1,2", "--executor", "inprocess", "--yes"]) == 0
    folder = Path("results_new") / "0"
    RunDir(folder / "1").set_status("failed", error="boom")
    capsys.readouterr()
    assert sweep.main(["--resume", "0"]) == 0
    assert "sweep results_new/0: 3 done" in capsys.readouterr().out


def test_grouped_reports_average_the_programme_s_own_numbers_where_every_finished_run_has_one():
    table = [{"run": "0", "H": 4, "seed": 0, "status": "done", "test_accuracy": 1.0, "grokking_delay": 30,
              "first_epoch_test_accuracy_1": 12, "epoch": 50, "wall_time": 3.0},
             {"run": "1", "H": 4, "seed": 1, "status": "done", "test_accuracy": 0.5, "grokking_delay": 50,
              "first_epoch_test_accuracy_1": None, "epoch": 50, "wall_time": 4.0},
             {"run": "2", "H": 4, "seed": 2, "status": "failed", "grokking_delay": 1000}]
    (row,) = report.group_rows(table, ["H", "seed"])
    assert row["grokking_delay_mean"] == 40 and row["grokking_delay_std"] == pytest.approx(14.1421, abs=1e-4)
    assert "first_epoch_test_accuracy_1_mean" not in row  # run 1 never reached it: no mean over the others
    assert not any(key.startswith(("epoch", "wall_time", "seed")) for key in row)
    assert row["test_accuracy_mean"] == 0.75


def test_resume_leaves_alone_a_run_another_machine_trains_and_takes_up_one_gone_silent(tiny_base, tmp_path, capsys):
    """Two machines sharing the results folder (a local sweep there): a run whose status.json another host's
    process keeps beating is not trained again here; one silent for longer than STALE_S is, and report.py says
    'dead?' of it meanwhile."""
    import datetime

    import report
    from results import STALE_S, RunDir, atomic_write_json
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes",
                       "--no-wait"]) == 0
    folder = tmp_path / "results_new" / "0"
    ago = lambda s: (datetime.datetime.now().astimezone() - datetime.timedelta(seconds=s)).isoformat()  # noqa
    for name, age in (("0", 30), ("1", STALE_S + 120)):
        atomic_write_json(folder / name / "status.json", {"state": "running", "host": "another-node", "pid": 4242,
                                                          "heartbeat": ago(age)})
    rows = {r["run"]: r for r in report.rows(folder)}
    assert rows["0"]["status"] == "running" and rows["1"]["status"] == "dead?"
    capsys.readouterr()
    assert sweep.main(["--resume", "0", "--executor", "inprocess"]) == 1  # run 0 is not done
    err = capsys.readouterr().err
    assert "left alone, still training on another machine" in err and "run 0 (pid 4242 on another-node" in err
    assert "run 1" not in err.split("left alone")[1].split("\n")[0]
    assert RunDir(folder / "0").status()["host"] == "another-node"  # untouched
    assert RunDir(folder / "1").status()["state"] == "done"
    assert sweep.main(["--resume", "0", "--executor", "inprocess"]) == 1
    assert "nothing to resume now: run 0 of results_new/0 is still held" in capsys.readouterr().err  # (it said
    # 'every run is done; nothing to resume', exit 0)


def test_squeue_s_answer_outweighs_a_heartbeat_and_a_requeued_job_takes_its_own_run_back(tiny_base, tmp_path,
                                                                                         capsys, monkeypatch):
    """A worker killed with its SLURM job (scancel: SIGKILL) leaves a recent heartbeat; squeue no longer lists
    the job, so --resume takes the run up at once (the heartbeat held it 10 minutes, then 'every run is done').
    A job SLURM requeued onto another node finds its own earlier attempt's heartbeat: it is not another's."""
    import datetime

    import main
    from conftest import fake_slurm
    from results import RunDir, atomic_write_json
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes",
                       "--no-wait"]) == 0
    folder = tmp_path / "results_new" / "0"
    beat = (datetime.datetime.now().astimezone() - datetime.timedelta(seconds=30)).isoformat()
    for name in ("0", "1"):
        atomic_write_json(folder / name / "status.json", {"state": "running", "host": "node17", "pid": 4242,
                                                          "slurm_job": f"555_{name}", "heartbeat": beat})
    fake_slurm(tmp_path, monkeypatch, listed="555_1\\n")  # job 555_0 is gone, 555_1 still runs
    capsys.readouterr()
    assert sweep.main(["--resume", "0", "--executor", "inprocess"]) == 1  # (run 1 is not done yet)
    err = capsys.readouterr().err
    assert "left alone, SLURM still lists the jobs that hold them: run 1 (job 555_1)" in err
    assert "still training on another machine" not in err
    assert RunDir(folder / "0").status()["state"] == "done" and RunDir(folder / "1").status()["host"] == "node17"
    # the requeued job 555_1 on another node: its earlier attempt's status is its own
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "555")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert main.main(["--config", str(folder / "1" / "config.py"), "--results-path", str(folder / "1")]) == 0
    assert RunDir(folder / "1").status()["state"] == "done"


def test_a_count_forgotten_after_the_x_of_a_vary_value_is_told_how_values_are_written(tiny_base, capsys):
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0x", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "--vary seed=0x" in err and "values are written AxB, A repeated B times (e.g. 0x3)" in err
    assert "Traceback" not in err


def test_a_new_round_of_workers_does_not_say_the_same_counts_again(tiny_base, tmp_path):
    """After a worker killed with kill -9, new workers take its runs: the progress went on with a second line
    of the same counts ('1 failed, 2 queued' twice)."""
    import io
    from types import SimpleNamespace
    assert sweep.main(["--base", str(tiny_base), "--vary", "seed=0,1", "--executor", "inprocess", "--yes",
                       "--no-wait"]) == 0
    folder = tmp_path / "results_new" / "0"
    ended = SimpleNamespace(done=lambda: True, exception=lambda: None, job_id="1")
    worker = SimpleNamespace(run_names=[], token="t")
    first, second = io.StringIO(), io.StringIO()
    died, last = sweep.wait([ended], [worker], folder, ["0", "1"], out=first)
    assert not died and first.getvalue().endswith("] 2 queued\n")
    sweep.wait([ended], [worker], folder, ["0", "1"], out=second, last=last)
    assert second.getvalue() == ""


def test_local_workers_are_given_the_gpus_round_robin(tmp_path, monkeypatch):
    """submitit's local executor sets CUDA_VISIBLE_DEVICES to '' in its jobs unless told which GPUs to show:
    on a GPU machine every local run trained on the CPU. Each local worker now sees one GPU, round robin over
    those this process sees; in-process and SLURM workers are left as they are."""
    from worker import Worker
    local, inprocess = sweep.parse_args(["--executor", "local"]), sweep.parse_args(["--executor", "inprocess"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,GPU-5f1e")
    assert sweep.worker_devices(local, 3) == ["3", "GPU-5f1e", "3"]
    assert sweep.worker_devices(inprocess, 2) == [None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hidden here: hidden there
    assert sweep.worker_devices(local, 2) == [None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    worker = Worker(tmp_path, [], "t-0", threads=1, cuda_devices="GPU-5f1e")
    worker()  # no runs: it only sets what its job shows
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-5f1e"
