"""What a user installs: one version everywhere, the typed-package marker, and the sdist
installed where no C compiler works (a slim Docker image) still serving, on the Python
engine, and saying once why and how to get the native one.

(.ci/run also builds the manylinux wheel, installs it into a clean venv and runs the unit
and integration tests against it; these tests look at the package they are run with.)
"""

from __future__ import annotations

import importlib.metadata
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

import prefork
from tests.server import ROOT, Server

pytestmark = pytest.mark.timeout(180)


def test_one_version_in_the_module_the_metadata_and_the_cli() -> None:
    assert importlib.metadata.version("prefork") == prefork.__version__
    out = subprocess.run([sys.executable, "-m", "prefork", "--version"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert out.strip() == f"prefork {prefork.__version__}"


def test_the_package_says_it_is_typed_and_ships_its_stub() -> None:
    package = Path(prefork.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_native.pyi").is_file()
    # The wheel's RECORD lists .dist-info/licenses/LICENSE; an editable install's
    # metadata, the checkout's sources (LICENSE among them).
    files = {str(f) for f in importlib.metadata.files("prefork") or []}
    assert any(f.split("/")[-1] == "LICENSE" for f in files), "the license ships"
    meta = importlib.metadata.metadata("prefork")
    assert meta["License-Expression"] == "MIT"


def setuptools_version() -> tuple[int, ...]:
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return (0,)
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


@pytest.mark.skipif(not (ROOT / "prefork" / "_native.c").exists(),
                    reason="run against an installed package: there is no source to build")
@pytest.mark.skipif(setuptools_version() < (77,),
                    reason="building prefork needs setuptools >= 77 (the test extra has it)")
def test_installed_without_a_compiler_it_serves_on_the_python_engine(tmp_path: Path) -> None:
    """The sdist, installed by pip with CC=false: the compiled core is skipped, the install
    succeeds, and the server serves, logging one warning naming the way to the native
    engine. (Built by setuptools' own PEP 517 hook, installed without build isolation:
    this venv's setuptools, offline.)"""
    dist = tmp_path / "dist"
    sdist = subprocess.run(
        [sys.executable, "-c", "import sys; from setuptools import build_meta; "
         "print(build_meta.build_sdist(sys.argv[1]))", str(dist)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert sdist.returncode == 0, sdist.stderr[-2000:]
    archive = dist / sdist.stdout.strip().splitlines()[-1]
    target = tmp_path / "site"
    env = {**os.environ, "CC": "false", "LDSHARED": "false", "PIP_NO_INDEX": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
         "--no-cache-dir", "--target", str(target), str(archive)],
        capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    installed = target / "prefork"
    assert (installed / "cli.py").is_file()
    assert not list(installed.glob("_native*.so")), "CC=false cannot have built the core"
    # The installed copy, not the checkout: the server starts in tmp_path, with Python's
    # site off (-S: an editable install's finder would supply the checkout's compiled
    # core) and the path given: the install target, the app telling which prefork it
    # runs on, and this venv's site-packages for the dependencies.
    (tmp_path / "where.py").write_text(
        "import prefork\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [prefork.__file__.encode()]\n")
    launcher = tmp_path / "launch"
    launcher.write_text(f'#!/bin/sh\ncd "{tmp_path}" || exit 1\n'
                        'python=$1; shift; exec "$python" -S "$@"\n')
    launcher.chmod(0o755)
    path = [str(target), str(tmp_path), *site.getsitepackages()]
    with Server("where:app", "--http-engine", "auto", workers=1, prefix=(str(launcher),),
                env={"PYTHONPATH": os.pathsep.join(path)}) as srv:
        status, _, body = srv.get("/")
        log = srv.log()
    assert status == 200
    assert body.decode().startswith(str(installed)), body
    lines = [line for line in log.splitlines() if "compiled core" in line]
    assert len(lines) == 1, lines
    assert "WARNING" in lines[0] and "python" in lines[0] and "wheel" in lines[0], lines[0]
