"""The documentation is part of the repository: every reference to it resolves.

Code cites the docs as ``docs/<page>.md, "<heading>"``; these tests check that each cited page
exists and has a heading starting with the quoted text, that no section-sign citation of a
document outside the repository is left, that every relative link in README.md and docs/*.md
points at a file (and heading) that exists, and that README.md stays a short front door whose
install and test commands are the ones the Makefile and CI run.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
README_MAX_BYTES = 12_500

SECTION_SIGN = "\u00a7"  # written as an escape so that this file does not contain one
SOURCE_SUFFIXES = {".py", ".yaml", ".yml", ".sh", ".md", ".toml", ".cfg", ".txt"}
SKIP_PARTS = {"__pycache__", ".pytest_cache"}

# docs/<page>.md, optionally followed (after closing backticks) by `, "Section name"`; the name
# may wrap onto the next line of a docstring, and may be written with escaped quotes in a string.
DOC_REF = re.compile(r'docs/([A-Za-z0-9_.-]+?\.md)`{0,2}(?:\s*,\s*\\?"([^"\\]+)\\?")?')
# [text](target) in markdown, optionally followed by `, "Section name"`.
MD_LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)(?:\s*,\s*"([^"]+)")?')
FENCE = re.compile(r"^\s*(```|~~~)")


def source_files() -> list[Path]:
    """Every text file a reader or maintainer sees: src, tests, benchmarks, README, docs, build files."""
    files = [README, REPO / "Makefile", REPO / "pyproject.toml", REPO / ".ci" / "run"]
    for root in ("src", "tests", "benchmarks", "docs"):
        for path in sorted((REPO / root).rglob("*")):
            if (
                path.is_file()
                and path.suffix in SOURCE_SUFFIXES
                and not SKIP_PARTS & set(path.parts)
                and not any(part.endswith(".egg-info") for part in path.parts)
            ):
                files.append(path)
    return [f for f in files if f.is_file()]


def without_code_blocks(text: str) -> str:
    """The markdown text with fenced code blocks blanked out (line numbers kept)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else line)
    return "\n".join(out)


def squash(text: str) -> str:
    return " ".join(text.split())


@cache
def headings(page: Path) -> tuple[str, ...]:
    """The headings of a markdown page (outside code blocks), without the leading #'s."""
    found = []
    for line in without_code_blocks(page.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            found.append(squash(match.group(1)))
    return tuple(found)


def has_heading(page: Path, name: str) -> bool:
    name = squash(name)
    return any(h == name or h.startswith(name) for h in headings(page))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = re.sub(r"[^\w\- ]", "", heading.lower())
    return kept.replace(" ", "-")


def where(path: Path, text: str, pos: int) -> str:
    return f"{path.relative_to(REPO)}:{text.count(chr(10), 0, pos) + 1}"


def test_every_doc_reference_names_an_existing_page_and_heading() -> None:
    problems, seen = [], 0
    for path in source_files():
        text = path.read_text(errors="ignore")
        for match in DOC_REF.finditer(text):
            page, section = DOCS / match.group(1), match.group(2)
            seen += 1
            if not page.is_file():
                problems.append(f"{where(path, text, match.start())}: docs/{match.group(1)} does not exist")
            elif section is not None and not has_heading(page, section):
                problems.append(
                    f"{where(path, text, match.start())}: docs/{match.group(1)} has no heading "
                    f"starting with {squash(section)!r}"
                )
    assert seen > 20, "the scan found almost no doc references: is the pattern still right?"
    assert not problems, "\n".join(problems)


def test_no_section_sign_citations_or_documents_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    problems = []
    for path in source_files():
        if path.resolve() == this:
            continue
        text = path.read_text(errors="ignore")
        is_test = (REPO / "tests") in path.parents
        for needle in (SECTION_SIGN, "pitfalls.md", "shared/design", "../shared"):
            if needle == "../shared" and is_test:  # test_amazon_toys.py guards this one by name
                continue
            pos = text.find(needle)
            if pos >= 0:
                problems.append(f"{where(path, text, pos)}: {needle!r}")
    assert not problems, 'cite docs/<page>.md, "<heading>" instead:\n' + "\n".join(problems)


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_markdown_links_resolve(page: Path) -> None:
    text = without_code_blocks(page.read_text())
    problems = []
    for match in MD_LINK.finditer(text):
        target, section = match.group(1), match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        here = where(page, text, match.start())
        if not dest.exists():
            problems.append(f"{here}: {target} does not exist")
            continue
        if dest.suffix == ".md" and anchor and anchor not in {github_slug(h) for h in headings(dest)}:
            problems.append(f"{here}: {target}: no heading with the anchor #{anchor}")
        if dest.suffix == ".md" and section and not has_heading(dest, section):
            problems.append(f"{here}: {target} has no heading starting with {section!r}")
    assert not problems, "\n".join(problems)


def test_readme_is_a_short_front_door_with_the_commands_ci_runs() -> None:
    text = README.read_text()
    assert len(text.encode()) <= README_MAX_BYTES, f"README.md is {len(text.encode())} bytes; move depth to docs/"
    makefile = (REPO / "Makefile").read_text()
    for command in ("make install", "make test", "make test-full"):
        assert command in text, command
        assert re.search(rf"^{command.split()[1]}:", makefile, re.M), f"{command} is not a Makefile target"
    # CI runs README's commands: every `make ...` line of .ci/run appears in README verbatim
    for line in (REPO / ".ci" / "run").read_text().splitlines():
        if line.strip().startswith("make "):
            assert line.strip() in text, f".ci/run runs {line.strip()!r}, which README does not show"
    # README's pip equivalent of `make install` is the Makefile's recipe, argument for argument
    torch_spec = re.search(r"^TORCH_SPEC \?= (\S+)", makefile, re.M).group(1)
    recipe = [line.split("-m pip install", 1)[1].strip() for line in makefile.splitlines() if "-m pip install" in line]
    assert len(recipe) >= 3
    for args in recipe:
        expected = "pip install " + args.replace("$(TORCH_SPEC)", torch_spec)
        assert expected in text, f"README does not show `{expected}` (Makefile install recipe)"
    assert "## Results at a glance" in text
