"""Leases: one holder per cell, re-entrant for the same run, taken over when expired or when the
holder's process on this host is gone, renewed while held, lost when taken over."""

import json
import os
import subprocess
import sys
import threading
import time

from idsuite.results.leases import UNREADABLE_GRACE, Lease, Leases
from idsuite.results.store import CellRef

REF = CellRef("model/x", "rank_deficiency", "abc")


def test_one_holder_and_the_same_owner_takes_it_back(tmp_path):
    a, b = Leases(tmp_path, "run-a"), Leases(tmp_path, "run-b")
    assert a.acquire(REF) and not b.acquire(REF)
    assert b.holder(REF).owner == "run-a"
    assert Leases(tmp_path, "run-a").acquire(REF)  # a retried task of run a
    a.release(REF)  # a's own token was replaced by the retry's: releasing leaves the retry's lease
    assert b.holder(REF) is not None and not b.acquire(REF)


def test_release_frees_and_concurrent_takers_get_one_lease(tmp_path):
    a = Leases(tmp_path, "run-a")
    assert a.acquire(REF)
    a.release(REF)
    assert not a.path(REF).exists()
    wins = []
    barrier = threading.Barrier(8)

    def take(owner: str) -> None:
        barrier.wait()
        if Leases(tmp_path, owner).acquire(REF):
            wins.append(owner)

    threads = [threading.Thread(target=take, args=(f"run-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def write(leases: Leases, lease: Lease) -> None:
    path = leases.path(REF)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(lease.__dict__))


def test_an_expired_lease_of_another_host_is_taken_over(tmp_path):
    b = Leases(tmp_path, "run-b")
    write(b, Lease("run-a", "t", time.time() + 60, "elsewhere", 1))
    assert not b.acquire(REF)  # live, on a host this machine cannot check
    write(b, Lease("run-a", "t", time.time() - 1, "elsewhere", 1))
    assert b.acquire(REF) and b.holder(REF).owner == "run-b"
    assert not list(b.path(REF).parent.glob(".*expired*"))  # the moved lease is gone


def test_the_lease_of_a_dead_local_process_is_taken_over_at_once(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    b = Leases(tmp_path, "run-b")
    write(b, Lease("run-a", "t", time.time() + 600, os.uname().nodename, int(dead.stdout)))
    assert b.holder(REF) is None and b.acquire(REF)


def test_an_unreadable_lease_file_blocks_only_for_its_grace(tmp_path):
    b = Leases(tmp_path, "run-b")
    path = b.path(REF)
    path.parent.mkdir(parents=True)
    path.write_text("")  # e.g. a truncated file on a damaged disk
    assert b.holder(REF) is not None and not b.acquire(REF)  # just written: it may still be whole in a moment
    stale = time.time() - UNREADABLE_GRACE - 1
    os.utime(path, (stale, stale))
    assert b.holder(REF) is None and b.acquire(REF) and b.holder(REF).owner == "run-b"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no private or moved files left


def test_renewal_extends_and_a_lost_lease_is_reported(tmp_path):
    a = Leases(tmp_path, "run-a", ttl=30)
    assert a.acquire(REF)
    first = a.read(a.path(REF)).expires
    time.sleep(0.01)
    assert a.renew() == [] and a.read(a.path(REF)).expires > first
    write(a, Lease("run-b", "other", time.time() + 60, "elsewhere", 1))  # taken over after it expired
    assert a.renew() == [REF] and REF not in a.held


def test_held_leases_are_renewed_in_the_background_and_released_at_the_end(tmp_path):
    a = Leases(tmp_path, "run-a", ttl=0.3)
    with a:
        assert a.acquire(REF)
        time.sleep(0.8)  # past the ttl: only renewal keeps it
        assert Leases(tmp_path, "run-b").holder(REF) is not None
    assert not a.path(REF).exists()


def test_a_lease_dated_further_ahead_than_any_renewal_does_not_block(tmp_path):
    """A holder renews for at most MAX_TTL seconds: an expiry past that (a host whose clock runs
    ahead, a forged file) is not believed, and the cell is taken over at once."""
    from idsuite.results.leases import MAX_TTL

    taker = Leases(tmp_path, "run-b")
    for ahead, blocks in ((MAX_TTL - 10, True), (10**6, False), (10**12, False)):
        taker.path(REF).parent.mkdir(parents=True, exist_ok=True)
        taker.path(REF).write_text(json.dumps({"owner": "run-a", "token": "t", "expires": time.time() + ahead,
                                               "host": "another-host", "pid": 7}))
        assert (taker.holder(REF) is not None) == blocks and taker.acquire(REF) != blocks, ahead
        taker.release(REF)
        taker.path(REF).unlink(missing_ok=True)
