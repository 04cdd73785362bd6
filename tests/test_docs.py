"""The documentation keeps up with the code: every setting is in the worker's help and in the
reference's configuration table, and the README stays a front page."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobkit_worker.settings import setting_names

ROOT = Path(__file__).resolve().parent.parent


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(heading)
    following = re.search(r"^#{1,3} ", markdown[start + len(heading) :], re.MULTILINE)
    return markdown[start : start + len(heading) + (following.start() if following else 0)]


WORKER_HELP = subprocess.run(
    [sys.executable, "-m", "jobkit_worker", "--help"], capture_output=True, text=True, check=True
).stdout
CONFIGURATION = _section((ROOT / "docs" / "reference.md").read_text(), "## Configuration")


@pytest.mark.parametrize("name", setting_names())
def test_every_setting_is_in_the_worker_help(name: str) -> None:
    assert re.search(rf"^  {name}\b", WORKER_HELP, re.MULTILINE), WORKER_HELP


@pytest.mark.parametrize("name", setting_names())
def test_every_setting_is_in_the_readme_configuration_table(name: str) -> None:
    rows = [line for line in CONFIGURATION.splitlines() if line.startswith("| ")]
    assert any(f"`{name}`" in row.split("|")[1] for row in rows), CONFIGURATION


def test_the_readme_is_a_front_page_whose_links_all_lead_somewhere() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12_000
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).exists(), target


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_every_link_between_the_pages_leads_to_a_page_and_a_heading_there(page: Path) -> None:
    for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?#?([\w-]*)\)", page.read_text()):
        linked = (page.parent / target) if target else page
        assert linked.exists(), f"{page.name}: {target}"
        headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
        slugs = {re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-") for h in headings}
        assert not anchor or anchor in slugs, f"{page.name}: {target}#{anchor}"
