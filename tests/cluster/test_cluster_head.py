"""The head's replica directory (no Ray needed): counts that arrive out of order."""

from __future__ import annotations

from pathlib import Path

from locallama.cluster.head import Head


def identity(replica: str, **counts: int) -> dict[str, object]:
    return {"replica": replica, "model": "tiny:latest", "node": "n1", "node_ip": "127.0.0.1",
            "actor": "a", "pid": 1} | counts


def test_a_requests_end_overtaking_its_start_leaks_no_request(tmp_path: Path):
    # The head is a threaded actor: a short request's two reports can run in either order.
    head = Head(str(tmp_path / "models"))
    head.register(identity("r1", seq=1, ongoing=0, served=0))
    head.counts("r1", 3, 0, 1)  # the end (seq 3) arrives first
    head.counts("r1", 2, 1, 1)  # then the start, older: ignored
    [row] = head.replicas()
    assert (row["ongoing"], row["served"]) == (0, 1)


def test_a_late_heartbeat_does_not_roll_counts_back(tmp_path: Path):
    head = Head(str(tmp_path / "models"))
    head.register(identity("r1", seq=1, ongoing=0, served=0))
    head.counts("r1", 3, 1, 1)
    head.register(identity("r1", seq=2, ongoing=0, served=0))  # sent before the start
    [row] = head.replicas()
    assert (row["ongoing"], row["served"]) == (1, 1)
    head.register(identity("r1", seq=4, ongoing=1, served=1))
    head.counts("r1", 5, 0, 1)
    assert head.replicas()[0]["ongoing"] == 0


def test_a_replica_dropped_as_stale_comes_back_with_its_counts(tmp_path: Path):
    head = Head(str(tmp_path / "models"))
    head.register(identity("r1", seq=1, ongoing=0, served=0))
    head.counts("r1", 2, 1, 1)
    head._replicas["r1"].seen -= 60  # no heartbeat for a minute: dropped
    assert head.replicas() == []
    head.register(identity("r1", seq=3, ongoing=1, served=1))  # the next heartbeat
    assert head.replicas()[0]["ongoing"] == 1
