"""Local storage: item names are checked, writes are atomic, a missing input is an InputError."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import InputError, StorageError
from worker.settings import Settings
from worker.storage.base import open_store
from worker.storage.local import LocalStore

SETTINGS = Settings()


def test_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "out")
    store.write("sub/result.csv", b"old")
    store.write("sub/result.csv", b"new")
    assert (tmp_path / "out/sub/result.csv").read_bytes() == b"new"
    assert [p.name for p in (tmp_path / "out/sub").iterdir()] == ["result.csv"]


def test_reading_a_missing_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothere\.csv: no such file in"):
        LocalStore(tmp_path).read("nothere.csv")


def test_a_write_that_cannot_happen_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")
    with pytest.raises(StorageError, match="cannot write"):
        LocalStore(tmp_path / "blocker").write("result.csv", b"x")


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "a/../../b", "bad\nname", ""])
def test_unsafe_item_names_never_touch_the_disk(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError):
        LocalStore(tmp_path).read(name)


def test_listing_finds_files_below_the_root_sorted_and_skips_hidden_ones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for name in ["b.csv", "a.csv", "sub/c.csv", ".partial.csv", "notes.txt"]:
        store.write(name, b"")
    assert store.list(".csv") == ["a.csv", "b.csv", "sub/c.csv"]
    assert LocalStore(tmp_path / "absent").list() == []


def test_file_urls_and_paths_open_the_same_directory(tmp_path: Path) -> None:
    assert (
        open_store(f"file://{tmp_path}", SETTINGS).root == open_store(str(tmp_path), SETTINGS).root
    )


def test_size_tells_a_file_size_without_reading_it(tmp_path: Path) -> None:
    LocalStore(tmp_path).write("in.csv", b"12345")
    assert LocalStore(tmp_path).size("in.csv") == 5


def test_the_size_of_a_missing_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "adir.csv").mkdir()
    for name in ("nothere.csv", "adir.csv"):
        with pytest.raises(InputError, match=rf"{name}: no such file in"):
            LocalStore(tmp_path).size(name)
