"""Real PostgreSQL and Redis servers for the production-like tests, on loopback, stopped by their pids.

The binaries come from Debian's packages (scripts/install-services.sh, run by `make test`).
PostgreSQL refuses to run as root, so under root the server runs as the packages' `postgres`
user in a directory of its own.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from signal9_devstack.local.stack import free_port


class ServiceError(RuntimeError):
    """A test service could not be started; the message names it and quotes its log."""


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    port: int
    log: Path
    base: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT: fast shutdown
            self.process.send_signal(signal.SIGTERM if self.name != "postgres" else signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


def _wait(service: Service, ready: Callable[[], bool], timeout_s: float = 60) -> Service:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            break
        if ready():
            return service
        time.sleep(0.2)
    tail = service.log.read_text(errors="replace")[-2000:] if service.log.exists() else ""
    service.stop()
    raise ServiceError(f"{service.name} did not start on 127.0.0.1:{service.port}; its log ends:\n{tail}")


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise ServiceError(f"PostgreSQL's {name} is not installed:"
                           " run scripts/install-services.sh (apt-get install postgresql)")
    return found[-1]


def start_postgres(user: str, password: str, db_name: str) -> Service:
    base = Path(tempfile.mkdtemp(prefix="signal9-postgres-"))
    run_as = "postgres" if os.geteuid() == 0 else None
    if run_as:
        pw = pwd.getpwnam(run_as)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    (base / "pwfile").write_text(password)
    if run_as:
        os.chown(base / "pwfile", pwd.getpwnam(run_as).pw_uid, -1)
    log = base / "postgres.log"
    subprocess.run([_postgres_bin("initdb"), "-D", str(base / "data"), "-U", user, f"--pwfile={base / 'pwfile'}",
                    "--auth=scram-sha-256", "--no-sync"], user=run_as, check=True, capture_output=True, timeout=120)
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [_postgres_bin("postgres"), "-D", str(base / "data"), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={base}", "-c", "fsync=off", "-c", "max_connections=200"],
            user=run_as, stdout=out, stderr=subprocess.STDOUT)
    service = Service("postgres", process, port, log, base)

    def ready() -> bool:
        import psycopg2

        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="postgres",
                                    connect_timeout=2)
        except psycopg2.OperationalError:
            return False
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,))
            if not cur.fetchone():
                cur.execute(f'CREATE DATABASE "{db_name}"')
        conn.close()
        return True

    return _wait(service, ready)


def start_redis() -> Service:
    binary = shutil.which("redis-server")
    if not binary:
        raise ServiceError("redis-server is not installed:"
                           " run scripts/install-services.sh (apt-get install redis-server)")
    base = Path(tempfile.mkdtemp(prefix="signal9-redis-"))
    port, log = free_port(), base / "redis.log"
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(base), "--logfile", str(log)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    service = Service("redis", process, port, log, base)

    def ready() -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    return _wait(service, ready)
