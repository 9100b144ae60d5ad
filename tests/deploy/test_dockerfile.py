"""Checks on deploy/Dockerfile by parsing its instructions."""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field

import pytest

BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "libpq-dev", "python3-dev")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        return [args for kind, args in self.instructions if kind == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Split a Dockerfile into stages of (INSTRUCTION, arguments) pairs."""
    logical_lines = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical_lines.append(current + stripped)
        current = ""

    stages: list[Stage] = []
    for line in logical_lines:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append((keyword, arguments.strip()))
    return stages


def effective_user(stages: list[Stage], index: int) -> str | None:
    """Return the USER in force at the end of stage ``index``, following stage bases."""
    stage = stages[index]
    users = stage.arguments("USER")
    if users:
        return users[-1]
    for earlier in range(index):
        if stages[earlier].name == stage.base:
            return effective_user(stages, earlier)
    return None


@pytest.fixture(scope="module")
def stages(checkout_dir) -> list[Stage]:
    return parse_dockerfile((checkout_dir / "deploy" / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def final(stages) -> Stage:
    return stages[-1]


def test_dockerfile_is_multi_stage(stages):
    assert len(stages) >= 2
    assert stages[0].name == "build"


def test_dockerfile_final_stage_non_root(stages):
    user = effective_user(stages, len(stages) - 1)
    assert user is not None, "the final stage sets no USER"
    name = user.split(":")[0]
    assert name not in ("root", "0"), f"final stage runs as {user}"


def test_dockerfile_final_user_numeric(final):
    # Kubernetes' runAsNonRoot can only verify a numeric user id.
    user = final.arguments("USER")[-1]
    assert user.split(":")[0].isdigit()


def test_dockerfile_user_matches_kubernetes(final, kubernetes_documents):
    uid = int(final.arguments("USER")[-1].split(":")[0])
    for filename, document in kubernetes_documents:
        if document["kind"] in ("Deployment", "Job"):
            context = document["spec"]["template"]["spec"]["securityContext"]
            assert context["runAsUser"] == uid, filename


def test_dockerfile_base_is_slim_python(stages):
    for stage in stages:
        assert stage.base == "${PYTHON_IMAGE}"


def test_dockerfile_python_image_is_slim(checkout_dir):
    text = (checkout_dir / "deploy" / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text


def test_dockerfile_build_stage_builds_wheels(stages):
    runs = " ".join(stages[0].arguments("RUN"))
    assert "pip wheel" in runs


def test_dockerfile_final_stage_has_no_build_tools(final):
    text = " ".join(final.arguments("RUN")).split()
    for tool in BUILD_TOOLS:
        assert tool not in text, f"the final stage installs {tool}"


def test_dockerfile_final_stage_installs_gnupg(final):
    runs = " ".join(final.arguments("RUN"))
    assert "apt-get install" in runs
    assert "gnupg" in runs.split()


def test_dockerfile_installs_from_wheels_only(final):
    runs = " ".join(final.arguments("RUN"))
    assert "from=build" in runs
    assert "--no-index" in runs


def test_dockerfile_healthcheck_uses_urllib(final):
    (healthcheck,) = final.arguments("HEALTHCHECK")
    assert "urllib.request" in healthcheck
    assert "/healthz" in healthcheck
    assert "curl" not in healthcheck


def test_dockerfile_ships_gunicorn_conf(final):
    copies = final.arguments("COPY")
    assert "deploy/gunicorn.conf.py /app/gunicorn.conf.py" in copies
    assert "/app" in final.arguments("WORKDIR")


def test_dockerfile_sets_production(final):
    environment = " ".join(final.arguments("ENV"))
    assert "GATEHOUSE_ENV=production" in environment
    assert "GATEHOUSE_DATA_DIR=/var/lib/gatehouse" in environment


def test_dockerfile_copies_every_package(stages, checkout_dir):
    pyproject = tomllib.loads((checkout_dir / "pyproject.toml").read_text())
    package_dirs = pyproject["tool"]["setuptools"]["package-dir"].values()
    top_dirs = {directory.split("/")[0] for directory in package_dirs}
    copied = {args.split()[0] for args in stages[0].arguments("COPY")}
    assert top_dirs <= copied
    assert "pyproject.toml" in copied


def test_dockerignore_keeps_copied_sources(stages, checkout_dir):
    ignore = (checkout_dir / "deploy" / "Dockerfile.dockerignore").read_text()
    patterns = [p for p in ignore.splitlines() if p and not p.startswith("#")]
    sources = [args.split()[0] for stage in stages for args in stage.arguments("COPY")]
    sources = [source for source in sources if not source.startswith("--")]
    for source in sources:
        assert not _ignored(patterns, source.rstrip("/")), f"{source} is ignored"
    assert _ignored(patterns, ".venv")
    assert _ignored(patterns, ".env")


def _ignored(patterns: list[str], path: str) -> bool:
    """Apply .dockerignore rules in order: the last matching pattern wins."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern):
            ignored = not negated
    return ignored


def test_parser_reads_user_in_base_stage():
    text = "FROM python AS base\nUSER 10001\nFROM base AS final\nRUN true\n"
    stages = parse_dockerfile(text)
    assert effective_user(stages, 1) == "10001"


def test_parser_finds_missing_user():
    text = "FROM python AS build\nUSER 10001\nFROM python\nRUN true\n"
    stages = parse_dockerfile(text)
    assert effective_user(stages, 1) is None
