"""Packaging: the hashed lock, the extras, the wheel's contents and the Dockerfile's layers."""

from __future__ import annotations

import re
import tomllib

from deploy_support import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = ROOT / "requirements.lock"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)", line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_lock_pins_every_runtime_dependency_within_its_range() -> None:
    """requirements.lock pins each runtime dependency at a version pyproject.toml allows."""
    pins = _locked()
    for spec in _pyproject()["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_lock_has_a_hash_for_every_pin() -> None:
    """Every pinned package carries at least one sha256 (pip --require-hashes needs them all)."""
    text = LOCK.read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    assert len(blocks) == len(_locked())
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_simulator_stack_is_an_extra_not_a_runtime_dependency() -> None:
    """starlette and uvicorn are in the `simulator` extra only: the image does not carry them."""
    project = _pyproject()["project"]
    runtime = {canonicalize_name(Requirement(s).name) for s in project["dependencies"]}
    simulator = {
        canonicalize_name(Requirement(s).name)
        for s in project["optional-dependencies"]["simulator"]
    }
    assert {"starlette", "uvicorn"} <= simulator
    assert runtime.isdisjoint({"starlette", "uvicorn", "uvloop", "watchfiles", "websockets"})
    assert set(_locked()).isdisjoint({"starlette", "uvicorn", "uvloop", "watchfiles", "websockets"})
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "'.[dev,simulator]'" in makefile


def test_dockerfile_installs_the_lock_before_the_app_with_labels() -> None:
    """The dependency layer (the lock, hashed) comes before the app layer; OCI labels are set."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lock_copy = dockerfile.index("COPY requirements.lock")
    lock_install = dockerfile.index("--require-hashes")
    app_copy = dockerfile.index("COPY sync/")
    assert lock_copy < lock_install < app_copy
    assert re.search(r"install --no-deps /dist/\*\.whl", dockerfile)
    for label in ("title", "version", "revision", "licenses", "created"):
        assert f"org.opencontainers.image.{label}=" in dockerfile, label
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    assert "!requirements.lock" in ignore
    assert "!LICENSE" in ignore


def test_license_and_py_typed_ship() -> None:
    """The MIT licence text exists and the package is marked typed (PEP 561)."""
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert (ROOT / "sync" / "py.typed").is_file()
    assert _pyproject()["project"]["license"] == "MIT"
