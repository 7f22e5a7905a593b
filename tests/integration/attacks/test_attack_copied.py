"""Attack 4: a copy of a denied program under an allowed name, and copies under --exec-dirs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from attack_support import cmds
from wrapper_runner import RunWrapper

from fakeagent import FakeAgent

DEFAULT_DENY = """
[[rule]]
cmd = ""
status = "PASS_ADD"

[[rule]]
cmd = ["/usr/bin/true", "/usr/bin/echo"]
status = "PASS_ADD"

[default]
status = "FAIL"
server_message = "not on the list"
"""


def test_copy_named_bash_is_asked_about_by_its_real_path(
    run_wrapper: RunWrapper, tmp_path: Path, agent_socket_dir: Path
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    with FakeAgent(listen=f"unix:{agent_socket_dir}/a.sock", policy=DEFAULT_DENY) as agent:
        result = run_wrapper(
            "/bin/bash",
            "-c",
            f"cd {work} && /usr/bin/cp /usr/bin/whoami ./bash; ./bash; echo $?",
            endpoint=agent.endpoint,
        )
        asked = cmds(agent)
    # cp itself is not on the list either: the copy is never made, and ./bash does not exist.
    assert "/usr/bin/cp" in asked
    shutil.copy("/usr/bin/whoami", work / "bash")
    with FakeAgent(listen=f"unix:{agent_socket_dir}/b.sock", policy=DEFAULT_DENY) as agent:
        result = run_wrapper(
            "/bin/bash", "-c", f"cd {work} && ./bash; echo $?", endpoint=agent.endpoint
        )
        asked = cmds(agent)
    assert result.stdout == "126\n"
    assert f"session-wrapper: {work}/bash: denied by TACACS+" in result.stderr
    # Not taken for /usr/bin/bash: the allowlist matched nothing, the agent saw the copy.
    assert asked == [f"{work}/bash"]


@pytest.mark.parametrize("copy", ["whoami-copy", "true-copy"])
def test_copied_binary_cannot_run_under_exec_dirs(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path, copy: str
) -> None:
    source = "/usr/bin/whoami" if copy.startswith("whoami") else "/usr/bin/true"
    shutil.copy(source, tmp_path / copy)
    result = run_wrapper(
        "/bin/bash",
        "-c",
        f"./{copy}; echo status $?; /usr/bin/true && echo system-ok",
        endpoint=agent.endpoint,
        extra=["--exec-dirs", "/usr,/bin,/sbin,/lib,/lib64,/opt"],
        cwd=tmp_path,
    )
    # The agent allows the copy of true (its policy passes it); Landlock still refuses to map
    # it for execution, because it lies outside the exec dirs.
    assert "status 126" in result.stdout
    assert "Permission denied" in result.stderr
    assert "system-ok" in result.stdout
    assert "root" not in result.stdout
