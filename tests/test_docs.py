"""The documentation holds together: every link lands, the help page Wireshark opens
covers every kind of interface and links the guide, which ships with the package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.fast

HELP = REPO / "swtpm_extcap" / "data" / "help.html"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_of_the_docs_lands_on_a_file(page: Path) -> None:
    targets = [t for t in _MD_LINK.findall(page.read_text()) if "://" not in t]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert missing == []


def test_the_readme_links_every_guide_page() -> None:
    linked = set(_MD_LINK.findall((REPO / "README.md").read_text()))
    pages = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert pages - linked == set()


def test_the_help_page_links_the_guide_that_ships_beside_it() -> None:
    """``swtpm_extcap/guide`` is the docs folder (a link in the checkout, copied into
    the wheel as package data), so the help page's links work installed too."""
    html = HELP.read_text()
    links = re.findall(r'href="(\.\./guide/[^"]+)"', html)
    assert len(links) >= 8
    assert [link for link in links if not (HELP.parent / link).is_file()] == []
    assert (REPO / "swtpm_extcap" / "guide").resolve() == (REPO / "docs").resolve()


def test_the_help_page_covers_every_kind_of_interface() -> None:
    html = HELP.read_text()
    for name in ("swtpm-103", "swtpm-fedora39", "swtpm-web1", "swtpm-pve1-103", "swtpm-ssh",
                 "swtpm-demo", "swtpm-config-error"):
        assert f"<code>{name}</code>" in html, name


def test_the_layout_table_of_the_development_guide_names_every_module() -> None:
    """docs/development.md's table, one row a subpackage, names each of its modules."""
    rows = {m.group(1): m.group(2) for m in re.finditer(
        r"^\| \d+ \| `(\w+)/` \| (.*) \|$", (REPO / "docs" / "development.md").read_text(), re.M)}
    package = REPO / "swtpm_extcap"
    missing = []
    for sub in sorted(p for p in package.iterdir() if (p / "__init__.py").is_file()):
        row = rows.get(sub.name, "")
        missing += [f"{sub.name}/{m.stem}" for m in sorted(sub.glob("*.py"))
                    if m.stem != "__init__" and f"`{m.stem}`" not in row]
    assert missing == []
