"""The repository cites only documents it holds.

A citation is any path ending in `.md` in a file of the repository (code comments,
docstrings, the README, the docs, the tests), resolved against the repository root and
against the citing file's folder; a design page kept somewhere else fails here with the
file and line that cite it. A section of docs/architecture.md cited by its title
(`docs/architecture.md, "The public contract"`) must be a heading of that page.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = "docs/architecture.md"

_CITED = re.compile(r"[\w./-]+\.md\b")
# the title may follow on the next line of a comment (`#`, SQL `--`) or docstring
_SECTION = re.compile(r"docs/architecture\.md,(?:\s|#|--)*[\"']([^\"'\n]+)[\"']")
_HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)

# Files whose citations stay as they are, with how many cite what the repository lacks.
# An applied migration may never change: the worker compares each one's checksum with the
# one recorded when it was applied and stops on a difference, so the header of the first
# keeps the name the design page had before the repository held it (docs/architecture.md,
# "Migrations").
FROZEN = {"activities/migrations/001_event_store.sql": 1}


def repository_files() -> list[str]:
    """The files of the working tree git would commit: tracked, and new ones not ignored
    (so .venv, .data and caches are never read)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return sorted({name for name in listed if (ROOT / name).is_file()})


def text_of(name: str) -> str | None:
    try:
        return (ROOT / name).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None  # an image


def texts() -> Iterator[tuple[str, str]]:
    for name in repository_files():
        text = text_of(name)
        if text is not None:
            yield name, text


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def test_every_cited_markdown_document_is_in_the_repository() -> None:
    files = set(repository_files())
    missing: list[str] = []
    frozen: dict[str, int] = {}
    for name, text in texts():
        for match in _CITED.finditer(text):
            cited = match.group()
            if cited.startswith("//"):
                continue  # the tail of a URL
            here = posixpath.normpath(posixpath.join(posixpath.dirname(name), cited))
            if posixpath.normpath(cited) in files or here in files:
                continue
            if name in FROZEN:
                frozen[name] = frozen.get(name, 0) + 1
                continue
            missing.append(f"{name}:{line_of(text, match.start())}: {cited}")
    assert missing == [], "cited but not in the repository:\n" + "\n".join(missing)
    assert frozen == FROZEN, f"frozen files cite {frozen}, expected {FROZEN}"


def test_every_cited_section_of_the_architecture_page_is_one_of_its_headings() -> None:
    page = text_of(ARCHITECTURE)
    assert page is not None
    headings = set(_HEADING.findall(page))
    unknown = [
        f"{name}:{line_of(text, match.start())}: {match.group(1)!r}"
        for name, text in texts()
        for match in _SECTION.finditer(text)
        if match.group(1) not in headings
    ]
    assert unknown == [], f"sections not in {ARCHITECTURE}:\n" + "\n".join(unknown)
