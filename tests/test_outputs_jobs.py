"""The shared machinery: the output-folder protocol, durable atomic writes, and the job runner."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from seco_data import jobs
from seco_data.errors import DiskFullError, OutputError, UsageError, WorkerDied
from seco_data.outputs import LOCK, STATE, atomic_file, claim_output, lock, write_atomic


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path):
    path = tmp_path / "f.json"
    write_atomic(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"


def test_a_full_disk_names_the_path_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    real_replace = os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(DiskFullError, match="f.bin") as e:
        write_atomic(tmp_path / "f.bin", b"x" * 10)
    assert e.value.exit_code == 3 and "free space" in e.value.hint
    monkeypatch.setattr(os, "replace", real_replace)
    assert list(tmp_path.iterdir()) == []


def test_claim_resumes_refuses_and_overwrites_only_its_own_files(tmp_path):
    out = tmp_path / "out"
    with claim_output(out, kind="k", identity={"a": 1, "b": {"c": 2}}) as c:
        assert not c.resumed and (out / STATE).is_file() and (out / LOCK).is_file()
        (out / "part.tar").write_text("x")
    with claim_output(out, kind="k", identity={"a": 1, "b": {"c": 2}}) as c:
        assert c.resumed
    with pytest.raises(OutputError, match=r"other settings \(b.c differ\)") as e:
        with claim_output(out, kind="k", identity={"a": 1, "b": {"c": 3}}):
            pass
    assert "--overwrite" in e.value.hint and (out / "part.tar").exists()
    with pytest.raises(OutputError, match="holds a seco k output, not j"):
        with claim_output(out, kind="j", identity={}, overwrite=True):
            pass
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):  # not part of an output of this kind: never deleted
        with claim_output(out, kind="k", identity={"a": 2}, overwrite=True, ours=lambda n: n.endswith(".tar")):
            pass
    assert (out / "notes.txt").exists() and (out / "part.tar").exists()
    (out / "notes.txt").unlink()
    with claim_output(out, kind="k", identity={"a": 2}, overwrite=True, ours=lambda n: n.endswith(".tar")) as c:
        assert c.replaced and not (out / "part.tar").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("x")
    with pytest.raises(OutputError, match="not empty and holds no seco k output"):
        with claim_output(foreign, kind="k", identity={}):
            pass


def test_one_writer_at_a_time(tmp_path):
    with lock(tmp_path):
        with pytest.raises(OutputError, match="another seco process") as e:
            lock(tmp_path, wait_s=0.0).acquire()
    assert "rerun" in e.value.hint
    with lock(tmp_path, wait_s=0.0):  # released: free again
        pass


def _square(x):
    return x * x


def _context_plus(x):
    return jobs.context() + x


def _die(x):
    os.kill(os.getpid(), signal.SIGKILL)


def _fail(x):
    if x == 3:
        raise ValueError("task 3 fails")
    return x


@pytest.mark.parametrize("kind", ["inline", "thread", "process"])
def test_every_kind_runs_all_tasks_with_its_context(kind):
    closed = []
    with jobs.Pool(2 if kind != "inline" else 1, kind=kind, setup=lambda: 100, teardown=closed.append) as pool:
        assert sorted(r for _, r in jobs.run(pool, _square, range(10))) == [x * x for x in range(10)]
        assert [r for _, r in jobs.run(pool, _context_plus, range(5), ordered=True)] == [100, 101, 102, 103, 104]
    if kind == "process":  # each worker process ends with the pool, and its context with it
        assert closed == []
    else:  # contexts made in this process are released when the pool closes, each once
        assert closed and set(closed) == {100} and len(closed) <= 2


def test_a_failing_task_stops_the_run_and_a_killed_worker_is_named():
    with pytest.raises(ValueError, match="task 3"):
        with jobs.Pool(2, kind="thread") as pool:
            for _ in jobs.run(pool, _fail, range(100)):
                pass
    with pytest.raises(WorkerDied) as e:
        with jobs.Pool(2, kind="process") as pool:
            list(jobs.run(pool, _die, range(4)))
    assert "killed" in e.value.hint and "resume" in e.value.hint


def test_workers_are_capped_and_checked(caplog):
    assert jobs.cap_workers(10_000, "process") == jobs.PROCESSES_PER_CORE * (os.cpu_count() or 1)
    assert "capped" in caplog.text
    assert jobs.cap_workers(8, "thread", tasks=2) == 2 and jobs.cap_workers(None, "thread") == 8
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match="--workers"):
            jobs.check_workers(bad)
