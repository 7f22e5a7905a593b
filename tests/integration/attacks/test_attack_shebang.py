"""Attack 8: scripts whose interpreter is denied, nested shebangs, and the interpreter's argv
as the kernel builds it."""

from __future__ import annotations

from pathlib import Path

import pytest
from attack_support import cmds, commands
from wrapper_runner import RunWrapper

from fakeagent import FakeAgent


def _script(path: Path, first_line: str, body: str = "") -> Path:
    path.write_text(f"{first_line}\n{body}")
    path.chmod(0o755)
    return path


def test_script_with_a_denied_interpreter(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    script = _script(tmp_path / "job", "#!/usr/bin/whoami")
    result = run_wrapper(str(script), "one", endpoint=agent.endpoint)
    assert result.returncode == 126
    assert result.stdout == ""
    assert (
        f"session-wrapper: {script}: interpreter /usr/bin/whoami: denied by TACACS+"
        in result.stderr
    )
    # The agent was asked about the script and then about whoami, with the kernel's argv.
    assert commands(agent) == [
        (str(script), ("one",)),
        ("/usr/bin/whoami", (str(script), "one")),
    ]


@pytest.mark.parametrize("depth", [2, 5])
def test_nested_shebangs_end_in_a_denied_interpreter(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path, depth: int
) -> None:
    inner = _script(tmp_path / "s1", "#!/usr/bin/whoami")
    for level in range(2, depth + 1):
        inner = _script(tmp_path / f"s{level}", f"#!{inner}")
    result = run_wrapper(str(inner), endpoint=agent.endpoint)
    assert result.returncode == 126
    assert "interpreter /usr/bin/whoami: denied by TACACS+" in result.stderr
    assert cmds(agent)[-1] == "/usr/bin/whoami"


def test_nested_shebang_argv_is_what_the_kernel_builds(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    inner = _script(tmp_path / "inner", "#!/usr/bin/echo  -n one arg  ")
    outer = _script(tmp_path / "outer", f"#! {inner}")
    result = run_wrapper(
        "/bin/bash", "-c", "./outer x 'y z'", endpoint=agent.endpoint, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    # echo prints the argv the kernel really gave it; the agent saw the same.
    # "-n one arg" is one word, so echo does not take it for its -n option.
    assert result.stdout == f"-n one arg {inner} ./outer x y z\n"
    assert commands(agent)[-3:] == [
        (str(outer), ("x", "y z")),
        (str(inner), ("./outer", "x", "y z")),
        ("/usr/bin/echo", ("-n one arg", str(inner), "./outer", "x", "y z")),
    ]


def test_too_deep_nesting_fails_like_the_kernel(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    inner = _script(tmp_path / "s1", "#!/usr/bin/true")
    for level in range(2, 7):
        inner = _script(tmp_path / f"s{level}", f"#!{inner}")
    result = run_wrapper("/bin/bash", "-c", f"{inner}; echo $?", endpoint=agent.endpoint)
    assert result.stdout == "126\n"
    assert "Too many levels of symbolic links" in result.stderr
    assert str(inner) not in cmds(agent)
