"""Event/decision ids: RFC 9562 UUIDv7 layout, unique across threads and across a fork."""

from __future__ import annotations

import os
import threading
import uuid

from cisora_mesh.events import new_id


def test_ids_are_version_7_uuids_in_time_order() -> None:
    ids = [new_id() for _ in range(2000)]  # spans several refills of the random pool
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)  # the ms timestamp prefix never goes back
    assert len(set(ids)) == len(ids)


def test_ids_are_unique_across_threads() -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [new_id() for _ in range(3000)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == len(seen) == 12000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_id()  # the parent's pool now holds unused random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the random part of its next ids, then leave without running pytest's teardown
        os.close(read)
        os.write(write, ",".join(new_id()[14:] for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split(","))
    os.waitpid(pid, 0)
    parent = {new_id()[14:] for _ in range(50)}
    assert len(child) == 50
    assert not child & parent
