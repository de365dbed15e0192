"""The embedded server stops when the last process using it exits, however the others ended.

Real `aijobs` processes on an embedded server of the test's own (DATABASE_URL unset): a
holder ended by SIGTERM lets go of the server itself, and one killed outright is forgotten
by the next clean run, which then stops the server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from aijobs.db.embedded import clock, start_time

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def postmaster_pid(pgdata: Path) -> int | None:
    """The running server's pid, or None when it is stopped."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A migrated embedded data directory and the environment that uses it; any server left
    running at the end (the failure this file tests for) is stopped."""
    pgdata = tmp_path / "pgdata"
    env = embedded_env(pgdata)
    try:
        aijobs(env, "migrate")
        assert postmaster_pid(pgdata) is None, "a lone clean run stops the server"
        yield pgdata, env
    finally:
        pid = postmaster_pid(pgdata)
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)


def embedded_env(pgdata: Path) -> dict[str, str]:
    """The environment of an `aijobs` on the embedded server in `pgdata`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "XDG_RUNTIME_DIR") and not k.startswith(("OPENAI_", "LLM_", "JWT_"))
    }
    env.update(
        EMBEDDED_DATA_DIR=str(pgdata),
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        LOG_LEVEL="WARNING",
    )
    return env


def aijobs(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aijobs", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def start_holder(env: dict[str, str], pgdata: Path, args: list[str], ready: str) -> subprocess.Popen[str]:
    """Start a command that holds the server until it is signalled; wait for `ready` on its output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aijobs", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    seen = ""
    while ready not in seen:
        line = proc.stdout.readline()
        assert line and time.monotonic() < deadline, f"{args} did not start:\n{seen}"
        seen += line
    assert postmaster_pid(pgdata) is not None
    return proc


HOLDERS = {
    "stats-watch": (["stats", "--watch", "1"], "queue:"),
    # Port 0: a port chosen before the test runs may be taken by then.
    "api": (["api", "--port", "0"], "aijobs API on"),
}


@pytest.mark.parametrize("holder", sorted(HOLDERS))
def test_sigterm_to_the_last_holder_stops_the_server(
    embedded: tuple[Path, dict[str, str]], holder: str
) -> None:
    pgdata, env = embedded
    args, ready = HOLDERS[holder]
    proc = start_holder(env, pgdata, args, ready)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert postmaster_pid(pgdata) is None, f"`aijobs {' '.join(args)}` left the server running after SIGTERM"


def test_a_clean_run_after_a_killed_holder_stops_the_server(embedded: tuple[Path, dict[str, str]]) -> None:
    pgdata, env = embedded
    proc = start_holder(env, pgdata, ["stats", "--watch", "1"], "queue:")
    proc.kill()
    proc.communicate(timeout=60)
    assert postmaster_pid(pgdata) is not None, "SIGKILL leaves no chance to stop it"
    aijobs(env, "stats")
    assert postmaster_pid(pgdata) is None, "the next clean run forgot the dead holder and stopped the server"


def wait_until_stopped(pgdata: Path, seconds: float = 10) -> bool:
    """Whether the server in `pgdata` is stopped within `seconds`."""
    deadline = time.monotonic() + seconds
    while postmaster_pid(pgdata) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_the_last_live_holder_stops_the_server_after_another_was_killed(
    embedded: tuple[Path, dict[str, str]],
) -> None:
    """A holder killed outright while another runs stays in the package's list: the last live
    holder must forget it when it exits, or the server runs on for nobody."""
    pgdata, env = embedded
    killed = start_holder(env, pgdata, ["stats", "--watch", "5"], "queue:")
    last = start_holder(env, pgdata, ["stats", "--watch", "5"], "queue:")
    killed.kill()
    killed.communicate(timeout=60)
    assert postmaster_pid(pgdata) is not None, "a holder still runs"
    last.send_signal(signal.SIGTERM)
    last.communicate(timeout=60)
    assert wait_until_stopped(pgdata), "the last live holder exited and left the server running"


@pytest.mark.parametrize("kill", ["sigterm", "sigkill-group"])
def test_a_first_start_stopped_during_initdb_does_not_break_later_runs(tmp_path: Path, kill: str) -> None:
    """SIGTERM to `aijobs` kills its initdb midway (the signal is raised as an exception inside
    subprocess.run); SIGKILL to the group kills both. Either way the next run must start on a
    whole cluster, not on the half-made one."""
    pgdata = tmp_path / "pgdata"
    env = embedded_env(pgdata)
    first = subprocess.Popen(
        [sys.executable, "-m", "aijobs", "migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # initdb has begun once a PG_VERSION exists, wherever it runs; it writes that early and
        # takes a good part of a second more.
        deadline = time.monotonic() + 60
        while not any(tmp_path.rglob("PG_VERSION")):
            assert first.poll() is None, "migrate ended before initdb began"
            assert time.monotonic() < deadline, "initdb did not begin"
            time.sleep(0.005)
        if kill == "sigterm":
            first.send_signal(signal.SIGTERM)
        else:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
        assert first.returncode != 0, "migrate finished before it was stopped"
        aijobs(env, "migrate")
        assert wait_until_stopped(pgdata)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        pid = postmaster_pid(pgdata)
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)


def test_a_data_directory_that_does_not_start_is_one_line_naming_it(tmp_path: Path) -> None:
    """A data directory that is no whole cluster (one left by an older aijobs stopped during
    its first initdb), or is not empty and holds no cluster: one line naming it, no traceback."""
    half_made = tmp_path / "half-made"
    half_made.mkdir()
    (half_made / "PG_VERSION").write_text("18\n")
    (half_made / "base").mkdir()
    no_cluster = tmp_path / "no-cluster"
    no_cluster.mkdir()
    (no_cluster / "base").mkdir()
    for pgdata, says in (
        (half_made, f"the embedded PostgreSQL in {half_made} did not start"),
        (no_cluster, f"data directory {no_cluster} is not empty but holds no database"),
    ):
        try:
            done = subprocess.run(
                [sys.executable, "-m", "aijobs", "migrate"],
                env=embedded_env(pgdata),
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            pid = postmaster_pid(pgdata)
            if pid is not None:
                os.kill(pid, signal.SIGQUIT)
        assert done.returncode == 1, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: ") and says in lines[0], done.stderr
        assert "move" in lines[0] and "aside" in lines[0], "it says what to do"
        assert (pgdata / "base").is_dir(), "nothing was removed"


# The holder lists on disk: the package's ids, and aijobs' start time of each holder.
HANDLE_PIDS = ".handle_pids.json"
HOLDER_STARTS = ".aijobs_holders.json"


def forget_dead_holders(pgdata: Path, tmp_path: Path) -> list[int]:
    """`forget_dead_holders` in a fresh interpreter, as a command runs it: the package fixes its
    lock's path from XDG_RUNTIME_DIR when first imported, which must not happen in this one."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        XDG_RUNTIME_DIR=str(tmp_path / "run"), PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    )
    (tmp_path / "run").mkdir(exist_ok=True, mode=0o700)
    script = (
        "import json, sys; from pathlib import Path; "
        "from aijobs.db.embedded import forget_dead_holders; "
        "print(json.dumps(forget_dead_holders(Path(sys.argv[1]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(pgdata)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    dropped: list[int] = json.loads(done.stdout.splitlines()[-1])
    return dropped


def test_a_holder_is_known_by_its_id_and_start_time(tmp_path: Path) -> None:
    """A live process whose start time is not the recorded one is not the holder (its id was
    reused): it is forgotten. The right start time (within a small tolerance) is kept, and an
    id without a recorded start time (an older aijobs) is judged by the id alone, as before."""
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    me = os.getpid()
    reused = subprocess.Popen(["sleep", "60"])
    legacy = subprocess.Popen(["sleep", "60"])
    exited = subprocess.Popen(["true"])
    exited.wait()
    try:
        my_start = start_time(me)
        reused_start = start_time(reused.pid)
        (pgdata / HANDLE_PIDS).write_text(json.dumps([me, reused.pid, legacy.pid, exited.pid]))
        (pgdata / HOLDER_STARTS).write_text(
            json.dumps({"clock": clock(), str(me): my_start + 0.25, str(reused.pid): reused_start - 1000})
        )
        dropped = forget_dead_holders(pgdata, tmp_path)
        assert sorted(dropped) == sorted([reused.pid, exited.pid])
        assert json.loads((pgdata / HANDLE_PIDS).read_text()) == [me, legacy.pid]
        kept = {"clock": clock(), str(me): my_start + 0.25}
        assert json.loads((pgdata / HOLDER_STARTS).read_text()) == kept
        # Nothing more to forget: a second pass changes nothing.
        assert forget_dead_holders(pgdata, tmp_path) == []
        assert json.loads((pgdata / HANDLE_PIDS).read_text()) == [me, legacy.pid]
    finally:
        for proc in (reused, legacy):
            proc.kill()
            proc.wait()


def test_a_dead_holders_id_given_to_another_process_does_not_keep_the_server_up(
    embedded: tuple[Path, dict[str, str]],
) -> None:
    pgdata, env = embedded
    holder = start_holder(env, pgdata, ["stats", "--watch", "1"], "queue:")
    started = start_time(holder.pid)
    started_wall = psutil.Process(holder.pid).create_time()
    recorded = json.loads((pgdata / HOLDER_STARTS).read_text())
    assert recorded["clock"] == clock()
    assert abs(recorded[str(holder.pid)] - started) < 0.01, "a holder records its start time"
    holder.kill()
    holder.communicate(timeout=60)
    # The system gives the dead holder's id to an unrelated process (simulated: a live process
    # takes its place in both lists, with the holder's start time). A real reuse comes long
    # after the holder started; this one at least past the tolerance (a second) and some.
    time.sleep(max(0.0, started_wall + 3 - time.time()))
    impostor = subprocess.Popen(["sleep", "120"])
    try:
        pids = json.loads((pgdata / HANDLE_PIDS).read_text())
        assert holder.pid in pids
        (pgdata / HANDLE_PIDS).write_text(json.dumps([impostor.pid if p == holder.pid else p for p in pids]))
        (pgdata / HOLDER_STARTS).write_text(json.dumps({"clock": clock(), str(impostor.pid): started}))
        assert postmaster_pid(pgdata) is not None
        aijobs(env, "stats")
        assert postmaster_pid(pgdata) is None, "the impostor was taken for the holder: server left running"
    finally:
        impostor.kill()
        impostor.wait()


def test_a_live_holder_stays_a_holder_after_the_system_clock_steps(tmp_path: Path) -> None:
    """A step of the wall clock (NTP, a VM resumed, `date -s`) moves the boot time the kernel
    reports in /proc/stat by as much, and with it every wall-clock process start time. A live
    holder recorded before the step must still count as alive after it: were it forgotten, the
    next command to exit would take itself for the last holder and stop the server under it.

    The step is simulated with a /proc whose `btime` is an hour later, which is what the kernel
    shows after the clock is set an hour ahead; each process's own entries are the real ones."""
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (tmp_path / "run").mkdir(mode=0o700)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (pgdata / HANDLE_PIDS).write_text(json.dumps([holder.pid]))
        stepped = tmp_path / "proc"
        stepped.mkdir()
        lines = Path("/proc/stat").read_text().splitlines()
        (stepped / "stat").write_text(
            "".join(
                f"btime {int(line.split()[1]) + 3600}\n" if line.startswith("btime") else line + "\n"
                for line in lines
            )
        )
        (stepped / str(holder.pid)).symlink_to(f"/proc/{holder.pid}")
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(
            XDG_RUNTIME_DIR=str(tmp_path / "run"),
            PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        )
        script = (
            "import json, sys; from pathlib import Path; import psutil; "
            "from aijobs.db.embedded import forget_dead_holders, record_holder; "
            "pgdata = Path(sys.argv[1]); record_holder(pgdata, int(sys.argv[2])); "
            "psutil.PROCFS_PATH = sys.argv[3]; "  # the clock steps an hour ahead
            "print(json.dumps(forget_dead_holders(pgdata)))"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(pgdata), str(holder.pid), str(stepped)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout.splitlines()[-1]) == [], "a live holder was forgotten"
        assert json.loads((pgdata / HANDLE_PIDS).read_text()) == [holder.pid]
    finally:
        holder.kill()
        holder.wait()


def test_holders_recorded_in_an_earlier_boot_are_forgotten(tmp_path: Path) -> None:
    """A process recorded in another boot cannot be running, whatever now has its id."""
    if clock() == "wall":
        pytest.skip("no boot id on this system")
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        (pgdata / HANDLE_PIDS).write_text(json.dumps([other.pid]))
        (pgdata / HOLDER_STARTS).write_text(
            json.dumps({"clock": "another boot's id", str(other.pid): start_time(other.pid)})
        )
        assert forget_dead_holders(pgdata, tmp_path) == [other.pid]
        assert json.loads((pgdata / HANDLE_PIDS).read_text()) == []
        assert json.loads((pgdata / HOLDER_STARTS).read_text()) == {"clock": clock()}
    finally:
        other.kill()
        other.wait()


def test_json_output_parses_on_the_embedded_database(embedded: tuple[Path, dict[str, str]]) -> None:
    """Every `--json` prints JSON alone on stdout, whether the command starts the embedded
    server or only attaches to one a holder runs: its diagnostics go to stderr."""
    pgdata, env = embedded
    chatty = {**env, "LOG_LEVEL": "INFO"}
    commands = [["stats", "--json"], ["check", "--json"]]
    for args in commands:  # this command starts the server (and stops it)
        done = subprocess.run(
            [sys.executable, "-m", "aijobs", *args], env=chatty, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        json.loads(done.stdout)
        assert "embedded PostgreSQL" in done.stderr, "the diagnostics are kept, on stderr"
    holder = start_holder(env, pgdata, ["stats", "--watch", "1"], "queue:")
    try:
        for args in commands:  # these only attach
            done = subprocess.run(
                [sys.executable, "-m", "aijobs", *args],
                env=chatty,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            json.loads(done.stdout)
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=60)
