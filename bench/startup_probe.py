"""Times the pieces of the wrapper's start-up one by one, in a fresh process of its own.

``python -m bench.startup_probe ENDPOINT`` imports what the wrapper imports, in the same order,
builds the same agent client, sends the same session request twice (the first time connects)
and starts the same supervisor threads on a stand-in listener fd. It prints one JSON line of
seconds. It measures the wrapper's own code; it does not run a session.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(endpoint: str) -> int:
    marks: dict[str, float] = {}
    started = time.perf_counter()

    def mark(name: str, since: float) -> float:
        now = time.perf_counter()
        marks[name] = now - since
        return now

    now = started
    import session_wrapper.cli  # timing the import is the point

    now = mark("import_cli", now)
    import pyseccomp  # noqa: F401

    now = mark("import_pyseccomp", now)
    import session_wrapper.session  # noqa: F401

    now = mark("import_session_rest", now)
    import grpc  # noqa: F401

    now = mark("import_grpc", now)
    from session_wrapper.agent_client import AgentClient
    from session_wrapper.decision import Identity, session_query
    from session_wrapper.kernel.notify import Listener
    from session_wrapper.settings import FailPolicy
    from session_wrapper.supervisor import DenyWriter, Supervisor

    now = mark("import_agent_client_rest", now)

    client = AgentClient(endpoint, 5.0)
    now = mark("client_build", now)
    query = session_query(Identity("bench", "pts/bench", "192.0.2.1", 1))
    client.authorize(query)
    now = mark("first_session_request", now)
    warm = []
    for _ in range(20):
        before = time.perf_counter()
        client.authorize(query)
        warm.append(time.perf_counter() - before)
    warm.sort()
    marks["warm_session_request"] = warm[len(warm) // 2]

    # A pipe stands in for the listener fd: the supervisor only polls it here, and closing the
    # write end reports POLLHUP (pipe(7)), which ends the receiver as the real listener's would.
    ours, theirs = os.pipe()
    before = time.perf_counter()
    supervisor = Supervisor(
        Listener(ours),
        -1,
        -1,
        frozenset(),
        client.authorize,
        Identity("bench", "", "", 1),
        FailPolicy.CLOSED,
        DenyWriter(2),
    )
    supervisor.start()
    marks["supervisor_start"] = time.perf_counter() - before
    os.close(theirs)
    supervisor.wait_drained(2.0)
    client.close()
    print(json.dumps(marks), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
