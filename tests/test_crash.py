"""Crash safety: kill `seco-data sample` with SIGKILL (and once SIGINT) at random points, rerun it,
and prove the result is complete, consistent and identical to an uninterrupted run."""

import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from helpers import check_catalog, ledger_rows

N = 60
ARGS = ["-q", "sample", "--n", str(N), "--workers", "2", "--bands", "B02,B03,B04,B08,B05,B01"]


def _cmd(out):
    return [sys.executable, "-c", "from seco_cli.data import main; main()", *ARGS, "--out", str(out)]


def _accepted(out) -> int:
    try:
        db = sqlite3.connect(f"file:{out / 'ledger.sqlite'}?mode=ro", uri=True)
        try:
            return db.execute("SELECT COUNT(*) FROM candidates WHERE status = 'accepted'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_killed_runs_resume_to_the_same_catalog(tmp_path):
    clean = tmp_path / "clean"
    t0 = time.monotonic()
    subprocess.run(_cmd(clean), check=True, timeout=600)
    full = time.monotonic() - t0

    out = tmp_path / "killed"
    rng = random.Random(20261124)
    progress = []
    for k, sig in enumerate([signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGKILL]):
        proc = subprocess.Popen(_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # wait until this run has made progress, then kill it at a random point of what is left
        before = _accepted(out)
        deadline = time.monotonic() + 120
        while _accepted(out) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, full * 0.12))
        if proc.poll() is None:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)  # a hang guard, generous for loaded machines
        if sig == signal.SIGINT:
            assert proc.returncode == 130, (proc.returncode, err)
            assert "rerun the same command to resume" in err and "Traceback" not in err
        progress.append((proc.returncode, _accepted(out)))
        print("run", k, sig.name, "->", progress[-1], err.strip()[-120:])
        if proc.returncode == 0:
            break
    killed_mid_run = [a for rc, a in progress if rc != 0 and 0 < a < N]
    assert len(killed_mid_run) >= 2, progress
    assert [a for _, a in progress] == sorted(a for _, a in progress)  # nothing collected is ever lost

    done = subprocess.run(_cmd(out), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    check_catalog(out, N, 4)
    assert ledger_rows(out) == ledger_rows(clean)
    for tif in clean.rglob("*.tif"):
        assert tif.read_bytes() == (out / tif.relative_to(clean)).read_bytes()
    # no worker outlived its killed parent
    time.sleep(1.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(out) not in ps
