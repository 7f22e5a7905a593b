"""Attack 9: the deny message. It goes to the session's original stderr, never to a file the
session points fd 2 at, and it is one sanitised line whatever the path holds."""

from __future__ import annotations

import shutil
from pathlib import Path

from attack_support import Helpers
from wrapper_runner import RunWrapper

from fakeagent import FakeAgent


def test_stderr_redirected_read_only_to_a_root_owned_file(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    target = tmp_path / "root-owned"
    target.write_text("precious\n")
    target.chmod(0o444)
    result = run_wrapper(
        "/bin/bash", "-c", f"exec 2<{target}; /usr/bin/whoami", endpoint=agent.endpoint
    )
    assert target.read_text() == "precious\n"
    assert "session-wrapper: /usr/bin/whoami: denied by TACACS+" in result.stderr


def test_newlines_and_escapes_in_the_path_become_one_line(
    agent: FakeAgent, helpers: Helpers, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    folder = tmp_path / "x\nsession-wrapper: fake line\x1b[2J\x9b"
    folder.mkdir()
    shutil.copy(helpers.forbidden, folder / "forbidden")
    result = run_wrapper(
        "/bin/bash",
        "-c",
        f"cd {tmp_path} && ./*fake*/forbidden; /usr/bin/whoami $'a\\nb\\x1b[31m'",
        endpoint=agent.endpoint,
    )
    # bash's own "Permission denied" repeats the raw name; the wrapper's lines are these.
    lines = [line for line in result.stderr.splitlines() if "denied by TACACS+" in line]
    assert lines == [
        f"session-wrapper: {tmp_path}/x\\x0asession-wrapper: fake line\\x1b[2J\\x9b/forbidden: "
        "denied by TACACS+ (server: fakeagent): forbidden",
        "session-wrapper: /usr/bin/whoami: denied by TACACS+ (server: fakeagent): "
        "whoami is not for you",
    ], result.stderr
    assert not any(char in line for line in lines for char in "\x1b\x9b\r")
