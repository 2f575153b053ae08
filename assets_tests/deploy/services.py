"""PostgreSQL, Redis and dagster-celery workers started on loopback for the deployment tests.

Every service listens on 127.0.0.1 on a free port, keeps its files in a temporary folder and
runs in its own process group, so :meth:`Service.stop` ends it with all its children.
Nothing here installs software: ``scripts/install_services.sh`` does, and
:func:`missing_services` says what is missing so that the tests can skip with that reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
INSTALL_HINT = "run scripts/install_services.sh as root (it installs postgresql and redis-server)"


def postgres_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: on PATH, else Debian's newest version."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def service_user() -> str | None:
    """The account PostgreSQL runs as: ``postgres`` (or ``nobody``) under root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    return None


def missing_services() -> str | None:
    """Why the services cannot be started here, or None when they can."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("PostgreSQL (initdb, postgres)")
    if shutil.which("redis-server") is None:
        missing.append("Redis (redis-server)")
    if missing:
        return f"{' and '.join(missing)} not installed: {INSTALL_HINT}"
    if os.geteuid() == 0 and (service_user() is None or shutil.which("runuser") is None):
        return "running as root without a 'postgres' or 'nobody' account and runuser"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready: Callable[[], bool], what: str, log: Path | None = None) -> None:
    """Poll ``ready`` until it is true; fail after STARTUP_TIMEOUT_S with the service's log."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{what} did not start within {STARTUP_TIMEOUT_S:.0f} s\n{tail}")


@dataclass
class Service:
    """A process started in its own process group, its log, and how to stop it."""

    name: str
    process: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM

    @classmethod
    def start(
        cls,
        name: str,
        command: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Service:
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(command),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        return cls(name, process, log, stop_signal)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def group_alive(self) -> bool:
        """Whether any process of this service's process group is still there."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def signal_stop(self) -> None:
        """Ask the whole process group to stop (the service's stop signal)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, self.stop_signal)

    def wait_stopped(self) -> None:
        """Wait for the process group to end; kill what is left after STOP_TIMEOUT_S."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and (self.running or self.group_alive()):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Signal the whole process group, wait, then kill what is left of it."""
        self.signal_stop()
        self.wait_stopped()


def stop_all(services: Sequence[Service]) -> None:
    """Stop several services at once: signal them all, then wait for each."""
    for service in services:
        service.signal_stop()
    for service in services:
        service.wait_stopped()


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster: superuser ``user`` with ``password``, database ``db``."""

    service: Service
    root: Path
    port: int
    user: str = "dagster"
    password: str = ""
    db: str = "dagster"
    host: str = "127.0.0.1"

    @classmethod
    def start(cls, logs: Path) -> Postgres:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError(f"PostgreSQL is not installed: {INSTALL_HINT}")
        account = service_user()
        root = Path(tempfile.mkdtemp(prefix="astro-assets-pg-"))
        password = os.urandom(12).hex()
        (root / "pwfile").write_text(password + "\n")
        if account is not None:
            entry = pwd.getpwnam(account)
            for path in (root, root / "pwfile"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        as_account = ["runuser", "-u", account, "--"] if account is not None else []
        data = root / "data"
        initdb = subprocess.run(
            [
                *as_account,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "dagster",
                f"--pwfile={root / 'pwfile'}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if initdb.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        port = free_port()
        service = Service.start(
            "postgres",
            [
                *as_account,
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={root}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            logs / "postgres.log",
            stop_signal=signal.SIGINT,
        )
        postgres = cls(service, root, port, password=password)
        try:
            wait_until(postgres._accepts_connections, "PostgreSQL", service.log)
            postgres._create_database()
        except BaseException:
            postgres.stop()
            raise
        return postgres

    def connect(self, db: str | None = None):
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=db or self.db,
            connect_timeout=5,
        )

    def _accepts_connections(self) -> bool:
        import psycopg2

        if not self.service.running:
            raise RuntimeError(
                f"PostgreSQL exited:\n{self.service.log.read_text(errors='replace')[-4000:]}"
            )
        try:
            self.connect("postgres").close()
        except psycopg2.OperationalError:
            return False
        return True

    def _create_database(self) -> None:
        connection = self.connect("postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{self.db}"')
        finally:
            connection.close()

    def env(self) -> dict[str, str]:
        """The ``DAGSTER_PG_*`` variables that ``deploy/dagster.yaml`` reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db,
        }

    def stop(self) -> None:
        try:
            self.service.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Redis:
    """A Redis server without persistence."""

    service: Service
    port: int
    host: str = "127.0.0.1"

    @classmethod
    def start(cls, workdir: Path, logs: Path) -> Redis:
        port = free_port()
        service = Service.start(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--dir",
                str(workdir),
            ],
            logs / "redis.log",
        )
        redis = cls(service, port)
        try:
            wait_until(redis._answers_ping, "Redis", service.log)
        except BaseException:
            redis.stop()
            raise
        return redis

    def url(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def _answers_ping(self) -> bool:
        import redis

        if not self.service.running:
            raise RuntimeError(f"Redis exited:\n{self.service.log.read_text(errors='replace')}")
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        self.service.stop()


def start_celery_worker(
    name: str, config_yaml: Path, env: Mapping[str, str], cwd: Path, logs: Path
) -> Service:
    """One ``dagster-celery`` worker with one worker process, named ``<name>@<host>``.

    The code location is imported once at start-up (``-i``), before the worker process is
    forked, so the first step does not pay for it.
    """
    command = [
        shutil.which("dagster-celery", path=env.get("PATH")) or "dagster-celery",
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(config_yaml),
        "-n",
        name,
        "-i",
        "assets_tests.deploy.celery_location,astro_assets.definitions",
        "--",
        "--concurrency=1",
        "--without-gossip",
        "--without-mingle",
    ]
    return Service.start(name, command, logs / f"{name}.log", env=env, cwd=cwd)


def wait_for_workers(broker_url: str, names: Sequence[str], services: Sequence[Service]) -> None:
    """Wait until every worker answers a ping through the broker."""
    from celery import Celery

    app = Celery("astro-assets-probe", broker=broker_url)
    wanted = {f"{name}@{socket.gethostname()}" for name in names}
    answered: set[str] = set()

    def all_answer() -> bool:
        for service in services:
            if not service.running:
                raise RuntimeError(
                    f"worker {service.name} exited:\n"
                    f"{service.log.read_text(errors='replace')[-4000:]}"
                )
        for reply in app.control.ping(timeout=1.0) or []:
            answered.update(reply)
        return wanted <= answered

    try:
        wait_until(all_answer, f"celery workers {sorted(wanted)}", services[0].log)
    finally:
        app.close()
