"""The test suite's own habits: helpers live in ``tests/helpers/``, fixtures in ``conftest.py``,
and no test module imports ``tests.conftest`` or another test module."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_only_test_modules_and_conftest_sit_at_the_top_of_tests() -> None:
    loose = [p.name for p in TESTS.glob("*.py") if not p.name.startswith("test_") and p.name != "conftest.py"]
    assert not loose, f"move helper modules into tests/helpers/: {loose}"


def test_nothing_imports_conftest_or_another_test_module() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+tests\.(conftest|test_\w+)\b", re.MULTILINE)
    offenders = [str(p.relative_to(TESTS)) for p in TESTS.rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders, f"import from tests/helpers/ instead: {offenders}"
