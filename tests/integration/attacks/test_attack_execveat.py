"""Attack 2: execveat with a dirfd, with AT_EMPTY_PATH, and fexecve of a memfd copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from attack_support import Helpers, cmds, commands
from wrapper_runner import RunWrapper

from fakeagent import FakeAgent


def test_dirfd_and_relative_path_is_resolved(
    agent: FakeAgent, helpers: Helpers, run_wrapper: RunWrapper
) -> None:
    result = run_wrapper(
        str(helpers.execat), "dirfd", "/usr/bin", "whoami", endpoint=agent.endpoint
    )
    assert "session-wrapper: /usr/bin/whoami: denied by TACACS+" in result.stderr
    assert "execveat failed: Permission denied" in result.stdout
    assert ("/usr/bin/whoami", ("from-execveat",)) in commands(agent)


def test_empty_path_names_the_fd_file(
    agent: FakeAgent, helpers: Helpers, run_wrapper: RunWrapper
) -> None:
    result = run_wrapper(
        str(helpers.execat), "emptypath", "/usr/bin/whoami", endpoint=agent.endpoint
    )
    assert "session-wrapper: /usr/bin/whoami: denied by TACACS+" in result.stderr
    assert "execveat failed: Permission denied" in result.stdout
    assert "/usr/bin/whoami" in cmds(agent)


def test_memfd_copy_is_refused_outright(
    agent: FakeAgent,
    helpers: Helpers,
    run_wrapper: RunWrapper,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "marker"
    monkeypatch.setenv("MARKER", str(marker))
    result = run_wrapper(
        str(helpers.execat), "memfd", str(helpers.forbidden), endpoint=agent.endpoint
    )
    assert "execveat failed: Permission denied" in result.stdout
    assert (
        "session-wrapper: /memfd:payload (deleted): cannot be authorized: not a file with a "
        "stable path, refused outright: an anonymous memory file (memfd) has no path on a "
        "filesystem"
    ) in result.stderr
    assert not marker.exists()
    # Nothing about it reached the agent: there is no true file to ask about.
    assert cmds(agent) == [str(helpers.execat)]


def test_deleted_file_is_refused_outright(
    agent: FakeAgent,
    helpers: Helpers,
    run_wrapper: RunWrapper,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "marker"
    monkeypatch.setenv("MARKER", str(marker))
    copy = tmp_path / "copy"
    shutil.copy(helpers.forbidden, copy)
    script = f"exec 3<{copy}; /usr/bin/rm {copy}; {helpers.execat} emptypath /dev/fd/3"
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint)
    assert "execveat failed: Permission denied" in result.stdout
    assert f"session-wrapper: {copy} (deleted): cannot be authorized" in result.stderr
    assert "the file was deleted" in result.stderr
    assert not marker.exists()
    assert str(copy) not in cmds(agent)
