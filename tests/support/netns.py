"""Hosts with their own network, made by the test: Linux network namespaces joined by veth.

    db namespace:  bridge br0 10.77.0.1/24, a PostgreSQL of its own listening there
    host i:        eth0 10.77.0.(10+i)/24, its veth peer a port of br0

`cut(i)` takes host i's bridge port down: its packets go nowhere, its open connections stall
(no reset: the database sees nothing), its new ones fail. `restore(i)` brings the port back
and the stalled connections resume where they were. Every address is inside namespaces this
module made; the test process reaches the database through its Unix socket, which no
namespace separates. Needs root and `ip`; names carry a random suffix, so runs do not meet.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

SUBNET = "10.77.0"
DB_ADDRESS = f"{SUBNET}.1"
PG_PORT = 5432


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def unavailable() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    if postgres_bin() is None:
        return "no PostgreSQL server binaries (system or the embedded extra's)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no 'postgres' system user to run the server as (it refuses root)"
    return None


def postgres_bin() -> Path | None:
    """A directory with initdb and postgres: the system's, else the embedded extra's."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    try:
        from aijobs.db.embedded import bin_dir

        candidates.append(bin_dir())
    except ImportError:
        pass
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    return None


class Network:
    def __init__(self, hosts: int) -> None:
        self.tag = secrets.token_hex(2)
        self.db_ns = f"aj-db-{self.tag}"
        self.host_ns = [f"aj-h{i}-{self.tag}" for i in range(hosts)]
        self._made: list[str] = []

    def port(self, i: int) -> str:
        """Host i's veth end in the db namespace (a port of br0)."""
        return f"aj{self.tag}b{i}"

    def address(self, i: int) -> str:
        return f"{SUBNET}.{10 + i}"

    def create(self) -> Network:
        ip("netns", "add", self.db_ns)
        self._made.append(self.db_ns)
        ip("-n", self.db_ns, "link", "set", "lo", "up")
        ip("-n", self.db_ns, "link", "add", "br0", "type", "bridge")
        ip("-n", self.db_ns, "addr", "add", f"{DB_ADDRESS}/24", "dev", "br0")
        ip("-n", self.db_ns, "link", "set", "br0", "up")
        for i, ns in enumerate(self.host_ns):
            ip("netns", "add", ns)
            self._made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            host_end = f"aj{self.tag}h{i}"
            ip("link", "add", host_end, "type", "veth", "peer", "name", self.port(i))
            ip("link", "set", host_end, "netns", ns)
            ip("link", "set", self.port(i), "netns", self.db_ns)
            ip("-n", ns, "link", "set", host_end, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", self.db_ns, "link", "set", self.port(i), "master", "br0")
            ip("-n", self.db_ns, "link", "set", self.port(i), "up")
        return self

    def on_host(self, i: int) -> list[str]:
        """The command prefix that runs a program on host i."""
        return ["ip", "netns", "exec", self.host_ns[i]]

    def cut(self, i: int) -> None:
        ip("-n", self.db_ns, "link", "set", self.port(i), "down")

    def restore(self, i: int) -> None:
        ip("-n", self.db_ns, "link", "set", self.port(i), "up")

    def destroy(self) -> None:
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        self._made.clear()


class NetnsPostgres:
    """A throwaway PostgreSQL in the db namespace: TCP on the bridge, and a Unix socket."""

    def __init__(self, network: Network) -> None:
        binaries = postgres_bin()
        assert binaries is not None
        self.bin = binaries
        self.network = network
        self.dir = Path(tempfile.mkdtemp(prefix="aijobs-netns-pg-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NetnsPostgres:
        shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*as_postgres, str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
        )
        (data / "pg_hba.conf").write_text(f"local all all trust\nhost all all {SUBNET}.0/24 trust\n")
        log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 - the server's, closed by it
        # `ip netns exec` and setpriv both exec, so this process is the postmaster itself.
        self.proc = subprocess.Popen(
            [
                "ip", "netns", "exec", self.network.db_ns,
                "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                str(self.bin / "postgres"),
                "-D", str(data), "-p", str(PG_PORT), "-c", f"listen_addresses={DB_ADDRESS}",
                "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.local_url("postgres"), connect_timeout=2) as conn:
                    conn.execute("select 1")
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start:\n{self.log()}") from None
                time.sleep(0.1)

    def local_url(self, dbname: str) -> str:
        """Through the Unix socket, for the test itself."""
        return make_conninfo(host=str(self.dir), port=str(PG_PORT), user="postgres", dbname=dbname)

    def host_url(self, dbname: str) -> str:
        """Across the veth, for the hosts."""
        return make_conninfo(host=DB_ADDRESS, port=str(PG_PORT), user="postgres", dbname=dbname)

    def log(self) -> str:
        path = self.dir / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown (SIGTERM would wait for clients)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
