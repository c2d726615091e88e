"""Numbered result folders: race-free ids, atomic files, run status and metrics.

Layout (Sacred's file observer is the model):
    results_new/<experiment_id>/sweep.json          manifest of a sweep (grid, answers, job ids)
    results_new/<experiment_id>/<n>/config.py       resolved settings, accepted by main.py --config
                                   /config.json     the same as JSON
                                   /status.json     queued | running | done | failed | interrupted
                                   /logs.log        settings, data facts, model size, one line per evaluation
                                   /metrics.jsonl   one JSON object per evaluation
                                   /summary.json    final and best metrics, wall time
Every file except the append-only logs.log is written to a temporary name in the same folder and then
renamed over the target, so a crash, Ctrl-C or a full disk never leaves a half-written file.
"""
import datetime
import errno
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS_ROOT = Path("results_new")
STATES = ("queued", "running", "done", "failed", "interrupted")
HEARTBEAT_S = 60  # a running run's status.json says its process is alive this often ('heartbeat', Sacred's)
STALE_S = 10 * 60  # a heartbeat older than this: the process that wrote it is taken to be gone


def quoted(path):
    """A path as a shell word, for the commands our messages suggest: a folder with a space or a quote in its
    name pastes back as one argument."""
    return shlex.quote(str(path))


def resume_command(folder):
    """The command that resumes the sweep in `folder` (naming its --results-root unless it is the default)."""
    folder = Path(folder)
    return f"python sweep.py --resume {quoted(folder.name)}" + (
        f" --results-root {quoted(folder.parent)}" if folder.parent != RESULTS_ROOT else "")


class ResultsError(RuntimeError):
    """A problem with the results folders that the user must act on (full disk, missing folder)."""


def now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _umask():
    """The process's umask, read without changing it where Linux shows it (os.umask can only be read by
    setting it, which briefly changes it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_replace(path, write):
    """Create path through write(temporary path in the same folder), an fsync and a rename: readers see
    the old or the new file, never a partial one. A full disk raises ResultsError; the old file stays.
    The file gets the mode a plain open() would give (0666 less the umask), not mkstemp's private 0600,
    so colleagues can read a shared results folder."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        refused = write_refused(exc, path)
        if refused is not None:
            raise refused from exc
        raise
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            written = os.path.getsize(tmp)
            os.unlink(tmp)
        except OSError:
            written = None
        refused = write_refused(exc, path, written)
        if refused is not None:
            raise refused from exc
        raise


def write_refused(exc, path, written=None):
    """The ResultsError to raise for a write of `path` that failed for a reason the user must mend (a full
    disk, a file size limit, a folder made read-only), naming it and the fix; None for any other error.
    written: the bytes the failed write had put in its temporary file, where known."""
    if disk_full(exc, path.parent):
        return ResultsError(f"disk full while writing {path}; files already written are intact; free space on "
                            "that disk and resume the run")
    if file_size_limit(exc, written):
        limit = _fsize_limit()
        which = (f"the file size limit (ulimit -f, {limit} bytes)" if limit is not None else
                 "the file system's largest file size")
        return ResultsError(f"{which} stopped the writing of {path}; files already written are intact; raise the "
                            "limit (or write elsewhere) and resume the run")
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ResultsError(f"cannot write into {path.parent}: {exc.strerror}; files already written are intact; "
                            "make it writable again and resume the run")
    return None


def disk_full(exc, folder):
    """Whether exc is a write that failed for lack of space: ENOSPC, or a library's own error (torch.save
    raises RuntimeError 'file write failed') on a disk with almost nothing left."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, RuntimeError):
        try:
            return shutil.disk_usage(folder).free < 64 * 2 ** 20
        except OSError:
            return False
    return False


def _fsize_limit():
    """The process's file size limit in bytes (RLIMIT_FSIZE, `ulimit -f`); None where there is none."""
    try:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if limit == resource.RLIM_INFINITY else limit


def file_size_limit(exc, written=None):
    """Whether exc is a write stopped by a file size limit: EFBIG, or a library's own error (torch.save's
    RuntimeError) where `ulimit -f` is set and the write had reached it (`written` bytes, within 1 MiB)."""
    if isinstance(exc, OSError):
        return exc.errno == errno.EFBIG
    limit = _fsize_limit()
    return (isinstance(exc, RuntimeError) and limit is not None and written is not None
            and written >= limit - 2 ** 20)


def _rewrite_in_place(path, text):
    """On a full disk, where no new file can be made: text written over the existing file (within the block
    it already holds, so no new space is needed), truncated and synced. False where that fails too, or the
    text would need more room than the old file's first block."""
    data = text.encode("utf-8")
    if not path.exists() or len(data) > 4096:
        return False
    try:
        with open(path, "r+b") as f:
            f.write(data)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError:
        return False


def atomic_write(path, text):
    """Write text to path atomically (atomic_replace)."""
    atomic_replace(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path, default=None):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def slurm_job_id():
    """This process's SLURM job as squeue names it (123_4 for an array task), or None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def holder_alive(status):
    """Whether the process a `running` status names is alive on this machine (False for another host:
    nothing can be known of it from here)."""
    if status.get("host") != socket.gethostname() or not status.get("pid"):
        return False
    pid = int(status["pid"]) if str(status["pid"]).isdigit() else None
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a killed worker not yet reaped by init is a zombie: it answers os.kill but runs nothing
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def heartbeat_age(status):
    """Seconds since the heartbeat a status records (None where it has none)."""
    try:
        return max(0.0, time.time() - datetime.datetime.fromisoformat(status["heartbeat"]).timestamp())
    except (KeyError, TypeError, ValueError):
        return None


def heard_from_elsewhere(status):
    """For a run marked running by a process on another machine (whose pid cannot be asked from here): the
    seconds since its heartbeat where that is recent (under STALE_S: the process is most likely training it
    still), else None."""
    if status.get("state") != "running" or status.get("host") in (None, socket.gethostname()):
        return None
    if status.get("slurm_job") and str(status["slurm_job"]) == slurm_job_id():  # this SLURM job's own earlier
        return None  # attempt, requeued onto another node (its process there is gone)
    age = heartbeat_age(status)
    return age if age is not None and age < STALE_S else None


_status_lock = threading.RLock()  # status.json's read-modify-write, between a run's thread and the heartbeat's
_beating = {}  # path -> RunDir of the runs this process marked running
_heart = None


def _forked():
    """A child forked while the heartbeat thread held the lock would wait for it forever; it has no heartbeat
    thread, and its parent's runs are not its own."""
    global _status_lock, _heart
    _status_lock, _heart = threading.RLock(), None
    _beating.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _beat():
    """The heartbeat thread: every HEARTBEAT_S seconds, each run this process is training says so in its
    status.json. A write that fails (a full disk) is tried again at the next beat."""
    while True:
        time.sleep(HEARTBEAT_S)
        _beat_once()


def _beat_once():
    for run in list(_beating.values()):
        try:
            with _status_lock:
                status = run.status()
                if status.get("state") == "running" and status.get("pid") == os.getpid() \
                        and status.get("host") == socket.gethostname():
                    run._write_status({**status, "heartbeat": now()}, {})
        except Exception:  # noqa: BLE001 (a beat missed is not the run's failure)
            pass


def _keep_beating(run, running):
    global _heart
    if not running:
        _beating.pop(run.path, None)
        return
    _beating[run.path] = run
    if _heart is None or not _heart.is_alive():
        _heart = threading.Thread(target=_beat, name="heartbeat", daemon=True)
        _heart.start()


def ensure_writable(folder, hint):
    """Create folder if needed and prove that a file can be written in it, so that a read-only or
    misplaced folder is refused before any work; ResultsError naming the folder and `hint` otherwise."""
    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ResultsError(f"cannot write into {folder}: {blocker} is a file, not a folder; {hint}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ResultsError(f"cannot write into {folder}: {exc.strerror or exc}; {hint}") from exc
    return folder


def allocate_dir(root, first=None, retries=1000):
    """Create and return a new numbered folder under root, race-free.

    The candidate is max(existing)+1 and the folder is taken with an exclusive mkdir; on a clash
    (another process took it first, or a stale listing on a network file system) try the next number.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
    candidate = max(taken, default=-1) + 1 if first is None else first
    for _ in range(retries):
        try:
            (root / str(candidate)).mkdir()
            return candidate, root / str(candidate)
        except FileExistsError:
            candidate += 1
    raise ResultsError(f"could not allocate a new folder under {root} after {retries} tries")


class RunDir:
    """One run's folder and the files in it."""

    def __init__(self, path):
        self.path = Path(path)

    def file(self, name):
        return self.path / name

    # ---- status
    def status(self):
        return read_json(self.file("status.json"), default={"state": "missing"})

    def set_status(self, state, **extra):
        """Write status.json: `state` and `extra` fields over the fields it had (an extra field given as None
        is removed)."""
        assert state in STATES, state
        try:
            with _status_lock:
                self._set_status(state, extra)
        finally:  # (a run that ends leaves the heartbeat even where its last status could not be written; one
            _keep_beating(self, state == "running")  # whose 'running' was not, the beat passes over)

    def _set_status(self, state, extra):
        record = {**self.status(), "state": state, "updated": now(), **extra}
        record.pop("heartbeat", None)
        if state == "running":
            record.update(host=socket.gethostname(), pid=os.getpid(), started=now(), heartbeat=now())
            record.pop("error", None)
            job = slurm_job_id()
            if job:
                record["slurm_job"] = job  # so a resume can ask SLURM whether the job still holds the run
            else:
                record.pop("slurm_job", None)
        if state == "queued":  # a new attempt: what the last one said of itself goes
            for key in ("error", "started", "host", "pid", "stacked_with", "stack_refused"):
                record.pop(key, None)
        record.pop("state_before", None)
        self._write_status(record, extra)

    def note_status(self, **extra):
        """Add (or, given None, remove) fields of status.json, its state unchanged."""
        with _status_lock:
            self._write_status({**self.status(), **extra}, extra)

    def _write_status(self, record, extra):
        for key, value in extra.items():
            if value is None:
                record.pop(key, None)
        path = self.file("status.json")
        try:
            atomic_write_json(path, record)
        except ResultsError:
            if not _rewrite_in_place(path, json.dumps(record, default=str) + "\n"):
                raise

    # ---- claims: which worker runs this run (an exclusive link, so no half-written claim is ever seen)
    def claim(self, token):
        """True if this worker now owns the run (or already did, e.g. after a requeue)."""
        target = self.file("claim.json")
        fd, tmp = tempfile.mkstemp(prefix=".claim.", dir=self.path)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"token": token, "host": socket.gethostname(), "pid": os.getpid(), "time": now()}, f)
            os.link(tmp, target)
            return True
        except FileExistsError:
            return (read_json(target) or {}).get("token") == token
        finally:  # also when the claim could not be written (a full disk): no temporary file left behind
            os.unlink(tmp)

    def claim_owner(self):
        return read_json(self.file("claim.json"))

    def release_claim(self):
        try:
            self.file("claim.json").unlink()
        except FileNotFoundError:
            pass

    # ---- settings, metrics, summary
    def write_settings(self, settings, header=""):
        import settings as settings_module
        atomic_write(self.file("config.py"), settings_module.to_python(settings, header))
        atomic_write_json(self.file("config.json"), settings_module.as_dict(settings))

    def read_metrics(self):
        """The evaluation records of metrics.jsonl; a line that is not a JSON object (a file damaged outside
        this program: the writer replaces it atomically) is skipped, with a warning naming the file."""
        path = self.file("metrics.jsonl")
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        records, bad = [], 0
        for line in text.splitlines():
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    records.append(record)
                else:
                    bad += 1
        if bad:
            print(f"warning: {path}: {bad} line{'s' * (bad > 1)} that {'are' if bad > 1 else 'is'} not a JSON "
                  "record skipped (the file was damaged outside this program)", file=sys.stderr)
        return records

    def write_summary(self, summary):
        atomic_write_json(self.file("summary.json"), summary)

    def summary(self):
        return read_json(self.file("summary.json"))

    def config(self):
        """The run's settings as config.json holds them, with any setting added since it was written at the
        value that behaves as the code that wrote it ran (settings.as_written): every reader resumes, repeats,
        groups and plots an old run as it began. None where the file is missing or unreadable."""
        from settings import as_written  # (no import cycle at load: settings needs nothing of this module)
        return as_written(read_json(self.file("config.json")))


NEEDED = ("torch", "numpy", "transformers", "accelerate", "peft", "sympy", "questionary", "submitit", "tqdm",
          "matplotlib")  # requirements.txt's packages that the entry points import


def environment_problem(names=NEEDED):
    """What is wrong with this Python for the project (a package of requirements.txt it cannot find, looked
    up without importing it), or None: main.py, sweep.py and plot.py say it in one line before any work."""
    import importlib.util
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (f"this Python ({sys.executable}) has no {', '.join(missing)}, which the project needs: activate the "
            "project's virtual environment (README, Set-up: . .venv/bin/activate), or install the requirements "
            "into this one: pip install torch==2.13.0 -r requirements.txt")


def environment_refused():
    """Whether this Python lacks the project's packages, said in one line on stderr (an entry point then exits
    with 2 before any work)."""
    problem = environment_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
    return problem is not None

class MetricsWriter:
    """Keeps every evaluation in memory and rewrites metrics.jsonl atomically, at most every
    `interval` seconds (and on close), so a run evaluating every epoch does not rewrite its
    file thousands of times a second."""

    def __init__(self, run_dir, records=(), interval=2.0):
        self.path = run_dir.file("metrics.jsonl")
        self.records = list(records)
        self.interval = interval
        self._last = float("-inf")
        self._dirty = False

    def append(self, record):
        self.records.append(record)
        self._dirty = True
        if time.monotonic() - self._last >= self.interval:
            self.flush()

    def flush(self):
        if self._dirty or not self.path.exists():
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
            self._dirty = False
            self._last = time.monotonic()


class _LogFile(logging.FileHandler):
    """logs.log; a line the disk cannot take (full) is dropped instead of printing logging's own
    traceback for every line (the terminal echo still shows it, and the run reports the full disk)."""

    def handleError(self, record):
        pass


class _AboveProgressBars(logging.StreamHandler):
    """Echo to stderr through tqdm.write, which clears a progress bar, prints the line and redraws the
    bar below it (a plain write lands in the middle of the bar's line)."""

    def emit(self, record):
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _logger_of(run_dir):
    return logging.getLogger(f"run.{run_dir.path.resolve()}")


def run_logger(run_dir, echo=False):
    """A logger writing to <run>/logs.log (one line per record, appended) and, if echo, to stderr."""
    logger = _logger_of(run_dir)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handler = _LogFile(run_dir.file("logs.log"), encoding="utf-8")
    handler.setFormatter(fmt)
    logger.addHandler(handler)
    if echo:
        stream = _AboveProgressBars()
        stream.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(stream)
    return logger


def out_of_time(run_dir):
    """Whether the run failed because its job's time was up for good: submitit raised UncompletedJobError
    in it (a job that reached its time limit more often than submitit requeues it). The job should stop
    there, leaving the runs it had not reached queued."""
    status = run_dir.status()
    return status.get("state") == "failed" and "UncompletedJobError" in str(status.get("error"))


def log_line(run_dir, line, error=False):
    """One line in the run's logs.log from outside its training: through the run's own logger where it is
    open in this process (a run training now: reopening it would close the run's handlers), else through a
    logger opened and closed for it (a line the disk cannot take is dropped)."""
    logger = _logger_of(run_dir)
    opened = not logger.handlers
    if opened:
        logger = run_logger(run_dir)
    (logger.error if error else logger.warning)(line)
    if opened:
        close_logger(logger)


def close_logger(logger):
    for handler in list(logger.handlers):
        try:
            handler.close()
        except OSError:  # the last bytes of logs.log on a disk that has just filled: the run already said so
            pass
        logger.removeHandler(handler)
