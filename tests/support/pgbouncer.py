"""A real PgBouncer (Debian's package) in transaction mode in front of the test server.

`PgBouncer(admin_url).start()` writes a configuration into a temporary directory, starts
`pgbouncer` on a free loopback port and waits until it answers; `url_for(db_url)` is the
same database through it. Every database name passes through to the server (the `*`
entry), so each test's own database is reachable by name. PgBouncer refuses to run as root:
as root it is started with `-u` as the owner of its directory (the `postgres` system user).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support.net import free_port

#: Where Debian installs it (not always on a non-root PATH).
CANDIDATES = ("pgbouncer", "/usr/sbin/pgbouncer")


def pgbouncer_binary() -> str | None:
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class PgBouncer:
    def __init__(self, admin_url: str, *, pool_mode: str = "transaction", pool_size: int = 20) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise FileNotFoundError("pgbouncer is not installed (scripts/install-pgbouncer.sh)")
        self.binary = binary
        self.admin_url = admin_url
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="aijobs-pgbouncer-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def url_for(self, db_url: str) -> str:
        """`db_url` (same user, same database) through this PgBouncer."""
        params = conninfo_to_dict(db_url)
        params.pop("hostaddr", None)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo(**params)

    def start(self) -> PgBouncer:
        server = conninfo_to_dict(self.admin_url)
        user = str(server.get("user") or pwd.getpwuid(os.getuid()).pw_name)
        host = str(server.get("host") or "/var/run/postgresql")
        target = f"host={host} port={server.get('port') or 5432}"
        if server.get("password"):
            target += f" password={server['password']}"
        (self.dir / "userlist.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = {target}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            # The most recently used server connection is lent first (LIFO), as by default.
            "server_round_robin = 0\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        command = [self.binary]
        if os.geteuid() == 0:
            # It will not run as root; it drops to a user that must read its directory and, for
            # a server on a Unix socket (the embedded one), reach the socket's directory: its owner.
            runner = "postgres"
            if host.startswith("/") and Path(host).is_dir():
                runner = pwd.getpwuid(Path(host).stat().st_uid).pw_name
            shutil.chown(self.dir, runner)
            for path in self.dir.iterdir():
                shutil.chown(path, runner)
            command += ["-u", runner]
        command.append(str(self.dir / "pgbouncer.ini"))
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(self.url_for(self.admin_url), connect_timeout=2) as conn:
                    conn.execute("select 1")
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log()  # before stop() removes its directory
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start:\n{log}") from None
                time.sleep(0.05)

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        if self.proc is not None and self.proc.poll() is not None and self.proc.stderr is not None:
            text += self.proc.stderr.read().decode(errors="replace")
        return text

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # shut down at once, closing every connection
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
