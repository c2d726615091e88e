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
import sys

from results import RunDir, log_line, out_of_time


class Worker:
    def __init__(self, experiment_dir, run_names, token, threads=None, units=None, alone=None, cuda_devices=None):
        self.experiment_dir = str(experiment_dir)
        self.run_names = list(run_names)
        self.token = token
        self.threads = threads
        # the runs in the order trained: each unit a list of runs trained together as one stacked model
        # (sweep.py --stack K), or a single run
        self.units = [list(u) for u in units] if units else [[name] for name in self.run_names]
        self.alone = dict(alone or {})  # run -> why it trains alone though the sweep stacks (--stack)
        self.cuda_devices = cuda_devices  # a local worker's GPU (sweep.worker_devices); None: as it is

    def __call__(self):
        # Ctrl-C / sweep.py's stop reach a worker as SIGINT, which a sweep started in the background by a
        # script inherits as ignored: take it back, so that a stop request is honoured
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if getattr(self, "cuda_devices", None) is not None:  # before CUDA starts (a worker pickled earlier has none)
            os.environ["CUDA_VISIBLE_DEVICES"] = self.cuda_devices
        import torch
        share = self.threads or torch.get_num_threads()
        import main  # the run entry point; imported here so the submitting process stays light

        outcome = {}
        # a worker pickled before stacking existed has no units
        for unit in getattr(self, "units", None) or [[name] for name in self.run_names]:
            names = [name for name in unit if self._take(name)]
            torch.set_num_threads(share)  # what a run with threads = 0 gets, whatever the run before it set
            self.current = names
            if len(names) > 1:
                outcome.update(self._train_stack(names))
            elif names:
                outcome[names[0]] = self._train_alone(main, names[0])
            self.current = []
            if [name for name in names if self._out_of_time(name)]:  # (every member told, not the first only)
                break  # the job's time is up: the runs not reached stay queued for a resume
        return outcome

    def _out_of_time(self, name):
        """Whether the run failed because submitit would not requeue the job again (its time limit reached
        more often than it requeues); its status and logs.log then say so and what to do."""
        run_dir = RunDir(os.path.join(self.experiment_dir, name))
        if not out_of_time(run_dir):
            return False
        status = run_dir.status()
        why = ("the job reached its time limit (sweep.py --time) more often than submitit requeues a job (3 times "
               "by default): raise --time, or set a checkpoint interval "
               "(checkpoint_every, _steps or _samples) so that each attempt goes on from the last, then resume the "
               f"sweep (submitit: {status.get('error')})")
        run_dir.set_status("failed", error=why)
        log_line(run_dir, why, error=True)
        return True

    def _take(self, name):
        """Whether this worker trains the run now: not done, and claimed by this worker. A claim the disk
        refuses (full, read-only) leaves the run queued, said in one line, for a resume once it is fixed."""
        run_dir = RunDir(os.path.join(self.experiment_dir, name))
        if run_dir.status().get("state") == "done":
            return False
        try:
            return run_dir.claim(self.token)
        except OSError as exc:
            print(f"worker: cannot claim run {name} in {self.experiment_dir} ({exc.strerror or exc}); it stays "
                  "queued: free space or fix the folder, then resume the sweep", file=sys.stderr, flush=True)
            return False

    def _train_alone(self, main, name):
        run_dir = RunDir(os.path.join(self.experiment_dir, name))
        why = getattr(self, "alone", {}).get(name)  # (a worker pickled before this existed has none)
        try:
            main.run_folder(run_dir.path, note=main.alone_note(why) if why else None)
            return "done"
        except main.RunFailed:
            return "failed"
        except Exception as exc:  # config unreadable, disk full while writing status, ...
            self._mark_failed(run_dir, exc)
            return "failed"

    def _train_stack(self, names):
        import stacking
        paths = {os.path.join(self.experiment_dir, name): name for name in names}
        try:
            outcomes = stacking.run_folders(list(paths))
            return {paths[path]: state for path, state in outcomes.items()}
        except Exception as exc:  # noqa: BLE001 - what run_folders could not even mark itself
            outcome = {}
            for path, name in paths.items():  # runs it finished before (a stack by step, one by one) stay done
                if RunDir(path).status().get("state") == "done":
                    outcome[name] = "done"
                else:
                    self._mark_failed(RunDir(path), exc)
                    outcome[name] = "failed"
            return outcome

    @staticmethod
    def _mark_failed(run_dir, exc):
        try:
            run_dir.set_status("failed", error=f"{type(exc).__name__}: {exc}")
        except OSError:
            pass

    def checkpoint(self, *args, **kwargs):
        """submitit calls this where the job's time limit is reached (or it is preempted): the job is requeued,
        this worker with it (pickled, with the count of such ends), unless it was requeued too often already.
        Each run in progress says so in its logs.log, and from where it will go on."""
        import submitit
        self.timeouts = getattr(self, "timeouts", 0) + 1
        for name in getattr(self, "current", []):
            run_dir = RunDir(os.path.join(self.experiment_dir, name))
            where = ("from its last checkpoint.pt" if run_dir.file("checkpoint.pt").exists() else
                     "from the start: it has no checkpoint yet (set a checkpoint interval, checkpoint_every, _steps "
                     "or _samples, so that a requeued run goes on)")
            log_line(run_dir, f"the job's time limit (sweep.py --time) was reached, or the job was preempted "
                          f"({self.timeouts} time(s) so far): submitit requeues it, unless it did so too often "
                          f"already; the run then goes on {where}")
        self.current = []
        return submitit.helpers.DelayedSubmission(self)
