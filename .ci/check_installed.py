"""Check the botperf a wheel installed, as a user gets it: run by `.ci/wheel-check`.

Run with the Python of the virtualenv the wheel went into, from a directory outside the
checkout, so that nothing is imported from the source tree. It imports every public module
of the installed package, found by walking it (so a new subpackage is checked the day it
lands), skipping a subpackage only when the optional extra named after it is not installed;
checks that `py.typed` was installed; and runs README.md's ```python examples in order, in
one namespace, in a fresh temporary directory.

Usage: `python check_installed.py README.md [--all-extras]`. With `--all-extras` nothing may
be skipped: every extra is meant to be installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
import re
import sys
import sysconfig
import tempfile
import traceback
from pathlib import Path

PYTHON_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def extras_requirements() -> dict[str, list[str]]:
    """Map each extra botperf declares to the distributions it requires."""
    metadata = importlib.metadata.metadata("botperf")
    extras: dict[str, list[str]] = {extra: [] for extra in metadata.get_all("Provides-Extra", [])}
    for requirement in importlib.metadata.requires("botperf") or []:
        extra, name = EXTRA_MARKER.search(requirement), REQUIREMENT_NAME.match(requirement)
        if extra is not None and name is not None:
            extras.setdefault(extra.group(1), []).append(name.group(1))
    return extras


def is_installed(distribution: str) -> bool:
    """Whether `distribution` is installed in this environment."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def public_modules(package: str) -> list[str]:
    """`package` and every module below it with no private (`_`) part in its name."""
    root = importlib.import_module(package)
    below = pkgutil.walk_packages(root.__path__, prefix=f"{package}.")
    names = [m.name for m in below if not any(p.startswith("_") for p in m.name.split("."))]
    return sorted([package, *names])


def check_imports(*, all_extras: bool) -> list[str]:
    """Import every public module; return what went wrong."""
    problems: list[str] = []
    extras = extras_requirements()
    site_packages = Path(sysconfig.get_path("purelib")).resolve()
    for name in public_modules("botperf"):
        parts = name.split(".")
        extra = parts[1] if len(parts) > 1 and parts[1] in extras else None
        if extra is not None:
            absent = [d for d in extras[extra] if not is_installed(d)]
            if absent:
                message = f"{name}: extra {extra!r} not installed ({', '.join(absent)})"
                if all_extras:
                    problems.append(message)
                else:
                    print(f"skipped {message}")
                continue
        try:
            module = importlib.import_module(name)
        except Exception:
            problems.append(f"import {name} failed:\n{traceback.format_exc()}")
            continue
        where = Path(module.__file__ or "").resolve()
        if not where.is_relative_to(site_packages):
            problems.append(f"{name} was imported from {where}, not from {site_packages}")
        else:
            print(f"imported {name}" + (f" (extra {extra!r})" if extra else ""))
    return problems


def check_py_typed() -> list[str]:
    """Whether the wheel installed `botperf/py.typed` (PEP 561: the package is typed)."""
    files = importlib.metadata.files("botperf") or []
    marker = next((f for f in files if str(f).replace("\\", "/") == "botperf/py.typed"), None)
    if marker is None or not Path(str(marker.locate())).is_file():
        return ["botperf/py.typed is not installed: type checkers would ignore botperf's types"]
    print(f"installed {marker}")
    return []


def run_readme_examples(readme: Path) -> list[str]:
    """Run README.md's ```python blocks in order, in one namespace, in a temporary directory."""
    blocks = PYTHON_BLOCK.findall(readme.read_text(encoding="utf-8"))
    if not blocks:
        return [f"{readme} has no ```python example"]
    namespace: dict[str, object] = {"__name__": "__readme__"}
    with tempfile.TemporaryDirectory(prefix="botperf-readme-") as directory:
        os.chdir(directory)
        for number, block in enumerate(blocks, start=1):
            print(f"README.md python block {number}:", flush=True)
            try:
                exec(compile(block, f"README.md, python block {number}", "exec"), namespace)
            except Exception:
                return [f"README.md python block {number} failed:\n{traceback.format_exc()}"]
    return []


def main(argv: list[str]) -> int:
    """Run the checks; print each problem and return 1 if there is any."""
    readme = Path(argv[0]).resolve()
    all_extras = "--all-extras" in argv[1:]
    problems = check_imports(all_extras=all_extras) + check_py_typed()
    if not all_extras:
        problems += run_readme_examples(readme)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
