"""What one credit-charged creation costs the database, in instructions (valgrind's count).

    .venv/bin/python bench/creation_instructions.py                       # this tree's schema
    .venv/bin/python bench/creation_instructions.py --aijobs ../before/.venv/bin/aijobs --old-schema

Timings of one creation vary by ±15% from run to run on a shared machine; an instruction count
does not. This initialises a scratch cluster with the machine's PostgreSQL 15 binaries (as
the `postgres` user, so it runs as root), migrates it with `aijobs migrate` (this tree's, or
the one `--aijobs` names), gives one user credits, then runs the backend in single-user mode
under `valgrind --tool=callgrind`, executing one prepared creation per statement (each its
own transaction, as W1 does) 50 times and then 250 times. The difference over 200 is what one
creation costs once every cache is warm: parsing, planning and connection setup cancel out.
`--old-schema` calls the release before this one's function (`create_credit_consuming_job`);
`--drain` counts a claim of 100 and the finish of what it claimed instead, beside 10,000
pending jobs (5 and then 30 of them; this schema's functions only).
Needs valgrind (Debian's `valgrind` package).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "00000000-0000-0000-0000-0000000000aa"
NEW = (
    f"select * from aijobs.create_jobs('{USER}'::uuid, array['sentiment_analysis'::text],"
    ' array[\'{"text":"noop"}\'::jsonb], array[0::smallint], array[null::timestamptz],'
    " array[4::integer], array[null::text], array[null::uuid], false, null::uuid)"
)
NEW_BATCH = (
    f"select count(*) from aijobs.create_jobs('{USER}'::uuid,"
    " array_fill('sentiment_analysis'::text, array[{n}]),"
    ' array_fill(\'{{"text":"noop"}}\'::jsonb, array[{n}]), array_fill(0::smallint, array[{n}]), null,'
    " array_fill(4, array[{n}]), null, null, false, null::uuid)"
)
OLD_BATCH = (
    f"select count(*) from create_credit_consuming_jobs('{USER}',"
    " array_fill('sentiment_analysis'::text, array[{n}]),"
    ' array_fill(\'{{"text":"noop"}}\'::jsonb, array[{n}]), array_fill(0::smallint, array[{n}]), null,'
    " array_fill(4, array[{n}]))"
)
# A claim of 100 and the finish of what it claimed, in one statement (migration 005's functions).
DRAIN = (
    "select count(*) from aijobs.finish_attempts('w', (select jsonb_agg(jsonb_build_object("
    "'id', c.id, 'lease_token', c.lease_token, 'status', 'completed', 'outcome', 'completed',"
    " 'result', '{\"label\": \"positive\"}'::jsonb)) from aijobs.claim_jobs('w', 100, 30) c))"
)
SEED = (
    f"select count(*) from aijobs.create_jobs('{USER}'::uuid,"
    " array_fill('sentiment_analysis'::text, array[10000]),"
    ' array_fill(\'{"text":"noop"}\'::jsonb, array[10000]))'
)
OLD = (
    f"select * from create_credit_consuming_job('{USER}', 'sentiment_analysis',"
    ' \'{"text":"noop"}\'::jsonb, 0::smallint, null, 4, null, null)'
)


def as_postgres(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["su", "postgres", "-c", " ".join(args)], check=True, text=True, **kw)  # type: ignore[call-overload]


def count(data: Path, statement: str, n: int, out: Path) -> int:
    script = out.with_suffix(f".{n}.sql")
    script.write_text(f"prepare c as {statement};\n" + "execute c;\n" * n)
    script.chmod(0o644)
    log = out.with_suffix(f".{n}.log")
    as_postgres(
        "valgrind --tool=callgrind",
        f"--callgrind-out-file={out.with_suffix(f'.{n}.cg')}",
        str(PG_BIN / "postgres"),
        f"--single -D {data} -c fsync=off -c synchronous_commit=off postgres",
        f"< {script} > {log} 2>&1",
    )
    found = re.search(r"Collected : (\d+)", log.read_text())
    if not found:
        sys.exit(f"no count in {log}:\n{log.read_text()[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aijobs", default=str(Path(sys.executable).parent / "aijobs"))
    parser.add_argument("--old-schema", action="store_true")
    parser.add_argument(
        "--batch", type=int, default=0, help="jobs per creation (one statement); 0: a single job"
    )
    parser.add_argument(
        "--drain", action="store_true", help="a claim of 100 and its finish instead (this schema's functions)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("valgrind") is None:
        sys.exit("needs root (to run PostgreSQL as the postgres user) and valgrind")
    work = Path(tempfile.mkdtemp(prefix="aijobs-instructions-"))
    shutil.chown(work, "postgres")
    data = work / "data"
    port = 55400 + os.getpid() % 90
    try:
        as_postgres(str(PG_BIN / "initdb"), f"-D {data} -U root --auth=trust", stdout=subprocess.DEVNULL)
        as_postgres(
            str(PG_BIN / "pg_ctl"),
            f"-D {data} -o '-p {port} -k {work}' -l {work}/log -w start",
            stdout=subprocess.DEVNULL,
        )
        url = f"postgresql://root@127.0.0.1:{port}/postgres"
        try:
            subprocess.run(
                [args.aijobs, "migrate"],
                env={**os.environ, "DATABASE_URL": url},
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            grant = (
                f"select credit_grant('{USER}', 100000000, 'bench')"
                if args.old_schema
                else f"select aijobs.grant_credits('{USER}', 100000000)"
            )
            subprocess.run(["psql", url, "-qAtc", grant], check=True, stdout=subprocess.DEVNULL)
            if args.drain:
                for sql in (SEED, "vacuum analyze"):
                    subprocess.run(["psql", url, "-qAtc", sql], check=True, stdout=subprocess.DEVNULL)
        finally:
            as_postgres(str(PG_BIN / "pg_ctl"), f"-D {data} -w stop", stdout=subprocess.DEVNULL)
        statement = OLD if args.old_schema else NEW
        if args.batch:
            statement = (OLD_BATCH if args.old_schema else NEW_BATCH).format(n=args.batch)
        runs = (50, 250)
        if args.drain:
            statement, runs = DRAIN, (5, 30)
        started = time.perf_counter()
        few, many = (
            count(data, statement, runs[0], work / "run"),
            count(data, statement, runs[1], work / "run"),
        )
        print(f"schema migrated by {args.aijobs}")
        seconds = time.perf_counter() - started
        what = f"one batch of {args.batch}" if args.batch else "one creation"
        if args.drain:
            what = "a claim of 100 and its finish"
        per = (many - few) / (runs[1] - runs[0])
        print(f"{what}: {per:,.0f} instructions (valgrind, {seconds:.0f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
