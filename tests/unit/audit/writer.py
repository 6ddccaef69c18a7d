"""Another gpuctl process writing to an audit log, for the cross-process tests. DB is any `audit`
setting: a SQLite file or a postgresql:// URL.

python writer.py DB burst RUN N   print "ready", wait for a line on stdin, append N step records, print "done"
python writer.py DB hold RUN      hold RUN, append execution_started, print "started", then wait on stdin
                                  (the test kills it there, or closes stdin to let it finish)
"""

from __future__ import annotations

import asyncio
import sys

from gpuctl.audit import AuditEvent, EventKind, open_audit
from gpuctl.identity import Identity, Requester

WRITER = Requester(identity=Identity(user="user-a"), via="executor", detail="writer")


async def burst(db: str, run_id: str, count: int) -> None:
    async with open_audit(db) as log:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for i in range(count):
            await log.append(AuditEvent(run_id=run_id, kind=EventKind.STEP, actor=WRITER, payload={"i": i}))
    print("done", flush=True)


async def hold(db: str, run_id: str) -> None:
    async with open_audit(db) as log, log.hold(run_id):
        await log.append(AuditEvent(run_id=run_id, kind=EventKind.EXECUTION_STARTED, actor=WRITER, payload={}))
        print("started", flush=True)
        await asyncio.to_thread(sys.stdin.read)


if __name__ == "__main__":
    db, mode, run = sys.argv[1:4]
    asyncio.run(burst(db, run, int(sys.argv[4])) if mode == "burst" else hold(db, run))
