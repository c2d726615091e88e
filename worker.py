"""The job that submitit runs: one Python process that trains many runs of a sweep, one after another.

A worker takes a list of run folders and, for each that is not done, claims it (an exclusive link, so
two workers never train the same run) and trains it. Paying the interpreter start and the imports of
torch/transformers once per worker instead of once per run is what makes a sweep of small runs cheap.
A failing run is marked failed and the worker goes on with the next one.

On SLURM the worker is checkpointable: on preemption or timeout submitit calls `checkpoint()` and
requeues the same worker; it recognises its own claims and resumes each run from what the run folder
holds (the run's checkpoint.pt where a checkpoint interval is set, otherwise from the start).
"""
import os
import signal

from results import RunDir


class Worker:
    def __init__(self, experiment_dir, run_names, token, threads=None):
        self.experiment_dir = str(experiment_dir)
        self.run_names = list(run_names)
        self.token = token
        self.threads = threads

    def __call__(self):
        # Ctrl-C / sweep.py's stop reach a worker as SIGINT, which a sweep started in the background by a
        # script inherits as ignored: take it back, so that a stop request is honoured
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import torch
        share = self.threads or torch.get_num_threads()
        import main  # the run entry point; imported here so the submitting process stays light

        outcome = {}
        for name in self.run_names:
            run_dir = RunDir(os.path.join(self.experiment_dir, name))
            if run_dir.status().get("state") == "done" or not run_dir.claim(self.token):
                continue
            torch.set_num_threads(share)  # what a run with threads = 0 gets, whatever the run before it set
            try:
                main.run_folder(run_dir.path)
                outcome[name] = "done"
            except main.RunFailed:
                outcome[name] = "failed"
            except Exception as exc:  # config unreadable, disk full while writing status, ...
                outcome[name] = "failed"
                try:
                    run_dir.set_status("failed", error=f"{type(exc).__name__}: {exc}")
                except OSError:
                    pass
        return outcome

    def checkpoint(self, *args, **kwargs):
        import submitit
        return submitit.helpers.DelayedSubmission(self)
