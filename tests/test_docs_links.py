"""The project's docs are self-contained (issue 16): no link or path outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "deploy").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_docs_name_no_folder_that_is_not_in_the_repository() -> None:
    for doc in DOCS:
        text = doc.read_text()
        for gone in ("research/", "../seed/", "shared/docs"):
            assert gone not in text, f"{doc.relative_to(REPO)} mentions {gone}"


def test_relative_links_in_the_docs_resolve() -> None:
    checked = 0
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue                          # http:, file:, mailto: …
            assert (doc.parent / target).exists(), f"{doc.relative_to(REPO)}: {target}"
            checked += 1
    assert checked >= 3
