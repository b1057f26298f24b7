"""docker/ is checked statically (CI has no Docker engine): the image and compose file agree
with the project and keep secrets out."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_image_uses_the_projects_python_and_installs_only_from_the_lock():
    steps = dockerfile_instructions()
    base = next(arg for op, arg in steps if op == "FROM")
    requires = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert "python:3.11" in base and ">=3.11" in requires["requires-python"]
    runs = [arg for op, arg in steps if op == "RUN"]
    installs = [r for r in runs if "pip install" in r or "uv " in r]
    assert all("--require-hashes" in r or "uv sync --frozen" in r for r in installs), installs
    assert not any(re.search(r"curl|wget|constraints-", r) for r in runs)


def test_every_path_the_image_copies_exists():
    for op, arg in dockerfile_instructions():
        if op == "COPY":
            for source in arg.split()[:-1]:
                assert (PROJECT_ROOT / source).exists(), source


def test_image_runs_unprivileged_and_bakes_in_no_key():
    steps = dockerfile_instructions()
    assert ("USER", "joinedup") in steps
    text = (DOCKER / "Dockerfile").read_text()
    assert "JOINEDUP_KEY=" not in text
    assert not any(op == "COPY" and ".key" in arg for op, arg in steps)


def test_compose_runs_every_airflow3_component_against_postgres():
    services = compose()["services"]
    commands = {name: svc.get("command", [None])[0] for name, svc in services.items()}
    for component in ("scheduler", "dag-processor", "api-server", "triggerer"):
        assert component in commands.values()
    assert commands["airflow-init"] == "db"
    for name, svc in services.items():
        if name == "postgres":
            continue
        env = svc["environment"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert env["JOINEDUP_KEY_FILE"] == "/run/secrets/joinedup_key"
        assert "joinedup_key" in svc["secrets"]


def test_compose_keeps_passwords_and_key_out_of_the_file():
    spec = compose()
    assert spec["secrets"]["joinedup_key"]["file"] == "./secrets/joinedup.key"
    text = (DOCKER / "compose.yaml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text
    assert not re.search(r"PASSWORD:\s*[A-Za-z0-9]+\s*$", text, re.MULTILINE)


def test_the_image_installs_the_postgres_driver_from_the_lock():
    extras = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("psycopg2") for dep in extras["deploy"])
    assert 'name = "psycopg2-binary"' in (PROJECT_ROOT / "uv.lock").read_text()
    assert "--extra deploy" in (DOCKER / "Dockerfile").read_text()
