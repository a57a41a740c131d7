"""Every ```python block in README.md and docs/ runs, so examples never rot.

The blocks of one file run in order in one namespace, inside a fresh temporary
directory, so a page can build its example step by step. Blocks fenced as
``pycon``, ``text`` or ``bash`` are shown, not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
PYTHON_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return PYTHON_BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for number, block in enumerate(python_blocks(page), start=1):
        code = compile(block, f"{page.name}, python block {number}", "exec")
        exec(code, namespace)


def test_readme_has_examples() -> None:
    assert python_blocks(ROOT / "README.md")
