"""Every relative link in the README and docs/ names a file that exists.

The README is the newcomer's page and sends everything else to docs/; a moved
or renamed page must not leave a dead link behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(page: Path) -> list[str]:
    """The page's Markdown link targets that are files of this repository (no URL, no in-page anchor)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:|^#", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    dead = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert dead == [], f"{page.relative_to(ROOT)} links to missing files"


def test_the_readme_stays_a_newcomers_page() -> None:
    """About 150 lines: what it is, install, the first execution, the first component, where next."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 180
