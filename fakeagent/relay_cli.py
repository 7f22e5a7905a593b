"""The fake agent's relay options: --upstream and where the shared secret comes from.

fakeagent/cli.py adds these options to its parser and builds the relay backend from them; this
module only parses and checks them. The secret is read from a file or an environment variable,
never from argv, where any local user could read it in /proc/PID/cmdline.
"""

from __future__ import annotations

import argparse
import os

from fakeagent.relay import RelayBackend

DEFAULT_UPSTREAM_TIMEOUT_MS = 1500
DEFAULT_HOLD_DOWN_S = 30.0
MAX_PORT = 65535


class RelayConfigError(ValueError):
    """A relay option that cannot be used; its message is one line naming the option."""


def add_relay_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "relay to a TACACS+ server",
        "With --upstream, requests are forwarded to real TACACS+ servers (RFC 8907) instead of "
        "being answered from the policy.",
    )
    group.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a TACACS+ server (IPv6 as [ADDR]:PORT); repeat for failover, tried in order",
    )
    group.add_argument(
        "--key-file",
        metavar="FILE",
        help="file holding the shared secret; one trailing newline is ignored",
    )
    group.add_argument(
        "--secret-env",
        metavar="NAME",
        help="environment variable holding the shared secret",
    )
    group.add_argument(
        "--upstream-timeout-ms",
        type=int,
        default=DEFAULT_UPSTREAM_TIMEOUT_MS,
        metavar="MS",
        help="per server: connect, send and reply within this time "
        f"(default {DEFAULT_UPSTREAM_TIMEOUT_MS})",
    )
    group.add_argument(
        "--hold-down-s",
        type=float,
        default=DEFAULT_HOLD_DOWN_S,
        metavar="SECONDS",
        help="after a server fails, try it after the others for this long "
        f"(default {DEFAULT_HOLD_DOWN_S:g})",
    )


def relay_backend_from_args(args: argparse.Namespace) -> RelayBackend | None:
    """The relay backend the options ask for; None without --upstream.

    Raises RelayConfigError, whose message is one line fit for ``parser.error()``.
    """
    if not args.upstream:
        for option, value in (("--key-file", args.key_file), ("--secret-env", args.secret_env)):
            if value is not None:
                raise RelayConfigError(f"{option} needs --upstream HOST:PORT")
        return None

    servers = [parse_upstream(text) for text in args.upstream]
    secret = read_secret(args.key_file, args.secret_env)
    if args.upstream_timeout_ms <= 0:
        raise RelayConfigError(
            f"--upstream-timeout-ms must be positive, not {args.upstream_timeout_ms}"
        )
    if not args.hold_down_s >= 0:
        raise RelayConfigError(f"--hold-down-s must be 0 or more, not {args.hold_down_s:g}")
    timeout_s = args.upstream_timeout_ms / 1000
    return RelayBackend(
        servers,
        secret,
        connect_timeout_s=timeout_s,
        timeout_s=timeout_s,
        hold_down_s=args.hold_down_s,
    )


def parse_upstream(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` as (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # a bare IPv6 address: which colon starts the port is ambiguous
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= MAX_PORT:
        raise RelayConfigError(
            f"--upstream {text!r}: expected HOST:PORT, e.g. 192.0.2.10:49 or [2001:db8::10]:49"
        )
    return host, int(port_text)


def read_secret(key_file: str | None, secret_env: str | None) -> bytes:
    """The shared secret from exactly one of --key-file and --secret-env.

    A key file's one trailing line ending (LF or CRLF) is dropped, since editors add one that the
    server's key does not have; any other whitespace is part of the key.
    """
    if key_file is not None and secret_env is not None:
        raise RelayConfigError("give the shared secret with --key-file or --secret-env, not both")
    if key_file is not None:
        try:
            with open(key_file, "rb") as stream:
                secret = stream.read()
        except OSError as error:
            raise RelayConfigError(
                f"--key-file {key_file}: cannot read it: {error.strerror or error}"
            ) from None
        if secret.endswith(b"\r\n"):
            secret = secret[:-2]
        elif secret.endswith(b"\n"):
            secret = secret[:-1]
        where = f"--key-file {key_file}"
    elif secret_env is not None:
        value = os.environb.get(os.fsencode(secret_env))
        if value is None:
            raise RelayConfigError(f"--secret-env {secret_env}: the variable is not set")
        secret = value
        where = f"--secret-env {secret_env}"
    else:
        raise RelayConfigError(
            "--upstream needs the shared secret: give --key-file or --secret-env"
        )
    if not secret:
        raise RelayConfigError(f"{where}: the shared secret is empty")
    return secret
