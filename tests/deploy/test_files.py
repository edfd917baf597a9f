"""The deployment files hold together without Docker: the compose file parses and names the five
services, the Dockerfile copies files that exist, the start scripts and units point at real
scripts, every variable the code reads is listed in env.example, and beat's short schedule works."""

from __future__ import annotations

import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_the_compose_file_runs_postgres_redis_and_the_one_image_three_ways() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "beat"}
    for name in ("web", "worker", "beat"):
        service = services[name]
        assert service["image"] == "distributor:latest"
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert service["command"] == [f"deploy/bin/{name}"]
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert (DEPLOY / compose["services"]["web"]["build"]["dockerfile"].removeprefix("deploy/")).exists()
    assert services["beat"]["deploy"]["replicas"] == 1
    assert set(compose["volumes"]) == {"pgdata", "redisdata", "beatdata"}


def test_every_file_the_dockerfile_copies_exists() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "\nFROM python:3.11" in text
    copies = re.findall(r"^COPY\s+(.+)$", text, flags=re.MULTILINE)
    assert copies
    for line in copies:
        *sources, _target = shlex.split(line)
        for source in sources:
            assert (ROOT / source).exists(), source
    command = re.search(r'^CMD \["([^"]+)"\]', text, flags=re.MULTILINE)
    assert command and os.access(ROOT / command.group(1), os.X_OK)


def test_the_start_scripts_and_the_systemd_units_agree() -> None:
    for name in ("web", "worker", "beat"):
        script = DEPLOY / "bin" / name
        assert os.access(script, os.X_OK), script
        assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
        unit = (DEPLOY / "systemd" / f"distributor-{name}.service").read_text()
        assert f"ExecStart=/opt/distributor/deploy/bin/{name}\n" in unit
        assert "EnvironmentFile=/etc/distributor/env" in unit
    web = (DEPLOY / "bin" / "web").read_text()
    assert "manage.py migrate" in web and "collectstatic" in web and "deploy/gunicorn.conf.py" in web


def test_gunicorn_reads_its_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("GUNICORN_BIND", "127.0.0.1:9999")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_TIMEOUT", "45")
    config = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert (config["bind"], config["workers"], config["timeout"]) == ("127.0.0.1:9999", 3, 45)
    assert config["worker_class"] == "gthread" and config["max_requests_jitter"] == 500


def variables_read() -> set[str]:
    """Every environment variable the project's code and start scripts read."""
    python = re.compile(
        r"""(?:env_(?:str|bool|int|list)|environ\.get|getenv|_int)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    shell = re.compile(r"\$\{([A-Z][A-Z0-9_]+)")
    found: set[str] = set()
    for path in [*(ROOT / "distributor").glob("*.py"), DEPLOY / "gunicorn.conf.py"]:
        found |= set(python.findall(path.read_text()))
    for path in (DEPLOY / "bin").iterdir():
        found |= set(shell.findall(path.read_text()))
    # Set by the start scripts' environment for tools, not read by the project itself.
    return found - {"DJANGO_SETTINGS_MODULE", "PGDATA", "HOME", "PATH"}


def test_env_example_lists_every_variable_with_a_comment() -> None:
    lines = (DEPLOY / "env.example").read_text().splitlines()
    listed = {}
    for number, line in enumerate(lines):
        match = re.match(r"^([A-Z][A-Z0-9_]+)=", line)
        if match:
            listed[match.group(1)] = lines[number - 1]
    missing = variables_read() - set(listed)
    assert not missing, f"add to deploy/env.example: {sorted(missing)}"
    for name, comment in listed.items():
        assert comment.startswith("# "), f"{name} needs a one-line comment above it"


def celery_schedules(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from distributor.celery import app; "
            "print(sorted({str(j['schedule']) for j in app.conf.beat_schedule.values()}))",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_beat_can_run_every_job_every_few_seconds_for_the_end_to_end_test() -> None:
    short = celery_schedules({"DISTRIBUTOR_BEAT_EVERY_SECONDS": "3"})
    assert short.returncode == 0, short.stderr
    assert short.stdout.strip() == "['3.0']"
    normal = celery_schedules({"DISTRIBUTOR_BEAT_EVERY_SECONDS": ""})
    assert "crontab" in normal.stdout
    bad = celery_schedules({"DISTRIBUTOR_BEAT_EVERY_SECONDS": "soon"})
    assert bad.returncode != 0 and "DISTRIBUTOR_BEAT_EVERY_SECONDS" in bad.stderr


def test_the_readme_names_every_variable_of_env_example() -> None:
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (DEPLOY / "env.example").read_text(), flags=re.MULTILINE))
    readme = (ROOT / "README.md").read_text()
    assert {name for name in listed if f"`{name}`" not in readme} == set()
