"""The relay's command-line options: --upstream, the secret's source, and their one-line errors."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from fakeagent.relay_cli import (
    RelayConfigError,
    add_relay_arguments,
    parse_upstream,
    read_secret,
    relay_backend_from_args,
)

KEY_TEXT = "cli-secret-0b9e"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fake-tacacsrs-agentd", exit_on_error=False)
    add_relay_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "tacacs.key"
    path.write_text(KEY_TEXT + "\n")
    return path


def test_no_upstream_means_no_relay() -> None:
    assert relay_backend_from_args(parse()) is None


def test_upstreams_keep_their_order(key_file: Path) -> None:
    backend = relay_backend_from_args(
        parse(
            "--upstream",
            "192.0.2.1:49",
            "--upstream",
            "[2001:db8::2]:4949",
            "--key-file",
            str(key_file),
        )
    )
    assert backend is not None
    assert [str(u) for u in backend.upstreams] == ["192.0.2.1:49", "[2001:db8::2]:4949"]
    assert KEY_TEXT not in repr(backend)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1:49", ("192.0.2.1", 49)),
        ("tacacs.example.net:49", ("tacacs.example.net", 49)),
        ("[::1]:4949", ("::1", 4949)),
    ],
)
def test_parse_upstream(text: str, expected: tuple[str, int]) -> None:
    assert parse_upstream(text) == expected


@pytest.mark.parametrize(
    "text",
    ["192.0.2.1", "192.0.2.1:", ":49", "host:0", "host:65536", "host:4x", "::1:49", "[]:49"],
)
def test_bad_upstream_is_one_line_naming_it(text: str, key_file: Path) -> None:
    with pytest.raises(RelayConfigError) as caught:
        relay_backend_from_args(parse("--upstream", text, "--key-file", str(key_file)))
    message = str(caught.value)
    assert f"--upstream {text!r}: expected HOST:PORT" in message
    assert "\n" not in message


def test_missing_secret() -> None:
    with pytest.raises(RelayConfigError, match="--upstream needs the shared secret"):
        relay_backend_from_args(parse("--upstream", "192.0.2.1:49"))


def test_both_secret_sources(key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TACACS_KEY", KEY_TEXT)
    args = parse(
        "--upstream", "192.0.2.1:49", "--key-file", str(key_file), "--secret-env", "TACACS_KEY"
    )
    with pytest.raises(RelayConfigError, match="--key-file or --secret-env, not both"):
        relay_backend_from_args(args)


def test_unreadable_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(RelayConfigError) as caught:
        relay_backend_from_args(parse("--upstream", "192.0.2.1:49", "--key-file", str(missing)))
    assert str(caught.value) == f"--key-file {missing}: cannot read it: No such file or directory"


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\n"])
def test_empty_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.key"
    path.write_bytes(content)
    with pytest.raises(RelayConfigError, match="the shared secret is empty"):
        relay_backend_from_args(parse("--upstream", "192.0.2.1:49", "--key-file", str(path)))


def test_empty_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TACACS_KEY", "")
    with pytest.raises(
        RelayConfigError, match="--secret-env TACACS_KEY: the shared secret is empty"
    ):
        relay_backend_from_args(parse("--upstream", "192.0.2.1:49", "--secret-env", "TACACS_KEY"))


def test_unset_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TACACS_KEY", raising=False)
    with pytest.raises(RelayConfigError, match="--secret-env TACACS_KEY: the variable is not set"):
        relay_backend_from_args(parse("--upstream", "192.0.2.1:49", "--secret-env", "TACACS_KEY"))


@pytest.mark.parametrize(
    ("content", "secret"),
    [
        (b"k3y\n", b"k3y"),
        (b"k3y\r\n", b"k3y"),
        (b"k3y", b"k3y"),
        (b"k3y\n\n", b"k3y\n"),
        (b" k3y \n", b" k3y "),
        (b"\xffbin\x00ary\n", b"\xffbin\x00ary"),
    ],
)
def test_key_file_drops_one_trailing_line_ending_only(
    tmp_path: Path, content: bytes, secret: bytes
) -> None:
    path = tmp_path / "tacacs.key"
    path.write_bytes(content)
    assert read_secret(str(path), None) == secret


def test_secret_env_is_read_as_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not valid UTF-8: the key is the variable's bytes, not its decoded text.
    monkeypatch.setitem(os.environb, b"TACACS_KEY", b"caf\xc3\xa9\xff")
    assert read_secret(None, "TACACS_KEY") == b"caf\xc3\xa9\xff"


@pytest.mark.parametrize("option", ["--key-file", "--secret-env"])
def test_a_secret_source_without_upstream_is_an_error(option: str) -> None:
    with pytest.raises(RelayConfigError, match=f"{option} needs --upstream"):
        relay_backend_from_args(parse(option, "X"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--upstream-timeout-ms", "0"), "--upstream-timeout-ms must be positive"),
        (("--hold-down-s", "-1"), "--hold-down-s must be 0 or more"),
        (("--hold-down-s", "nan"), "--hold-down-s must be 0 or more"),
    ],
)
def test_bad_timing_options(key_file: Path, argv: tuple[str, ...], message: str) -> None:
    args = parse("--upstream", "192.0.2.1:49", "--key-file", str(key_file), *argv)
    with pytest.raises(RelayConfigError, match=message):
        relay_backend_from_args(args)


def test_there_is_no_option_that_takes_the_secret_itself() -> None:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_relay_arguments(parser)
    options = {o for action in parser._actions for o in action.option_strings}
    assert options == {
        "-h",
        "--help",
        "--upstream",
        "--key-file",
        "--secret-env",
        "--upstream-timeout-ms",
        "--hold-down-s",
    }
