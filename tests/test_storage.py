"""Local storage: item names are checked, writes are atomic, a missing input is an InputError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobkit_worker.errors import InputError, StorageError, StoreUnavailable
from jobkit_worker.scratch import owner_prefix
from jobkit_worker.settings import Settings
from jobkit_worker.storage.base import open_store
from jobkit_worker.storage.local import TEMPORARY_DIR, LocalStore

SETTINGS = Settings()


def test_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
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


# Makes a temporary in the directory given, as a writer does, and ends without removing it.
_KILLED_WRITER = """\
import os, sys, tempfile
from pathlib import Path
from jobkit_worker.scratch import owner_prefix
directory = Path(sys.argv[1])
tempfile.mkstemp(dir=directory, prefix=owner_prefix(directory))
os._exit(0)  # as a kill would: no exit handler runs
"""


def test_a_check_removes_what_a_killed_writer_left_and_keeps_what_a_live_one_writes(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    store.write("kept.csv", b"data")
    temporaries = tmp_path / TEMPORARY_DIR
    live = temporaries / f"{owner_prefix(temporaries)}writing"
    live.write_bytes(b"being written")
    own = sorted(os.listdir(temporaries))  # with this process's lock
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(temporaries)], check=True)
    assert len(os.listdir(temporaries)) == len(own) + 2  # its temporary and its lock

    store.check()

    assert sorted(os.listdir(temporaries)) == own
    assert store.list() == ["kept.csv"]
    assert (tmp_path / "kept.csv").read_bytes() == b"data"


def test_a_file_missing_because_the_location_changed_under_the_store_is_transient(
    tmp_path: Path,
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.csv").write_text("x")
    store = LocalStore(root)
    store.check()
    root.rename(tmp_path / "was-mounted")
    root.mkdir()  # the mount point a dropped mount leaves

    with pytest.raises(StoreUnavailable, match="no longer the directory it was"):
        store.read("a.csv")
    with pytest.raises(InputError, match="no such file"):
        LocalStore(tmp_path / "was-mounted").read("b.csv")
