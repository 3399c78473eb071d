"""The event spool on its own: files and lines, kept until acknowledged, adopted when their
process is gone (engage/event_spool.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from engage.event_spool import EventSpool, has_orphans
from tests.support import ROOT


def line(event_id: str) -> str:
    return json.dumps({"id": event_id, "kind": "open", "src": "someone"})


def files(folder) -> list[str]:
    return sorted(p.name.split(".", 1)[1] for p in folder.iterdir())


def test_events_stay_until_acknowledged_and_spent_files_go(tmp_path):
    spool = EventSpool(tmp_path)
    for i in range(5):
        spool.append(f"e{i}", line(f"e{i}"))
    assert spool.waiting == 5
    assert [json.loads(x)["id"] for x in spool.unacknowledged()] == ["e0", "e1", "e2", "e3", "e4"]
    assert [json.loads(x)["id"] for x in spool.unacknowledged({"e3", "nope"})] == ["e3"]

    assert spool.acknowledge(["e0", "e2", "unknown"]) == 2
    spool.sync()
    assert [json.loads(x)["id"] for x in spool.unacknowledged()] == ["e1", "e3", "e4"]
    assert spool.acknowledge(["e1", "e3", "e4"]) == 3
    spool.sync()  # all acknowledged: a fresh segment, the spent one deleted
    assert spool.waiting == 0 and list(spool.unacknowledged()) == []
    assert files(tmp_path) == ["000002.events", "lock"]
    spool.close()
    assert list(tmp_path.iterdir()) == []  # nothing left to keep: nothing left behind


def test_a_live_spool_is_nobody_s_orphan_and_a_closed_one_is_adopted(tmp_path):
    gone = EventSpool(tmp_path)
    gone.append("a", line("a"))
    gone.append("b", line("b"))
    heir = EventSpool(tmp_path)
    assert not has_orphans(tmp_path)  # both alive (a lock held in this process reads alive)
    assert heir.adopt_orphans() == []

    gone.close()  # its process ends without an acknowledgement: the events stay on disk
    assert has_orphans(tmp_path)
    adopted = heir.adopt_orphans()
    assert [event_id for event_id, _line in adopted] == ["a", "b"]
    assert all(json.loads(x)["src"] == heir.name for _id, x in adopted)  # acks come to the heir
    assert not any(gone.name in p.name for p in tmp_path.iterdir())
    assert heir.waiting == 2 and not has_orphans(tmp_path)
    heir.close()


def test_a_killed_process_leaves_its_spool_to_the_next(tmp_path):
    """SIGKILL: no exit handler, only what the kernel has; the lock dies with the process."""
    code = (
        "import json, os, sys\n"
        "from engage.event_spool import EventSpool\n"
        "spool = EventSpool(sys.argv[1])\n"
        "for i in range(3):\n"
        "    spool.append(f'k{i}', json.dumps({'id': f'k{i}'}))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, check=False)
    heir = EventSpool(tmp_path)
    assert sorted(i for i, _line in heir.adopt_orphans()) == ["k0", "k1", "k2"]
    heir.close()


def test_a_torn_last_line_is_skipped(tmp_path):
    gone = EventSpool(tmp_path)
    gone.append("whole", line("whole"))
    gone.close()
    (segment,) = tmp_path.glob("*.events")
    with segment.open("a") as f:
        f.write('{"id": "torn", "ki')  # the process died in the middle of a write
    heir = EventSpool(tmp_path)
    assert [i for i, _line in heir.adopt_orphans()] == ["whole"]
    heir.close()
    assert os.listdir(tmp_path)  # "whole" waits for its acknowledgement
