"""The Responses API's SQLite store: round trips, the bound, threads and several
connections on one file, a place it cannot write."""

from __future__ import annotations

import threading

import pytest

from locallama.errors import StorageError
from locallama.store.responses import ResponseStore, StoredResponse

ITEMS = [{"type": "message", "role": "user", "content": "hi"}]


def response(i: int) -> dict:
    return {"id": f"resp_{i}", "object": "response", "output": [{"n": i, "text": "é\n\"x\""}]}


def test_put_get_delete_and_reopen(tmp_path):
    path = tmp_path / "responses.sqlite"
    store = ResponseStore(path)
    assert not path.exists()  # opened on first use
    assert store.get("resp_1") is None
    store.put("resp_1", ITEMS, response(1))
    assert store.get("resp_1") == StoredResponse(ITEMS, response(1))
    store.close()
    again = ResponseStore(path)
    assert again.get("resp_1") == StoredResponse(ITEMS, response(1))
    assert again.delete("resp_1") is True and again.delete("resp_1") is False
    assert again.get("resp_1") is None


def test_the_oldest_go_first_past_the_bound(tmp_path):
    store = ResponseStore(tmp_path / "r.sqlite", max_kept=3)
    for i in range(5):
        store.put(f"resp_{i}", ITEMS, response(i))
    assert store.count() == 3
    assert [store.get(f"resp_{i}") is not None for i in range(5)] == [False, False, True,
                                                                       True, True]
    store.put("resp_2", ITEMS, response(2))  # replaced: now the newest
    store.put("resp_5", ITEMS, response(5))
    assert store.get("resp_3") is None and store.get("resp_2") is not None


def test_threads_and_two_stores_on_one_file(tmp_path):
    path = tmp_path / "r.sqlite"
    stores = [ResponseStore(path), ResponseStore(path)]
    failures: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                key = f"resp_{t}_{i}"
                store = stores[t % 2]
                store.put(key, ITEMS, response(i))
                assert store.get(key) == StoredResponse(ITEMS, response(i))
        except BaseException as exc:  # handed to the test thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert stores[0].count() == stores[1].count() == 200


def test_a_store_it_cannot_create_is_a_storage_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    store = ResponseStore(tmp_path / "file" / "r.sqlite")
    with pytest.raises(StorageError) as caught:
        store.put("resp_1", ITEMS, response(1))
    assert "r.sqlite" in str(caught.value)
    with pytest.raises(StorageError):
        store.get("resp_1")


def test_two_stores_opening_a_new_file_at_once_both_succeed(tmp_path):
    """Each store switches a new file to WAL mode on first use, and SQLite refuses
    the switch at once ("database is locked", no busy timeout) while the other is
    doing the same: two servers starting on one store each answer their request."""
    for trial in range(20):
        path = tmp_path / f"r{trial}.sqlite"
        stores = [ResponseStore(path), ResponseStore(path)]
        start = threading.Barrier(2)
        failures: list[BaseException] = []

        def first_put(n: int, stores: list[ResponseStore], start: threading.Barrier,
                      failures: list[BaseException]) -> None:
            start.wait()
            try:
                stores[n].put(f"resp_{n}", ITEMS, response(n))
            except BaseException as exc:  # handed to the test thread
                failures.append(exc)

        threads = [threading.Thread(target=first_put,
                                    args=(n, stores, start, failures)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures
        assert stores[0].get("resp_1") == StoredResponse(ITEMS, response(1))
        assert stores[1].get("resp_0") == StoredResponse(ITEMS, response(0))
