"""Attack 7: a nested listener, unshare -Ur with chroot into a fake tree, and a bind mount over
an allowlisted path."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from attack_support import cmds
from wrapper_runner import RunWrapper

from fakeagent import FakeAgent


def test_nested_listener_is_refused(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    code = (
        "from session_wrapper.kernel import seccomp_filter as f\n"
        "try:\n"
        "    f.load(f.build_bpf())\n"
        "except OSError as error:\n"
        "    print('refused', error.strerror)\n"
    )
    result = run_wrapper(sys.executable, "-c", code, endpoint=agent.endpoint)
    assert result.stdout == "refused Device or resource busy\n", result.stderr


def test_unshare_and_chroot_into_a_fake_tree(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    shutil.copy("/usr/bin/whoami", fake / "bin" / "bash")
    result = run_wrapper(
        "/bin/bash",
        "-c",
        f"/usr/bin/unshare -Ur /usr/sbin/chroot {fake} /bin/bash; echo unshare $?; "
        f"/usr/sbin/chroot {fake} /bin/bash; echo chroot $?",
        endpoint=agent.endpoint,
    )
    assert "unshare 1" in result.stdout
    assert "chroot 125" in result.stdout
    assert "Operation not permitted" in result.stderr
    assert "root" not in result.stdout.split()
    assert "/usr/bin/whoami" not in cmds(agent)


MOUNT_PROBE = r"""
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
MS_BIND, OPEN_TREE_CLONE, AT_FDCWD = 4096, 1, -100
result = libc.mount(b"/usr/bin/whoami", b"/usr/bin/id", None, MS_BIND, None)
print("mount", "ok" if result == 0 else errno.errorcode[ctypes.get_errno()])
result = libc.syscall(428, AT_FDCWD, b"/usr/bin/whoami", OPEN_TREE_CLONE)  # open_tree
print("open_tree", "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()])
"""


def test_mount_over_an_allowlisted_path(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    probe = tmp_path / "mount.py"
    probe.write_text(MOUNT_PROBE)
    result = run_wrapper(
        "/bin/bash", "-c", f"{sys.executable} {probe}; /usr/bin/id -un", endpoint=agent.endpoint
    )
    assert result.stdout.splitlines() == ["mount EPERM", "open_tree EPERM", "root"], result.stderr
    assert "/usr/bin/whoami" not in cmds(agent)
