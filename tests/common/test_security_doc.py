"""docs/security.md: every ASVS row names a status and only tests that exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "security.md").read_text()
ROW = re.compile(r"^\| ([23]\.\d+\.\d+) \|(.*)$", re.MULTILINE)
TEST_REFERENCE = re.compile(r"`((?:tests|bench)/[\w/]+\.py)::(\w+)`")
STATUSES = {"met", "partly met", "not met", "n/a"}


def _rows() -> dict[str, list[str]]:
    return {
        number: [cell.strip() for cell in rest.split("|")[:-1]]
        for number, rest in ROW.findall(DOC)
    }


def test_every_level_2_item_listed_once():
    numbers = [number for number, _ in ROW.findall(DOC)]

    assert len(numbers) == 72
    assert len(set(numbers)) == 72


def test_applicable_rows_name_a_test():
    for number, (_, status, _, tests) in _rows().items():
        assert status in STATUSES, number
        if status != "n/a":
            assert TEST_REFERENCE.search(tests), f"{number} names no test"


def test_named_tests_exist():
    for path, name in TEST_REFERENCE.findall(DOC):
        source = ROOT / path
        assert source.exists(), path
        assert re.search(rf"^def {name}\b", source.read_text(), re.MULTILINE), (
            f"{path}::{name}"
        )


def test_tally_matches_rows():
    statuses = [cells[1] for cells in _rows().values()]
    counts = {status: statuses.count(status) for status in STATUSES}

    expected = (
        f"| all | {counts['met']} | {counts['partly met']} | "
        f"{counts['not met']} | {counts['n/a']} | 72 |"
    )
    assert expected in DOC
