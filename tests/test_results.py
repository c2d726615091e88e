"""Numbered folders allocated race-free; files written atomically; claims exclusive."""
import errno
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

import results


def _allocate_many(args):
    root, n = args
    return [results.allocate_dir(root)[0] for _ in range(n)]


def test_ids_are_unique_under_many_concurrent_processes(tmp_path):
    root = tmp_path / "results_new"  # does not exist yet: no pre-created 0 needed
    with multiprocessing.get_context("spawn").Pool(16) as pool:
        got = [i for chunk in pool.map(_allocate_many, [(root, 10)] * 16) for i in chunk]
    assert len(got) == len(set(got)) == 160
    assert sorted(got) == list(range(160))
    assert sorted(int(p.name) for p in root.iterdir()) == list(range(160))


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    results.atomic_write(target, "old")

    def failing_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(results.ResultsError, match="disk full"):
        results.atomic_write(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary left behind


def test_a_write_refused_for_a_reason_the_user_mends_is_named_with_its_fix(tmp_path, monkeypatch):
    """A folder made read-only mid-run (the temporary file cannot even be made), and a file size limit
    (ulimit -f: EFBIG; torch.save's own RuntimeError where a limit is set): one ResultsError naming the
    cause and the fix, as a full disk gets, not an OSError's traceback; the old file stays."""
    import tempfile
    target = tmp_path / "metrics.jsonl"
    results.atomic_write(target, "old")

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(results.ResultsError, match=f"cannot write into {tmp_path}: Permission denied; .*make it "
                                                   "writable again and resume"):
        results.atomic_write(target, "new")
    monkeypatch.undo()

    def too_large(tmp):
        raise OSError(errno.EFBIG, "File too large")
    monkeypatch.setattr(results, "_fsize_limit", lambda: None)  # EFBIG without ulimit -f: the file system's
    with pytest.raises(results.ResultsError, match="the file system's largest file size .*raise the limit"):
        results.atomic_replace(target, too_large)
    monkeypatch.setattr(results, "_fsize_limit", lambda: 3 * 2 ** 20)
    with pytest.raises(results.ResultsError, match=r"file size limit \(ulimit -f, 3145728 bytes\)"):
        results.atomic_replace(target, too_large)

    def torch_save_failed(tmp):  # torch.save's own error once the limit stopped its writes
        Path(tmp).write_bytes(b"x" * 3 * 2 ** 20)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2014592 vs 2014484")
    with pytest.raises(results.ResultsError, match="file size limit"):
        results.atomic_replace(target, torch_save_failed)

    def another_error(tmp):  # far below the limit: not the limit's doing, raised as it is
        Path(tmp).write_bytes(b"x" * 10)
        raise RuntimeError("some other problem")
    with pytest.raises(RuntimeError, match="some other problem"):
        results.atomic_replace(target, another_error)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_atomic_write_never_shows_a_partial_file(tmp_path):
    target = tmp_path / "m.jsonl"
    big = "x" * 1_000_000
    results.atomic_write(target, "small")
    ctx = multiprocessing.get_context("fork")
    writer = ctx.Process(target=lambda: [results.atomic_write(target, big) for _ in range(20)])
    writer.start()
    seen = set()
    while writer.is_alive():
        seen.add(len(target.read_text()))
    writer.join()
    assert seen <= {5, 1_000_000}


def test_claim_is_exclusive_and_recognises_its_owner(tmp_path):
    run = results.RunDir(tmp_path)
    assert run.claim("a")
    assert not run.claim("b")
    assert run.claim("a")  # the same worker after a requeue
    run.release_claim()
    assert run.claim("b")


def test_metrics_writer_flushes_complete_lines(tmp_path):
    run = results.RunDir(tmp_path)
    writer = results.MetricsWriter(run, interval=3600)
    writer.append({"epoch": 0})   # first append writes (the file did not exist)
    writer.append({"epoch": 1})   # throttled
    assert run.read_metrics() == [{"epoch": 0}]
    writer.flush()
    assert run.read_metrics() == [{"epoch": 0}, {"epoch": 1}]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_result_files_honour_the_umask_like_a_plain_open(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        results.atomic_write(tmp_path / "status.json", "{}")
        results.atomic_write_json(tmp_path / "summary.json", {})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == mode


def test_a_running_run_s_heartbeat_is_written_by_its_process_and_dropped_when_it_ends(tmp_path):
    run = results.RunDir(tmp_path / "run")
    run.path.mkdir()
    run.set_status("running")
    first = run.status()["heartbeat"]
    assert results.heartbeat_age(run.status()) < 5 and tmp_path / "run" in results._beating
    assert results._heart is not None and results._heart.is_alive()  # the thread that beats every HEARTBEAT_S
    status = run.status()
    results.atomic_write_json(run.file("status.json"), {**status, "heartbeat": "2026-01-01T00:00:00+00:00"})
    results._beat_once()
    assert run.status()["heartbeat"] >= first and results.heartbeat_age(run.status()) < 5
    run.set_status("done")
    assert "heartbeat" not in run.status() and tmp_path / "run" not in results._beating


def test_another_machine_s_run_counts_as_alive_while_its_heartbeat_is_recent(monkeypatch):
    import datetime
    ago = lambda s: (datetime.datetime.now().astimezone() - datetime.timedelta(seconds=s)).isoformat()  # noqa
    there = {"state": "running", "host": "another-node", "pid": 4242}
    assert 100 < results.heard_from_elsewhere({**there, "heartbeat": ago(120)}) < 140
    assert results.heard_from_elsewhere({**there, "heartbeat": ago(results.STALE_S + 60)}) is None
    assert results.heard_from_elsewhere(there) is None  # (a status from before heartbeats: nothing known)
    assert results.heard_from_elsewhere({**there, "heartbeat": ago(1), "host": __import__("socket").gethostname()}) \
        is None  # this machine's: its pid is asked instead (holder_alive)


def test_a_run_whose_last_status_cannot_be_written_leaves_the_heartbeat(tmp_path, monkeypatch):
    """Else the beat renews 'running' once the disk takes writes again: a failed run alive to other machines."""
    run = results.RunDir(tmp_path / "run")
    run.path.mkdir()
    run.set_status("running")

    def refuse(*args, **kwargs):
        raise results.ResultsError("disk full")
    monkeypatch.setattr(results, "atomic_write_json", refuse)
    monkeypatch.setattr(results, "_rewrite_in_place", lambda *a: False)
    with pytest.raises(results.ResultsError):
        run.set_status("failed")
    assert tmp_path / "run" not in results._beating


def test_a_process_forked_while_the_heartbeat_writes_can_still_write_its_status(tmp_path):
    import threading
    import time
    run = results.RunDir(tmp_path / "run")
    run.path.mkdir()
    held, release = threading.Event(), threading.Event()

    def beat():  # as _beat_once holds the lock while it writes
        with results._status_lock:
            held.set()
            release.wait(10)
    thread = threading.Thread(target=beat)
    thread.start()
    held.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: its own lock, no parent's runs to beat for
        try:
            run.set_status("queued")
            os._exit(0 if not results._beating else 3)
        except BaseException:  # noqa: BLE001
            os._exit(2)
    deadline = time.time() + 10
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        status = None
    release.set()
    thread.join()
    assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
