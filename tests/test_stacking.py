"""Replicates trained as one stacked model (stacking.py, `sweep.py --stack K`): every member writes what its
solo run writes, with the same numbers within floating-point reordering; a failing member fails alone; a
stacked sweep resumes; runs that cannot stack are trained one by one with a line saying why.

Tolerance: vmap runs batched kernels (bmm instead of mm, gathers instead of embedding_bag) whose sums are
ordered differently, and the stacked Adam is torch's single-tensor arithmetic where a solo run may use the
fused kernel; over these short runs (6-160 steps) every metric of every record agrees within a relative
1e-4 or an absolute 1e-5 (measured worst: 6e-4 relative, 6e-6 absolute, on assoc_memory's losses of about
0.01, which are differences of two nearby numbers; 2e-7 relative elsewhere). Steps, samples, epochs and the
record keys are equal exactly.
"""
import io
import json
import math
import types

import pytest
import torch

import main
import settings
import stacking
import sweep
import training
from conftest import fake_slurm, write_settings
from results import ResultsError, RunDir

REL, ABS = 1e-4, 1e-5
TIMINGS = ("elapsed", "eval_time")

GA = dict(task="group_arithmetic", hidden_size=32, n_epochs=20, eval_every=5, progress="off")
AM = dict(task="assoc_memory", N=6, d=8, H=4, batch_size=32, num_batch=8, n_epochs=20, eval_every=10, lr=3e-2,
          lr_end=1e-2, progress="off")
PC = dict(task="parity_cot", n_bits=8, k=3, n_embd=16, n_layer=1, n_head=2, batch_size=32, n_samples=32 * 6,
          eval_every_samples=None, eval_every_steps=3, n_valid=64, progress="off", entropy_samples=16, dropout=0.0)
TF = dict(task="target_functions", target_func="func10", sequence_length=8, train_set_size=20, test_set_size=20,
          model="bloom", n_layer=1, n_head=2, n_embd=16, batch_size=10, n_epochs=2, eval_every=1, lr=1e-2,
          eta_min=1e-4, data_cache=False, progress="off")
KG = dict(task="kg_reasoning", n_entities=12, n_relations=4, out_degree=3, test_share=0.2, ood_share=0.2, phi=3.0,
          n_layer=1, n_head=2, n_embd=16, batch_size=32, n_steps=6, warmup_steps=2, eval_every_steps=3, eval_size=40,
          progress="off")

# K = 3 members per programme, differing in what a stack may vary: seed, lr, weight decay, clipping, data seed
MEMBERS = {
    "group_arithmetic adam": [dict(GA, seed=0), dict(GA, seed=1, lr=0.003), dict(GA, seed=2, weight_decay=0.1)],
    "group_arithmetic adamw clipped": [dict(GA, seed=0, optim="adamw"),
                                       dict(GA, seed=1, optim="adamw", weight_decay=0.1, lr=0.003, max_grad_norm=0.5),
                                       dict(GA, seed=2, optim="adamw", max_grad_norm=0.1)],
    "group_arithmetic sgd": [dict(GA, seed=0, optim="sgd", lr=0.5), dict(GA, seed=1, optim="sgd", lr=0.2),
                             dict(GA, seed=2, optim="sgd", lr=0.5, weight_decay=1e-3)],
    # complex weights with per-member weight decay and lr (the stacked optimiser works on their real views)
    "group_arithmetic complex": [dict(GA, use_complex_weights=True, seed=0),
                                 dict(GA, use_complex_weights=True, seed=1, weight_decay=0.1, lr=0.003),
                                 dict(GA, use_complex_weights=True, seed=2, weight_decay=0.01)],
    "group_arithmetic complex seeds": [dict(GA, use_complex_weights=True, seed=s) for s in range(3)],
    "group_arithmetic complex sgd": [dict(GA, use_complex_weights=True, optim="sgd", lr=0.5 - 0.1 * s, seed=s,
                                          weight_decay=1e-3 * s, sgd_momentum=0.9) for s in range(3)],
    # bf16 autocast: the stacked output layer's backward in the forward's dtype, gradients in the weights'
    "group_arithmetic bf16": [dict(GA, mixed_precision="bf16", seed=s, lr=0.01 * (s + 1)) for s in range(3)],
    "assoc_memory": [dict(AM, seed=0), dict(AM, seed=1, data_seed=5, lr=1e-2), dict(AM, seed=2, lr_end=3e-3)],
    "parity_cot stream": [dict(PC, seed=0), dict(PC, seed=1, lr=3e-3), dict(PC, seed=2, weight_decay=0.1,
                                                                              max_grad_norm=0.0)],
    # a budget that ends in a part batch (the stack's last batch too holds what is left)
    "parity_cot stream part batch": [dict(PC, n_samples=32 * 6 - 7, seed=s) for s in range(3)],
    "parity_cot fixed set": [dict(PC, n_train=96, train_eval_size=32, seed=s) for s in range(3)],
    # dropout with the counter noise: each member's masks are its solo run's (seed, training call, place)
    # (a learning rate at which other masks would show in the metrics)
    "parity_cot dropout": [dict(PC, n_layer=2, dropout=0.3, dropout_noise="counter", lr=3e-2, seed=s,
                                data_seed=s % 2) for s in range(3)],
    "kg_reasoning": [dict(KG, seed=s, lr=1e-3 * (s + 1)) for s in range(3)],
    "target_functions bloom": [dict(TF, seed=0), dict(TF, seed=1, lr=3e-3), dict(TF, seed=2, weight_decay=0.1)],
    "target_functions qwen ensemble": [dict(TF, model="qwen0.6B", num_models=2, pooling="mean", seed=s)
                                       for s in range(3)],
}


def queue(folder, values_list):
    """Run folders as a sweep leaves them: resolved settings and status queued."""
    paths = []
    for i, values in enumerate(values_list):
        run = RunDir(folder / str(i))
        run.path.mkdir(parents=True)
        run.write_settings(settings.build(values))
        run.set_status("queued")
        paths.append(run.path)
    return paths


def assert_same_metrics(solo, stacked):
    a, b = RunDir(solo).read_metrics(), RunDir(stacked).read_metrics()
    assert len(a) == len(b) and a
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key, value in ra.items():
            if key in TIMINGS:
                continue
            if isinstance(value, float) and not isinstance(rb[key], bool):
                assert math.isclose(value, rb[key], rel_tol=REL, abs_tol=ABS), (key, ra["step"], value, rb[key])
            else:
                assert value == rb[key], (key, value, rb[key])


@pytest.mark.parametrize("name", list(MEMBERS))
def test_every_member_of_a_stack_of_three_gives_its_solo_run_s_metrics(name, tmp_path):
    check_stack_against_solo_runs(MEMBERS[name], tmp_path)


@pytest.mark.parametrize("name", ["group_arithmetic adam", "group_arithmetic bf16", "group_arithmetic complex"])
def test_the_stacked_group_mlp_off_a_cpu_uses_torch_s_ops_and_gives_the_same_metrics(name, tmp_path, monkeypatch):
    # on a GPU the stacked group MLP leaves its own CPU kernels (rows_sum, linear_rows) for vmap's rules: that
    # path, run here on the CPU
    import group_mlp
    monkeypatch.setattr(group_mlp, "CPU_KERNELS", False)
    used = []
    for op in ("rows_sum", "linear_rows"):
        monkeypatch.setattr(group_mlp, op, lambda *args, op=op: used.append(op))
    check_stack_against_solo_runs(MEMBERS[name], tmp_path)
    assert used == []


def check_stack_against_solo_runs(values_list, tmp_path):
    for i, values in enumerate(values_list):
        main.run(settings.build(values), tmp_path / "solo" / str(i))
    paths = queue(tmp_path / "stack", values_list)
    outcome = stacking.run_folders(paths)
    assert outcome == {str(p): "done" for p in paths}
    for i, path in enumerate(paths):
        solo = RunDir(tmp_path / "solo" / str(i))
        run = RunDir(path)
        assert_same_metrics(solo.path, path)
        assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in solo.path.iterdir())
        assert run.status()["state"] == "done"
        a, b = solo.summary(), run.summary()
        assert a.keys() == b.keys() and a["steps"] == b["steps"] and a["samples"] == b["samples"]
        log = (path / "logs.log").read_text()
        assert "stacked with runs 0, 1, 2" in log and "summary:" in log


@pytest.mark.parametrize("kind", [torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_the_stacked_adam_of_members_sharing_their_hyper_parameters_is_torch_s_bit_for_bit(kind, dtype):
    # two parameter groups (one without weight decay), gradients missing in some steps, state resumed from
    # solo steps: every member's parameters and state equal those of torch's own single-tensor Adam
    shapes = {"a": (4, 5), "b": (5,), "c": (3, 2)}
    torch.manual_seed(0)
    members = []
    for _ in range(3):
        model = torch.nn.Module()
        for name, shape in shapes.items():
            model.register_parameter(name, torch.nn.Parameter(torch.randn(shape, dtype=dtype)))
        groups = [{"params": [model.a, model.c]}, {"params": [model.b], "weight_decay": 0.0}]
        members.append(types.SimpleNamespace(model=model, optimizer=kind(groups, lr=1e-2, weight_decay=0.1,
                                                                          foreach=False)))
    for step in range(2):  # resumed: the members' own steps first
        for m in members:
            for name, p in m.model.named_parameters():
                p.grad = None if name == "c" and step else torch.randn_like(p)
            m.optimizer.step()
    params = {n: torch.stack([getattr(m.model, n).detach() for m in members]).clone() for n in shapes}
    stacked = stacking.StackedOptimizer(members, params)
    for step in range(4):
        for name, p in params.items():
            p.grad = None if name == "c" and step in (1, 2) else torch.randn(p.shape, dtype=dtype)
            for k, m in enumerate(members):
                getattr(m.model, name).grad = None if p.grad is None else p.grad[k].clone()
        stacked.step(members)
        for m in members:
            m.optimizer.step()
    for k, m in enumerate(members):
        solo = {n: {key: value.clone() for key, value in m.optimizer.state[getattr(m.model, n)].items()} for n in shapes}
        stacked.member_state(k, m)
        for name in shapes:
            assert torch.equal(params[name][k], getattr(m.model, name).detach()), (name, k)
            mine = m.optimizer.state[getattr(m.model, name)]
            assert float(mine["step"]) == float(solo[name]["step"])
            assert torch.equal(mine["exp_avg"], solo[name]["exp_avg"])
            assert torch.equal(mine["exp_avg_sq"], solo[name]["exp_avg_sq"])


def test_a_member_whose_loss_turns_non_finite_fails_alone(tmp_path, monkeypatch):
    values_list = [dict(GA, seed=0, optim="sgd", lr=0.5), dict(GA, seed=1, optim="sgd", lr=1e30),
                   dict(GA, seed=2, optim="sgd", lr=0.2)]
    with pytest.raises(main.RunFailed) as solo_error:
        main.run(settings.build(values_list[1]), tmp_path / "solo_1")
    main.run(settings.build(values_list[2]), tmp_path / "solo_2")
    paths = queue(tmp_path / "stack", values_list)
    seen, record_eval = [], stacking.Stack.record_eval

    def record_and_look(stack):  # the failed member's status while the others still train
        seen.append(RunDir(paths[1]).status()["state"])
        return record_eval(stack)
    monkeypatch.setattr(stacking.Stack, "record_eval", record_and_look)
    outcome = stacking.run_folders(paths)
    assert [outcome[str(p)] for p in paths] == ["done", "failed", "done"]
    assert seen[0] == "running" and seen[-1] == "failed"  # marked when it left the stack, not at the end
    failed = RunDir(paths[1])
    assert failed.status()["error"] == str(solo_error.value)  # the solo run's message, word for word
    assert "FloatingPointError: training loss became" in failed.status()["error"]
    assert "run failed" in (paths[1] / "logs.log").read_text() and failed.summary() is None
    assert failed.read_metrics() == [] or failed.read_metrics()[0]["step"] == 0
    assert_same_metrics(tmp_path / "solo_2", paths[2])  # the others went on, unaffected


def interrupt_at_checkpoint(count, paths, monkeypatch):
    """Train the stack of `paths`, stopped (KeyboardInterrupt) when it saves its checkpoint number count + 1."""
    saved, real = [], training._save_checkpoint

    def stop(path, *args):
        if len(saved) == count:
            raise KeyboardInterrupt
        saved.append(path)
        real(path, *args)

    with monkeypatch.context() as patch:
        patch.setattr(training, "_save_checkpoint", stop)
        with pytest.raises(KeyboardInterrupt):
            stacking.run_folders(paths)


def test_a_stacked_sweep_resumes_after_an_interruption(tmp_path, monkeypatch):
    base = write_settings(tmp_path / "base.py", dict(AM, n_epochs=12, eval_every=4, checkpoint_every=4))
    assert sweep.main(["--base", str(base), "--vary", "seed=0x3", "--executor", "inprocess", "--stack", "3",
                       "--no-wait", "--yes"]) == 0
    folder = tmp_path / "results_new" / "0"
    manifest = json.loads((folder / "sweep.json").read_text())
    assert manifest["submissions"][0]["stacks"] == [["0", "1", "2"]]
    # interrupted while saving the second round of checkpoints (epoch 8): each member has epoch 4's
    interrupt_at_checkpoint(3, [folder / n for n in "012"], monkeypatch)
    assert [RunDir(folder / n).status()["state"] for n in "012"] == ["interrupted"] * 3
    assert all((folder / n / "checkpoint.pt").exists() for n in "012")

    assert sweep.main(["--resume", "0", "--executor", "inprocess"]) == 0
    manifest = json.loads((folder / "sweep.json").read_text())
    assert manifest["submissions"][-1]["stacks"] == [["0", "1", "2"]]  # --stack 3 reused by the resume
    for i, name in enumerate("012"):
        run = RunDir(folder / name)
        assert run.status()["state"] == "done" and run.status()["attempts"] == 1
        assert "resumed from checkpoint at step 32" in (run.path / "logs.log").read_text()
        assert not (run.path / "checkpoint.pt").exists()
        main.run(settings.build(dict(AM, n_epochs=12, eval_every=4, checkpoint_every=4, seed=i)),
                 tmp_path / "solo" / name)
        assert_same_metrics(tmp_path / "solo" / name, run.path)  # as if never stopped, and as if alone


def test_members_resuming_from_different_steps_stack_by_step(tmp_path, capsys, monkeypatch):
    # (lr 1e-2: at AM's 3e-2 seed 3's losses are chaotic enough that a stack's reordered sums move its loss
    # by 4e-3 relative by step 64, resumed or not)
    values = [dict(AM, n_epochs=12, eval_every=4, checkpoint_every=4, seed=s, lr=1e-2) for s in range(5)]
    paths = queue(tmp_path / "stack", values)
    # stopped while saving the second round of checkpoints, after members 0, 1 and 2 saved theirs (step 64)
    interrupt_at_checkpoint(8, paths, monkeypatch)
    capsys.readouterr()
    # and run 4's checkpoint gone: it starts again from step 0
    (paths[4] / "checkpoint.pt").unlink()

    outcome = stacking.run_folders(paths)
    assert outcome == {str(p): "done" for p in paths}
    out = capsys.readouterr().out
    assert "runs 0, 1, 2, 3, 4 resume from different steps (step 64: runs 0, 1, 2; step 32: run 3; step 0: " \
           "run 4)" in out
    for i, path in enumerate(paths):
        log = (path / "logs.log").read_text()
        if i < 3:  # stacked again, from their checkpoints
            assert "stacked with runs 0, 1, 2 (3 members" in log and "resumed from checkpoint at step 64" in log
        else:  # each alone, run 3 from the checkpoint its stack wrote (a stacked member's is a solo run's)
            why = f"it resumes from step {32 if i == 3 else 0}, no other run of its stack from there"
            assert f"trained alone, not stacked: {why}" in log and RunDir(path).status()["stack_refused"] == why
            assert ("resumed from checkpoint at step 32" in log) == (i == 3)
        main.run(settings.build(values[i]), tmp_path / "solo" / str(i))
        assert_same_metrics(tmp_path / "solo" / str(i), path)  # as if never stopped, and as if alone


def test_a_refusal_of_an_earlier_attempt_goes_when_the_stack_forms(tmp_path, monkeypatch):
    # attempt 1 (a SLURM node short of memory): the stack is refused and the first run is preempted; attempt 2
    # (the same worker requeued, its runs not reset to queued) stacks them
    paths = queue(tmp_path, [dict(GA, seed=0, n_epochs=4), dict(GA, seed=1, n_epochs=4)])

    def short_of_memory(settings, copies=1):
        if copies > 1:
            raise training.MemoryRefused("these 2 stacked runs need too much")

    def preempted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(training, "check_memory", short_of_memory)
        patch.setattr(training, "train", preempted)
        with pytest.raises(KeyboardInterrupt):
            stacking.run_folders(paths)
    assert "stack_refused" in RunDir(paths[0]).status()
    assert stacking.run_folders(paths) == {str(p): "done" for p in paths}
    status = RunDir(paths[0]).status()
    assert status["stacked_with"] == ["0", "1"] and "stack_refused" not in status
    out = io.StringIO()
    sweep.final_report(tmp_path, ["0", "1"], out=out)
    assert "not stacked" not in out.getvalue()


def test_runs_a_worker_finished_stay_done_when_a_later_one_of_its_stack_breaks(tmp_path, monkeypatch):
    import worker
    values = [dict(AM, n_epochs=12, eval_every=4, checkpoint_every=4, seed=s, lr=1e-2) for s in range(3)]
    paths = queue(tmp_path, values)
    interrupt_at_checkpoint(5, paths, monkeypatch)  # runs 0 and 1 at step 64, run 2 at step 32

    def disk_full(path, echo=False, note=None):  # run 2, trained alone after runs 0 and 1 stacked
        raise ResultsError(f"{path}: no space left on the device")

    monkeypatch.setattr(main, "run_folder", disk_full)
    job = worker.Worker(tmp_path, ["0", "1", "2"], "token", units=[["0", "1", "2"]])
    assert all(RunDir(path).claim("token") for path in paths)
    assert job._train_stack(["0", "1", "2"]) == {"0": "done", "1": "done", "2": "failed"}
    assert [RunDir(path).status()["state"] for path in paths] == ["done", "done", "failed"]


def test_runs_that_cannot_stack_are_trained_one_by_one_with_a_line_saying_why(tmp_path, capsys, monkeypatch):
    import tasks.kg_reasoning
    monkeypatch.setattr(tasks.kg_reasoning.Task, "stackable", False)  # what a task whose model cannot stack says
    monkeypatch.setattr(tasks.kg_reasoning.Task, "stack_note", "its model has no batching rule")
    runs = [(str(i), settings.build(v)) for i, v in enumerate(
        [dict(GA, seed=0), dict(GA, seed=1), dict(GA, seed=2, hidden_size=16), dict(PC, seed=0, dropout=0.1, dropout_noise="torch"),
         dict(KG, seed=0), dict(GA, seed=3, optim="muon"), dict(GA, seed=4), dict(TF, seed=0, dropout=0.1)])]
    units, alone = stacking.plan_stacks(runs, 2)
    lines = [f"run {name} trains alone: {why}" for name, why in alone.items()]
    assert units == [["0", "1"], ["6"], ["2"], ["3"], ["4"], ["5"], ["7"]]
    text = "\n".join(lines)
    assert "run 2 trains alone: no other run can stack with it (it differs from run 0 in hidden_size)" in text
    assert "run 3 trains alone: dropout = 0.1 draws random masks" in text
    assert stacking.refusal(settings.build(dict(PC, seed=0, dropout=0.1, dropout_noise="counter"))) is None
    # on a GPU the model's own dropout runs (the counter noise is the CPU forward's): refused there
    with monkeypatch.context() as patch:
        patch.setattr(stacking.torch.cuda, "is_available", lambda: True)
        assert "on a GPU draws torch's masks" in stacking.refusal(
            settings.build(dict(PC, seed=0, dropout=0.1, dropout_noise="counter")))
        assert stacking.refusal(settings.build(dict(PC, seed=0, dropout=0.1, dropout_noise="counter",
                                                    device="cpu"))) is None
    assert "run 4 trains alone: task kg_reasoning's model does not stack: its model has no batching rule" in text
    assert "run 5 trains alone: optim = 'muon' does not stack" in text
    assert "run 7 trains alone: dropout = 0.1" in text
    assert "run 6 trains alone: the 2 other runs of its shape fill stacks of at most 2" in text

    # the same through a sweep: the manifest says which runs were trained together, and why others not
    base = write_settings(tmp_path / "base.py", dict(GA, n_epochs=4))
    assert sweep.main(["--base", str(base), "--vary", "hidden_size=16,32", "--vary", "seed=0x2",
                       "--executor", "inprocess", "--stack", "3", "--yes"]) == 0
    folder = tmp_path / "results_new" / "0"
    submission = json.loads((folder / "sweep.json").read_text())["submissions"][0]
    assert submission["stacks"] == [["0", "1"], ["2", "3"]] and submission["options"]["stack"] == 3
    assert "--stack 3: 2 stacks (0,1 | 2,3); runs stack apart where they differ in hidden_size" in \
        capsys.readouterr().err
    assert "stacked with runs 2, 3" in (folder / "3" / "logs.log").read_text()
    assert RunDir(folder / "3").status()["stacked_with"] == ["2", "3"]
    # a run the plan leaves alone says why in its own log too
    assert sweep.main(["--base", str(base), "--vary", "optim=adam,muon", "--vary", "seed=0x2",
                       "--executor", "inprocess", "--stack", "2", "--yes"]) == 0
    assert "--stack 2: 1 stack (0,1)" in capsys.readouterr().err
    log = (tmp_path / "results_new" / "1" / "2" / "logs.log").read_text()
    assert "trained alone, not stacked: optim = 'muon' does not stack" in log and "stacked with" not in log

    # runs handed to one stack that turn out not to stack are trained alone, with the reason in the worker's
    # output, their logs, their status and the sweep's last report
    paths = queue(tmp_path / "odd", [dict(GA, seed=0), dict(GA, seed=1, hidden_size=16)])
    assert stacking.run_folders(paths) == {str(p): "done" for p in paths}
    assert "trained one by one: run 1 differs from run 0 in hidden_size" in capsys.readouterr().out
    why = "run 1 differs from run 0 in hidden_size (stack of runs 0, 1)"
    for path in paths:
        log = (path / "logs.log").read_text()
        assert f"trained alone, not stacked: {why}" in log and "stacked with" not in log
        assert RunDir(path).status()["stack_refused"] == why and "stacked_with" not in RunDir(path).status()
    out = io.StringIO()
    sweep.final_report(tmp_path / "odd", ["0", "1"], out=out)
    assert f"runs 0, 1 trained alone, not stacked: {why}" in out.getvalue()


def test_stack_must_be_at_least_one(capsys):
    with pytest.raises(SystemExit) as exit_:
        sweep.main(["--base", "x.py", "--stack", "0", "--yes"])
    assert exit_.value.code == 2
    assert "--stack must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("extra, words", [
    (dict(normalize=True), "normalize re-centres W after every step of the run's own optimiser"),
    (dict(use_inner_product_act=True), "only the MLP stacks"),
])
def test_group_arithmetic_options_a_stack_would_drop_are_refused_with_a_line(extra, words):
    assert words in stacking.refusal(settings.build(dict(GA, **extra)))
    assert stacking.refusal(settings.build(GA)) is None


def test_a_stack_too_large_for_the_memory_trains_its_runs_one_by_one(tmp_path, capsys, monkeypatch):
    import training
    need = sum(training.tasks.get("group_arithmetic").memory_estimate(settings.build(GA)).values())
    monkeypatch.setattr(training.tasks.get("group_arithmetic"), "memory_estimate",
                        classmethod(lambda cls, s, eval_batch=None: {"the model's batch": 1000}))
    one = 1000 + sum(training.parameter_memory(settings.build(GA)).values())  # a member's batch and parameters
    monkeypatch.setattr(training, "free_memory", lambda on_gpu: one * 3 // 2)  # one member fits, two do not
    paths = queue(tmp_path / "big", [dict(GA, seed=0), dict(GA, seed=1)])
    assert stacking.run_folders(paths) == {str(p): "done" for p in paths}
    assert "trained one by one: these 2 stacked runs need at least" in capsys.readouterr().out
    assert need == 0  # group arithmetic declares no floor of its own (its table size is capped at validation)


def test_solo_runs_and_stacks_are_trained_by_the_one_loop(tmp_path, monkeypatch):
    # training.loop is the one loop (DESIGN.md): a solo run hands it a training.Solo, a stack a stacking.Stack
    # holding every member; a second loop in stacking.py would bypass it
    seen, real = [], training.loop

    def spy(trainer, desc):
        seen.append((type(trainer).__name__, [r.run_dir.path.name for r in trainer.runs], desc))
        return real(trainer, desc)
    monkeypatch.setattr(training, "loop", spy)
    main.run(settings.build(dict(GA, n_epochs=2)), tmp_path / "solo")
    paths = queue(tmp_path / "stack", [dict(GA, n_epochs=2, seed=s) for s in range(2)])
    assert stacking.run_folders(paths) == {str(p): "done" for p in paths}
    assert seen == [("Solo", ["solo"], "group_arithmetic"), ("Stack", ["0", "1"], "group_arithmetic x2")]


def test_a_slurm_sweep_submits_one_array_task_per_stack(tmp_path, monkeypatch):
    # --stack with --executor slurm: each array task trains whole stacks (runs_per_job units), never a split one
    fake = fake_slurm(tmp_path, monkeypatch)
    base = write_settings(tmp_path / "base.py", dict(GA, n_epochs=4))
    assert sweep.main(["--base", str(base), "--vary", "seed=0x5", "--executor", "slurm", "--stack", "2",
                       "--yes"]) == 0
    submission = json.loads((tmp_path / "results_new" / "0" / "sweep.json").read_text())["submissions"][0]
    assert submission["stacks"] == [["0", "1"], ["2", "3"]]  # 5 runs, K = 2: two stacks and run 4 alone
    assert any("run 4 trains alone" in line for line in submission["trained_alone"])
    assert "#SBATCH --array=0-2" in (fake / "submitted.sh").read_text()  # 3 units: 2 stacks and one run


def test_a_stack_in_16_bits_says_in_each_member_s_log_how_far_it_agrees(tmp_path):
    paths = queue(tmp_path, MEMBERS["group_arithmetic bf16"])
    assert set(stacking.run_folders(paths).values()) == {"done"}
    for path in paths:
        assert "note: mixed_precision = 'bf16' computes in 16 bits" in (path / "logs.log").read_text()
    # float32 members get no such note
    paths = queue(tmp_path / "fp32", MEMBERS["group_arithmetic adam"])
    stacking.run_folders(paths)
    assert "computes in 16 bits" not in (paths[0] / "logs.log").read_text()


def test_a_member_finished_alone_no_longer_claims_its_stack(tmp_path):
    """A stacked member interrupted, then finished with main.py alone: its status drops stacked_with and its
    log says from where it trained alone."""
    paths = queue(tmp_path, MEMBERS["kg_reasoning"][:2])
    for path in paths:
        RunDir(path).set_status("interrupted", stacked_with=["0", "1"])
    main.run(settings.build(RunDir(paths[1]).config()), paths[1])
    status = RunDir(paths[1]).status()
    assert status["state"] == "done" and "stacked_with" not in status
    assert "trained alone from here (an earlier attempt was stacked with runs 0, 1)" in \
        (paths[1] / "logs.log").read_text()


def test_fp16_runs_are_trained_one_by_one_with_the_reason():
    """A solo fp16 run scales its loss with its own GradScaler; a stack's one backward had none (its members
    trained unscaled on a GPU): fp16 runs do not stack, and say why."""
    why = stacking.refusal(settings.build({**GA, "mixed_precision": "fp16"}))
    assert why and "mixed_precision = 'fp16'" in why and "GradScaler" in why
    assert stacking.refusal(settings.build({**GA, "mixed_precision": "bf16"})) is None
