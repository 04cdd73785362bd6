"""What the ledger rests on, for each store (a directory, and Azure through Azurite): one
creator of a name wins, a lock admits one holder at a time, and a listing shows each file's
version as writes change it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from jobkit_worker.storage.azure import BlobStore
from jobkit_worker.storage.base import Store
from jobkit_worker.storage.local import LocalStore


@pytest.fixture(params=["local", "azure"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "local":
        yield LocalStore(tmp_path)
        return
    pytest.importorskip("azure.storage.blob")
    connection_string = request.getfixturevalue("azurite")
    service = BlobServiceClient.from_connection_string(connection_string)
    container = service.get_container_client(f"test-{uuid.uuid4().hex[:12]}")
    container.create_container()
    yield BlobStore(container, "prefix")
    container.delete_container()


def test_of_two_creating_one_name_at_once_exactly_one_wins(store: Store) -> None:
    won: list[bytes] = []
    racers = [
        threading.Thread(target=lambda who=who: won.append(store.create("owned", who)))
        for who in (b"first", b"second")
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()

    assert won[0] == won[1] == store.read("owned"), "both see the one winner"


def test_a_lock_admits_one_holder_at_a_time_and_tells_the_second_it_waits(store: Store) -> None:
    inside: list[str] = []
    waited = threading.Event()

    def hold(who: str) -> None:
        with store.lock("queue.publish", waited.set):
            inside.append(f"{who} in")
            time.sleep(0.5)
            inside.append(f"{who} out")

    first = threading.Thread(target=hold, args=("first",))
    first.start()
    time.sleep(0.2)
    hold("second")
    first.join()

    assert inside == ["first in", "first out", "second in", "second out"]
    assert waited.is_set()


def test_the_listing_gives_each_files_version_as_the_last_write_returned_it(store: Store) -> None:
    first = store.write("a/x.csv", b"one")
    time.sleep(0.01)
    second = store.write("a/x.csv", b"two, longer")

    entry = store.inventory()["a/x.csv"]

    assert first != second and entry.version == second
    assert entry.size == len(b"two, longer")
    assert entry.md5 in (None, store.digest("a/x.csv"))
