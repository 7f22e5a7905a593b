"""The command line as a user meets it: one-line usage errors with status 2, --help, Settings."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from session_wrapper import logsetup
from session_wrapper.cli import MAX_ALLOWLIST_BYTES, parse_args
from session_wrapper.settings import FailPolicy, Settings

BASE = ["--user", "alice", "--user-uid", "1000", "--user-gid", "1000"]
USAGE = "usage: session-wrapper [OPTIONS] -- COMMAND [ARGS]..."
ENDPOINT_HINT = "give a Unix socket path such as /run/tacacs/tacacs.sock or HOST:PORT"


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m session_wrapper ARGS``, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "session_wrapper", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Parses argv, expecting exit status 2 and exactly one line on stderr; returns that line."""
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    return err


# --- through the real entry point -------------------------------------------------------------


@pytest.mark.timeout(30)
def test_help_exits_0_with_options_and_a_forcecommand_example() -> None:
    result = run_module("--help")

    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout.startswith(USAGE + "\n")
    for option in (
        "--user NAME",
        "--user-uid UID",
        "--user-gid GID",
        "--service-endpoint PATH",
        "--fail-policy closed|open",
        "--authorization-timeout-ms N",
        "--privilege-level 0..15",
        "--allowlist FILE",
        "--port STR",
        "--rem-addr STR",
        "-v, --verbose",
    ):
        assert option in result.stdout
    assert "ForceCommand" in result.stdout
    assert "ForceCommand /usr/local/libexec/session-wrapper-shim" in result.stdout


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            [*BASE, "/bin/bash"],
            f"session-wrapper: error: missing '--' before the command '/bin/bash'; {USAGE}",
        ),
        ([*BASE, "--"], f"session-wrapper: error: missing the command after '--'; {USAGE}"),
        (
            ["--user", "alice", "--user-uid", "x", "--user-gid", "1000", "--", "sh"],
            "session-wrapper: error: argument --user-uid: 'x' is not a numeric uid; give a "
            'number from 0 to 4294967294, for example "$(id -u)"',
        ),
        (
            [*BASE, "--fail-policy", "maybe", "--", "sh"],
            "session-wrapper: error: argument --fail-policy: unknown fail policy 'maybe'; "
            "use 'closed' or 'open'",
        ),
        (
            ["--", "sh"],
            "session-wrapper: error: the following arguments are required: --user, "
            "--user-uid, --user-gid",
        ),
    ],
)
def test_usage_error_through_the_entry_point(args: list[str], line: str) -> None:
    result = run_module(*args)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == line + "\n"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("args", [["--help"], [*BASE, "--privilege-level", "99", "--", "sh"]])
def test_help_and_usage_errors_load_neither_grpc_nor_the_session(args: list[str]) -> None:
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['session-wrapper', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('session_wrapper', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = [m for m in sys.modules if m == 'grpc' or m == 'session_wrapper.session']\n"
        "print('LOADED', sorted(loaded), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False
    )

    assert result.stderr.splitlines()[-1] == "LOADED []"


# --- every bad value: one line, status 2 ------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["--user", "", "--user-uid", "1", "--user-gid", "1", "--", "sh"],
            "argument --user: is empty; give the TACACS+ user name",
        ),
        (
            ["--user", "a\udcff", "--user-uid", "1", "--user-gid", "1", "--", "sh"],
            "argument --user: 'a\\xff' is not valid UTF-8",
        ),
        (
            ["--user", "a\nb", "--user-uid", "1", "--user-gid", "1", "--", "sh"],
            "argument --user: 'a\\nb' contains a control character; remove it",
        ),
        (
            ["--user", "u" * 256, "--user-uid", "1", "--user-gid", "1", "--", "sh"],
            "argument --user: is 256 bytes long; TACACS+ allows at most 255",
        ),
        (
            ["--user", "alice", "--user-uid", "-1", "--user-gid", "1", "--", "sh"],
            "argument --user-uid: '-1' is not a numeric uid; give a number from 0 to "
            '4294967294, for example "$(id -u)"',
        ),
        (
            ["--user", "alice", "--user-uid", "+5", "--user-gid", "1", "--", "sh"],
            "argument --user-uid: '+5' is not a numeric uid; give a number from 0 to "
            '4294967294, for example "$(id -u)"',
        ),
        (
            ["--user", "alice", "--user-uid", "4294967295", "--user-gid", "1", "--", "sh"],
            "argument --user-uid: '4294967295' is not a numeric uid; give a number from 0 to "
            '4294967294, for example "$(id -u)"',
        ),
        (
            ["--user", "alice", "--user-uid", "1", "--user-gid", "staff", "--", "sh"],
            "argument --user-gid: 'staff' is not a numeric gid; give a number from 0 to "
            '4294967294, for example "$(id -g)"',
        ),
        (
            ["--user", "alice", "--user-uid", "1", "--user-gid", "", "--", "sh"],
            "argument --user-gid: '' is not a numeric gid; give a number from 0 to "
            '4294967294, for example "$(id -g)"',
        ),
        (
            [*BASE, "--privilege-level", "16", "--", "sh"],
            "argument --privilege-level: '16' is not a TACACS+ privilege level; give a number "
            "from 0 to 15",
        ),
        (
            [*BASE, "--privilege-level", "-1", "--", "sh"],
            "argument --privilege-level: '-1' is not a TACACS+ privilege level; give a number "
            "from 0 to 15",
        ),
        (
            [*BASE, "--privilege-level", "admin", "--", "sh"],
            "argument --privilege-level: 'admin' is not a TACACS+ privilege level; give a "
            "number from 0 to 15",
        ),
        (
            [*BASE, "--authorization-timeout-ms", "0", "--", "sh"],
            "argument --authorization-timeout-ms: '0' is not positive; give a number of "
            "milliseconds from 1 to 3600000",
        ),
        (
            [*BASE, "--authorization-timeout-ms", "-250", "--", "sh"],
            "argument --authorization-timeout-ms: '-250' is not positive; give a number of "
            "milliseconds from 1 to 3600000",
        ),
        (
            [*BASE, "--authorization-timeout-ms", "5s", "--", "sh"],
            "argument --authorization-timeout-ms: '5s' is not a whole number of milliseconds; "
            "give one such as 5000",
        ),
        (
            [*BASE, "--authorization-timeout-ms", "1.5", "--", "sh"],
            "argument --authorization-timeout-ms: '1.5' is not a whole number of "
            "milliseconds; give one such as 5000",
        ),
        (
            [*BASE, "--authorization-timeout-ms", "3600001", "--", "sh"],
            "argument --authorization-timeout-ms: '3600001' is over one hour; give a number "
            "of milliseconds from 1 to 3600000",
        ),
        (
            [*BASE, "--service-endpoint", "", "--", "sh"],
            f"argument --service-endpoint: is empty; {ENDPOINT_HINT}",
        ),
        (
            [*BASE, "--service-endpoint", "agent:0", "--", "sh"],
            "argument --service-endpoint: 'agent:0' has a bad port '0'; give a port number "
            "from 1 to 65535",
        ),
        (
            [*BASE, "--service-endpoint", "agent:65536", "--", "sh"],
            "argument --service-endpoint: 'agent:65536' has a bad port '65536'; give a port "
            "number from 1 to 65535",
        ),
        (
            [*BASE, "--service-endpoint", "agent:tacacs", "--", "sh"],
            "argument --service-endpoint: 'agent:tacacs' has a bad port 'tacacs'; give a port "
            "number from 1 to 65535",
        ),
        (
            [*BASE, "--service-endpoint", "agent:", "--", "sh"],
            "argument --service-endpoint: 'agent:' has a bad port ''; give a port number "
            "from 1 to 65535",
        ),
        (
            [*BASE, "--service-endpoint", ":49", "--", "sh"],
            f"argument --service-endpoint: ':49' has no host; {ENDPOINT_HINT}",
        ),
        (
            [*BASE, "--service-endpoint", "::1:49", "--", "sh"],
            "argument --service-endpoint: '::1:49' is ambiguous; write an IPv6 address in "
            "brackets, as in [::1]:PORT",
        ),
        (
            [*BASE, "--service-endpoint", "tacacs.sock", "--", "sh"],
            "argument --service-endpoint: 'tacacs.sock' is neither an absolute socket path "
            f"nor HOST:PORT; {ENDPOINT_HINT}",
        ),
        (
            [*BASE, "--service-endpoint", "unix:", "--", "sh"],
            f"argument --service-endpoint: 'unix:' has no socket name; {ENDPOINT_HINT}",
        ),
        (
            [*BASE, "--fail-policy", "OPEN", "--", "sh"],
            "argument --fail-policy: unknown fail policy 'OPEN'; use 'closed' or 'open'",
        ),
        (
            [*BASE, "--port", "p" * 256, "--", "sh"],
            "argument --port: is 256 bytes long; TACACS+ allows at most 255",
        ),
        (
            [*BASE, "--rem-addr", "10.0.0.1\t", "--", "sh"],
            "argument --rem-addr: '10.0.0.1\\t' contains a control character; remove it",
        ),
        (
            [*BASE, "--user-uid"],
            "argument --user-uid: expected one argument",
        ),
        (
            [*BASE, "--bogus", "--", "sh"],
            "unknown option '--bogus'; see 'session-wrapper --help'",
        ),
        (
            # No abbreviations: a typo must not silently become another option.
            [*BASE, "--fail", "open", "--", "sh"],
            "unknown option '--fail'; see 'session-wrapper --help'",
        ),
        ([*BASE], f"missing '--' and the command; {USAGE}"),
        ([*BASE, "sh", "-c", "id"], f"missing '--' before the command 'sh'; {USAGE}"),
        ([*BASE, "--"], f"missing the command after '--'; {USAGE}"),
        ([*BASE, "--", ""], "the command after '--' is an empty string; give the program to run"),
        (
            [*BASE, "sh", "--", "id"],
            "unexpected argument 'sh' before '--'; put options before '--' and the command "
            "after it",
        ),
        (
            ["--user-uid", "1", "--user-gid", "1", "--", "sh"],
            "the following arguments are required: --user",
        ),
        (
            ["--user", "alice", "--", "sh"],
            "the following arguments are required: --user-uid, --user-gid",
        ),
    ],
)
def test_bad_value_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    assert usage_error(capsys, argv) == f"session-wrapper: error: {line}\n"


# --- good command lines -----------------------------------------------------------------------


def test_defaults() -> None:
    settings = parse_args([*BASE, "--", "/bin/bash", "-l"])

    assert settings == Settings(
        user="alice",
        user_uid=1000,
        user_gid=1000,
        command=("/bin/bash", "-l"),
        service_endpoint="/run/tacacs/tacacs.sock",
        fail_policy=FailPolicy.CLOSED,
        authorization_timeout_ms=5000,
        privilege_level=1,
        allowlist_file=None,
        allowlist=frozenset(),
        port="",
        rem_addr="",
        verbosity=0,
    )


def test_every_option_lands_in_settings(tmp_path: Path) -> None:
    allowlist = tmp_path / "allow"
    allowlist.write_bytes(b"/usr/bin/show\n")

    settings = parse_args(
        [
            "--user=bob",
            "--user-uid=0",
            "--user-gid=4294967294",
            "--service-endpoint=127.0.0.1:4949",
            "--fail-policy=open",
            "--authorization-timeout-ms=1",
            "--privilege-level=15",
            f"--allowlist={allowlist}",
            "--port=/dev/pts/3",
            "--rem-addr=192.0.2.7",
            "-vv",
            "--",
            "/bin/sh",
        ]
    )

    assert settings == Settings(
        user="bob",
        user_uid=0,
        user_gid=4294967294,
        command=("/bin/sh",),
        service_endpoint="127.0.0.1:4949",
        fail_policy=FailPolicy.OPEN,
        authorization_timeout_ms=1,
        privilege_level=15,
        allowlist_file=str(allowlist),
        allowlist=frozenset({b"/usr/bin/show"}),
        port="/dev/pts/3",
        rem_addr="192.0.2.7",
        verbosity=2,
    )


@pytest.mark.parametrize(
    ("flags", "verbosity"),
    [([], 0), (["-v"], 1), (["-vv"], 2), (["-vvv"], 3), (["-vvvv"], 4), (["-v", "--verbose"], 2)],
)
def test_verbosity_counts(flags: list[str], verbosity: int) -> None:
    assert parse_args([*BASE, *flags, "--", "sh"]).verbosity == verbosity


@pytest.mark.parametrize(
    ("endpoint", "grpc_target"),
    [
        ("/run/tacacs/tacacs.sock", "unix:/run/tacacs/tacacs.sock"),
        ("unix:/tmp/agent.sock", "unix:/tmp/agent.sock"),
        ("unix-abstract:agent", "unix-abstract:agent"),
        ("localhost:1", "localhost:1"),
        ("127.0.0.1:65535", "127.0.0.1:65535"),
        ("[::1]:49", "[::1]:49"),
    ],
)
def test_endpoints_accepted(endpoint: str, grpc_target: str) -> None:
    settings = parse_args([*BASE, "--service-endpoint", endpoint, "--", "sh"])

    assert settings.service_endpoint == endpoint
    assert settings.grpc_target == grpc_target


@pytest.mark.parametrize("level", ["0", "7", "15", "007"])
def test_privilege_levels_accepted(level: str) -> None:
    assert parse_args([*BASE, "--privilege-level", level, "--", "sh"]).privilege_level == int(
        level
    )


@pytest.mark.parametrize("timeout", ["1", "5000", "3600000"])
def test_timeouts_accepted(timeout: str) -> None:
    settings = parse_args([*BASE, "--authorization-timeout-ms", timeout, "--", "sh"])

    assert settings.authorization_timeout_ms == int(timeout)


@pytest.mark.parametrize(
    "command",
    [
        ["sh"],
        ["/bin/bash", "-l"],
        ["ls", "--user", "root", "-v"],
        ["prog", "--", "--", "-h"],
        ["--help"],
        ["-vvv"],
        ["printf", "%s\n", "caf\udce9"],
    ],
)
def test_everything_after_the_first_separator_is_the_command_verbatim(
    command: list[str],
) -> None:
    settings = parse_args([*BASE, "--", *command])

    assert settings.command == tuple(command)
    assert settings.verbosity == 0


def test_port_and_rem_addr_may_be_empty() -> None:
    settings = parse_args([*BASE, "--port", "", "--rem-addr", "", "--", "sh"])

    assert (settings.port, settings.rem_addr) == ("", "")


def test_user_of_255_bytes_is_accepted() -> None:
    name = "é" * 127 + "u"  # 255 bytes of UTF-8

    assert parse_args(["--user", name, "--user-uid", "1", "--user-gid", "1", "--", "sh"]).user == (
        name
    )


# --- the allowlist file -----------------------------------------------------------------------


def test_allowlist_file_is_read_at_parse_time(tmp_path: Path) -> None:
    allowlist = tmp_path / "allowlist"
    allowlist.write_bytes(
        b"# operator tools\n"
        b"\n"
        b"/usr/bin/show\n"
        b"   /usr/local/bin/ping   \n"
        b"  # indented comment\n"
        b"/opt/odd#name\n"
        b"/opt/caf\xe9\n"
    )

    settings = parse_args([*BASE, "--allowlist", str(allowlist), "--", "sh"])

    assert settings.allowlist_file == str(allowlist)
    # Only the file's entries: the built-ins are merged where paths are matched.
    assert settings.allowlist == {
        b"/usr/bin/show",
        b"/usr/local/bin/ping",
        b"/opt/odd#name",
        b"/opt/caf\xe9",
    }


def test_allowlist_changed_after_parsing_is_not_reread(tmp_path: Path) -> None:
    allowlist = tmp_path / "allowlist"
    allowlist.write_bytes(b"/usr/bin/show\n")
    settings = parse_args([*BASE, "--allowlist", str(allowlist), "--", "sh"])

    allowlist.write_bytes(b"/usr/bin/anything\n")

    assert settings.allowlist == {b"/usr/bin/show"}


def test_empty_allowlist_file_gives_no_entries(tmp_path: Path) -> None:
    allowlist = tmp_path / "allowlist"
    allowlist.write_bytes(b"")

    assert parse_args([*BASE, "--allowlist", str(allowlist), "--", "sh"]).allowlist == set()


def test_allowlist_relative_entry_names_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    allowlist = tmp_path / "allowlist"
    allowlist.write_bytes(b"# tools\n/usr/bin/show\nbin/ls\n/usr/bin/ping\n")

    line = usage_error(capsys, [*BASE, "--allowlist", str(allowlist), "--", "sh"])

    assert line == (
        f"session-wrapper: error: argument --allowlist: {allowlist}:3: entry 'bin/ls' is not "
        "an absolute path; each entry must be an absolute path\n"
    )


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: None, "No such file or directory"),
        (lambda path: path.mkdir(), "Is a directory"),
        (os.mkfifo, "not a regular file"),
        (lambda path: path.symlink_to("/dev/null"), "not a regular file"),
        (
            lambda path: path.write_bytes(b"/" * (MAX_ALLOWLIST_BYTES + 1)),
            f"it is larger than {MAX_ALLOWLIST_BYTES} bytes",
        ),
    ],
    ids=["missing", "directory", "fifo", "device", "too-big"],
)
@pytest.mark.timeout(10)
def test_unreadable_allowlist_names_file_and_reason(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    make: Callable[[Path], object],
    reason: str,
) -> None:
    allowlist = tmp_path / "allowlist"
    make(allowlist)

    line = usage_error(capsys, [*BASE, "--allowlist", str(allowlist), "--", "sh"])

    assert line == (
        f"session-wrapper: error: argument --allowlist: cannot read allowlist {allowlist}: "
        f"{reason}\n"
    )


def test_allowlist_at_the_size_limit_is_read(tmp_path: Path) -> None:
    allowlist = tmp_path / "allowlist"
    entry = b"/" + b"a" * 1022 + b"\n"
    allowlist.write_bytes(entry * (MAX_ALLOWLIST_BYTES // len(entry)))

    settings = parse_args([*BASE, "--allowlist", str(allowlist), "--", "sh"])

    assert settings.allowlist == {entry.strip()}


def test_empty_allowlist_path(capsys: pytest.CaptureFixture[str]) -> None:
    line = usage_error(capsys, [*BASE, "--allowlist", "", "--", "sh"])

    assert line == (
        "session-wrapper: error: argument --allowlist: is empty; give the allowlist file's path\n"
    )


# --- stderr logging by verbosity --------------------------------------------------------------


@pytest.fixture
def restore_root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def emit_every_level(name: str) -> None:
    log = logging.getLogger(name)
    log.log(logsetup.TRACE, "at trace")
    log.debug("at debug")
    log.info("at info")
    log.warning("at warning")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("at error")


@pytest.mark.parametrize(
    ("verbosity", "shown"),
    [
        (0, ["WARNING at warning", "ERROR at error"]),
        (1, ["INFO at info", "WARNING at warning", "ERROR at error"]),
        (2, ["DEBUG at debug", "INFO at info", "WARNING at warning", "ERROR at error"]),
        (3, ["TRACE at trace", "DEBUG at debug", "INFO at info", "WARNING at warning"]),
        (4, ["TRACE at trace", "DEBUG at debug", "INFO at info", "WARNING at warning"]),
    ],
)
@pytest.mark.usefixtures("restore_root_logger")
def test_stderr_shows_levels_by_verbosity(
    capsys: pytest.CaptureFixture[str], verbosity: int, shown: list[str]
) -> None:
    logsetup.configure_stderr_logging(verbosity)
    emit_every_level("session_wrapper.test")

    lines = capsys.readouterr().err.splitlines()
    prefix = f"session-wrapper[{os.getpid()}]: "
    for expected in shown:
        assert prefix + expected in lines
    if verbosity < 3:
        # One line per record: nothing more, not even the exception's traceback.
        assert len(lines) == len(shown)
    else:
        assert prefix + "ERROR at error" in lines
        assert "RuntimeError: boom" in lines


@pytest.mark.usefixtures("restore_root_logger")
def test_traceback_only_from_three_v(capsys: pytest.CaptureFixture[str]) -> None:
    logsetup.configure_stderr_logging(2)
    emit_every_level("session_wrapper.test")
    quiet = capsys.readouterr().err

    logsetup.configure_stderr_logging(3)
    emit_every_level("session_wrapper.test")
    loud = capsys.readouterr().err

    assert "Traceback" not in quiet
    assert "RuntimeError: boom" not in quiet
    assert "Traceback (most recent call last):" in loud
    assert "RuntimeError: boom" in loud


@pytest.mark.usefixtures("restore_root_logger")
def test_configuring_twice_leaves_one_stderr_handler(capsys: pytest.CaptureFixture[str]) -> None:
    logsetup.configure_stderr_logging(0)
    logsetup.configure_stderr_logging(0)
    logging.getLogger("session_wrapper.test").warning("once")

    assert capsys.readouterr().err.count("once") == 1


@pytest.mark.usefixtures("restore_root_logger")
def test_stderr_level_never_raises_the_root_level(
    restore_root_logger: logging.Logger,
) -> None:
    restore_root_logger.setLevel(logging.INFO)

    logsetup.configure_stderr_logging(0)

    # A syslog audit handler on the root logger still gets INFO records.
    assert restore_root_logger.level == logging.INFO


def test_negative_verbosity_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="verbosity must not be negative"):
        logsetup.stderr_level(-1)


def test_syslog_socket_defaults_to_dev_log_and_must_be_absolute(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args([*BASE, "--", "true"]).syslog_socket == "/dev/log"
    given = parse_args([*BASE, "--syslog-socket", "/run/log.sock", "--", "true"])
    assert given.syslog_socket == "/run/log.sock"
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*BASE, "--syslog-socket", "log.sock", "--", "true"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "session-wrapper: error: argument --syslog-socket: 'log.sock' is not an absolute path\n"
    )


def test_internal_error_is_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from session_wrapper import cli, session

    def broken(_settings: object) -> int:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(session, "run", broken)
    assert cli.main([*BASE, "--", "true"]) == 1
    assert capsys.readouterr().err == (
        "session-wrapper: internal error: OSError: [Errno 24] Too many open files "
        "(run with -vvv for the traceback)\n"
    )
    with pytest.raises(OSError, match="Too many open files"):
        cli.main([*BASE, "-vvv", "--", "true"])
