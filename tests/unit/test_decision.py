"""Every rule of the decision core, fed plain values: requests, escaping, limits, verdicts."""

from __future__ import annotations

import errno
import random

import pytest

from session_wrapper.decision import (
    AgentAnswer,
    AgentUnavailable,
    AuthorizationStatus,
    AvPair,
    Basis,
    Decision,
    ExecRequest,
    Identity,
    Outage,
    UnsendableRequest,
    allowlist_decision,
    decide,
    decide_session,
    escape_arg,
    exec_query,
    session_query,
    unescape_arg,
    unsendable_decision,
)
from session_wrapper.settings import FailPolicy

IDENTITY = Identity(user="alice", port="/dev/pts/3", rem_addr="192.0.2.7", priv_lvl=1)
LS = ExecRequest(path=b"/usr/bin/ls", argv=(b"ls", b"-l", b"/srv"))
LS_QUERY = exec_query(IDENTITY, LS)
SESSION_QUERY = session_query(IDENTITY)
PASSES = [AuthorizationStatus.PASS_ADD, AuthorizationStatus.PASS_REPL]
POLICIES = [FailPolicy.OPEN, FailPolicy.CLOSED]


def mandatory(name: str, value: str) -> AvPair:
    return AvPair(name, value, mandatory=True)


def optional(name: str, value: str) -> AvPair:
    return AvPair(name, value, mandatory=False)


def answer(
    status: AuthorizationStatus, *args: AvPair, server: str = "tac1", message: str = ""
) -> AgentAnswer:
    return AgentAnswer(status=status, server=server, server_message=message, args=args)


# --- request building -------------------------------------------------------------------------


def test_exec_query_is_service_cmd_and_one_cmd_arg_per_argument() -> None:
    expected = (
        mandatory("service", "shell"),
        mandatory("cmd", "/usr/bin/ls"),
        mandatory("cmd-arg", "-l"),
        mandatory("cmd-arg", "/srv"),
    )

    assert LS_QUERY.identity == IDENTITY
    assert LS_QUERY.args == expected
    assert [str(pair) for pair in LS_QUERY.args] == [
        "service=shell",
        "cmd=/usr/bin/ls",
        "cmd-arg=-l",
        "cmd-arg=/srv",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        (b"ls",),
        (b"ls", b"b", b"a"),
        (b"ls", b"a", b"b", b"a"),
        (b"x", b"", b"", b"-"),
        (b"whatever-argv0", b"--", b"-rf", b"/"),
        tuple(str(n).encode() for n in range(40)),
    ],
)
def test_cmd_args_keep_argv_order_and_duplicates(argv: tuple[bytes, ...]) -> None:
    query = exec_query(IDENTITY, ExecRequest(b"/usr/bin/ls", argv))

    assert query.args[:2] == (mandatory("service", "shell"), mandatory("cmd", "/usr/bin/ls"))
    assert query.args[2:] == tuple(mandatory("cmd-arg", arg.decode()) for arg in argv[1:])
    assert all(pair.mandatory for pair in query.args)


def test_cmd_is_the_canonical_path_not_argv0_or_the_raw_path() -> None:
    request = ExecRequest(b"/usr/bin/ls", (b"sneaky-name", b"-a"), raw_path=b"../../bin/ls")

    assert exec_query(IDENTITY, request).args[1] == mandatory("cmd", "/usr/bin/ls")


def test_empty_argv_sends_only_service_and_cmd() -> None:
    # execve(2) accepts an empty argv on Linux; there is simply no cmd-arg.
    query = exec_query(IDENTITY, ExecRequest(b"/bin/true", ()))

    assert query.args == (mandatory("service", "shell"), mandatory("cmd", "/bin/true"))


def test_session_query_has_an_empty_cmd() -> None:
    assert SESSION_QUERY.identity == IDENTITY
    assert SESSION_QUERY.args == (mandatory("service", "shell"), mandatory("cmd", ""))


def test_optional_pair_is_written_with_a_star() -> None:
    assert str(optional("timeout", "30")) == "timeout*30"
    assert str(mandatory("priv-lvl", "15")) == "priv-lvl=15"


# --- escaping of argv bytes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"plain", "plain"),
        (b"", ""),
        (b"caf\xc3\xa9", "café"),
        (b"\xe2\x82\xac 5", "€ 5"),
        (b"a\\b", "a\\\\b"),
        (b"\\", "\\\\"),
        (b"\\xff", "\\\\xff"),
        (b"\xff", "\\xff"),
        (b"caf\xe9", "caf\\xe9"),
        (b"\x80", "\\x80"),
        (b"\xc3", "\\xc3"),
        (b"\xc0\xaf", "\\xc0\\xaf"),
        (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),
        (b"\xed\xbf\xbf", "\\xed\\xbf\\xbf"),
        (b"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"),
        (b"\\\xff", "\\\\\\xff"),
    ],
)
def test_escape_arg(raw: bytes, escaped: str) -> None:
    assert escape_arg(raw) == escaped
    assert unescape_arg(escaped) == raw


def _corpus() -> list[bytes]:
    interesting = [
        b"\\",
        b"\\\\",
        b"\\x",
        b"\\x4",
        b"\\x41",
        b"\\xzz",
        b"x",
        b"\x00",
        b"\x7f",
        b"\x80",
        b"\xbf",
        b"\xc0",
        b"\xc3",
        b"\xc3\xa9",
        b"\xe2\x82",
        b"\xe2\x82\xac",
        b"\xed\xa0\x80",
        b"\xed\xb2\x80",
        b"\xf0\x9f\x98\x80",
        b"\xf0\x9f\x98",
        b"\xf8\x88\x80\x80\x80",
        b"\xfe",
        b"\xff",
        b"%",
        b"\xef\xbf\xbd",
    ]
    corpus = [bytes([byte]) for byte in range(256)]
    corpus += [a + b for a in interesting for b in interesting]
    rng = random.Random(8907)  # noqa: S311 - reproducible test input, not a secret
    corpus += [rng.randbytes(rng.randrange(1, 40)) for _ in range(2000)]
    corpus += [b"".join(rng.choices(interesting, k=rng.randrange(1, 8))) for _ in range(2000)]
    return corpus


CORPUS = _corpus()


def test_escape_round_trips_and_never_loses_a_byte() -> None:
    for raw in CORPUS:
        escaped = escape_arg(raw)
        assert unescape_arg(escaped) == raw, raw
        # A protobuf string must be valid UTF-8: no lone surrogate may leak out.
        escaped.encode("utf-8")


def test_escape_is_one_to_one() -> None:
    distinct = set(CORPUS)

    assert len({escape_arg(raw) for raw in distinct}) == len(distinct)


def test_non_utf8_argument_is_escaped_into_the_request_not_dropped() -> None:
    query = exec_query(IDENTITY, ExecRequest(b"/usr/bin/grep", (b"grep", b"caf\xe9", b"x\\y")))

    assert query.args[2:] == (mandatory("cmd-arg", "caf\\xe9"), mandatory("cmd-arg", "x\\\\y"))


def test_non_utf8_path_is_escaped_into_cmd() -> None:
    query = exec_query(IDENTITY, ExecRequest(b"/opt/\xff/tool", (b"tool",)))

    assert query.args[1] == mandatory("cmd", "/opt/\\xff/tool")


@pytest.mark.parametrize(
    "text",
    ["\\", "a\\", "\\q", "\\x", "\\x4", "\\xg0", "\\x+f", "\\x f", "\\x-0", "\\x_1", "\\xFF"],
)
def test_unescape_rejects_what_escape_never_writes(text: str) -> None:
    with pytest.raises(ValueError, match="bad escape"):
        unescape_arg(text)


# --- RFC 8907 limits --------------------------------------------------------------------------


def argv_of(count: int) -> tuple[bytes, ...]:
    return (b"tool", *(b"a" for _ in range(count)))


def test_253_cmd_args_are_sendable() -> None:
    query = exec_query(IDENTITY, ExecRequest(b"/usr/bin/tool", argv_of(253)))

    assert len(query.args) == 255


@pytest.mark.parametrize("count", [254, 255, 1000])
def test_more_than_253_cmd_args_are_unsendable(count: int) -> None:
    with pytest.raises(UnsendableRequest) as raised:
        exec_query(IDENTITY, ExecRequest(b"/usr/bin/tool", argv_of(count)))

    assert str(raised.value) == "more than 253 arguments, TACACS+'s limit per command"


@pytest.mark.parametrize(
    "value",
    [
        b"v" * 247,  # "cmd-arg=" is 8 bytes: 255 in all
        "é".encode() * 123 + b"v",  # 247 bytes of UTF-8, 124 characters
        b"\xff" * 61 + b"vvv",  # escapes grow: 8 + 61 * 4 + 3 = 255
    ],
)
def test_cmd_arg_of_exactly_255_bytes_is_sendable(value: bytes) -> None:
    query = exec_query(IDENTITY, ExecRequest(b"/usr/bin/tool", (b"tool", value)))

    assert len(str(query.args[2]).encode()) == 255
    assert unescape_arg(query.args[2].value) == value


@pytest.mark.parametrize(
    "value",
    [b"v" * 248, "é".encode() * 124, b"\xff" * 62, b"\\" * 124],
)
def test_cmd_arg_of_256_bytes_is_unsendable_and_named(value: bytes) -> None:
    argv = (b"tool", b"one", b"two", value, b"four")

    with pytest.raises(UnsendableRequest) as raised:
        exec_query(IDENTITY, ExecRequest(b"/usr/bin/tool", argv))

    assert str(raised.value) == "argument 3 is over 255 bytes as a TACACS+ arg, the limit"


def test_path_of_251_bytes_is_sendable() -> None:
    path = b"/" + b"p" * 250  # "cmd=" is 4 bytes

    assert exec_query(IDENTITY, ExecRequest(path, (b"p",))).args[1].value == path.decode()


@pytest.mark.parametrize("path", [b"/" + b"p" * 251, b"/opt/" + b"d/" * 2000 + b"tool"])
def test_long_path_is_unsendable_and_named(path: bytes) -> None:
    with pytest.raises(UnsendableRequest) as raised:
        exec_query(IDENTITY, ExecRequest(path, (b"tool",)))

    assert str(raised.value) == ("the command path is over 255 bytes as a TACACS+ arg, the limit")


def test_unsendable_request_is_denied_whatever_the_fail_policy() -> None:
    with pytest.raises(UnsendableRequest) as raised:
        exec_query(IDENTITY, ExecRequest(b"/usr/bin/tool", argv_of(300)))

    # unsendable_decision takes no fail policy: there is no policy under which it allows.
    assert unsendable_decision(str(raised.value)) == Decision(
        allowed=False,
        basis=Basis.UNSENDABLE,
        reason="cannot be authorized: more than 253 arguments, TACACS+'s limit per command",
        errno=errno.EACCES,
    )


# --- the allowlist ----------------------------------------------------------------------------


def test_allowlisted_path_is_allowed_without_asking() -> None:
    decision = allowlist_decision(b"/bin/bash", frozenset({b"/bin/bash"}))

    assert decision == Decision(True, Basis.ALLOWLIST, "on the allowlist")


@pytest.mark.parametrize(
    "path", [b"/bin/bas", b"/bin/bash/", b"/bin//bash", b"/BIN/BASH", b"bin/bash", b""]
)
def test_allowlist_matches_exact_bytes_only(path: bytes) -> None:
    assert allowlist_decision(path, frozenset({b"/bin/bash"})) is None


# --- the agent's answer -----------------------------------------------------------------------


@pytest.mark.parametrize("status", PASSES)
@pytest.mark.parametrize(
    "args",
    [
        (),
        (optional("timeout", "30"),),
        (optional("cmd-arg", "--other"), optional("priv-lvl", "15")),
        (optional("acl", "7"), optional("autocmd", "reboot")),
    ],
)
@pytest.mark.parametrize("policy", POLICIES)
def test_pass_with_no_or_only_optional_args_allows(
    status: AuthorizationStatus, args: tuple[AvPair, ...], policy: FailPolicy
) -> None:
    decision = decide(LS_QUERY, answer(status, *args, message="ok by rule 4"), policy)

    assert decision == Decision(
        allowed=True,
        basis=Basis.AGENT,
        reason="allowed by TACACS+ (server: tac1): ok by rule 4",
        server="tac1",
        server_message="ok by rule 4",
    )


@pytest.mark.parametrize(
    "echo",
    [
        (mandatory("service", "shell"),),
        (mandatory("cmd", "/usr/bin/ls"),),
        (mandatory("cmd-arg", "/srv"),),
        LS_QUERY.args,
    ],
)
def test_pass_add_whose_mandatory_args_echo_the_request_allows(echo: tuple[AvPair, ...]) -> None:
    decision = decide(LS_QUERY, answer(AuthorizationStatus.PASS_ADD, *echo), FailPolicy.CLOSED)

    assert decision.allowed
    assert decision.basis is Basis.AGENT
    assert decision.reason == "allowed by TACACS+ (server: tac1)"


def test_pass_repl_restating_the_whole_request_allows() -> None:
    verdict = answer(AuthorizationStatus.PASS_REPL, *LS_QUERY.args, optional("idle", "5"))

    assert decide(LS_QUERY, verdict, FailPolicy.CLOSED).allowed


@pytest.mark.parametrize(
    "replacement",
    [
        # RFC 8907 section 6.2: PASS_REPL's args are used instead of the request's. These narrow
        # or reorder the command, which session-wrapper cannot do to an exec it holds.
        (mandatory("service", "shell"), mandatory("cmd", "/usr/bin/ls")),
        (
            mandatory("service", "shell"),
            mandatory("cmd", "/usr/bin/ls"),
            mandatory("cmd-arg", "-l"),
        ),
        (
            mandatory("service", "shell"),
            mandatory("cmd", "/usr/bin/ls"),
            mandatory("cmd-arg", "/srv"),
            mandatory("cmd-arg", "-l"),
        ),
        (mandatory("cmd-arg", "/srv"),),
    ],
)
def test_pass_repl_that_changes_the_request_denies(replacement: tuple[AvPair, ...]) -> None:
    verdict = answer(AuthorizationStatus.PASS_REPL, *replacement)

    decision = decide(LS_QUERY, verdict, FailPolicy.OPEN)

    assert decision == Decision(
        allowed=False,
        basis=Basis.AGENT,
        reason="TACACS+ reply (PASS_REPL) replaces the request's arguments, which "
        "session-wrapper cannot apply (server: tac1)",
        errno=errno.EACCES,
        server="tac1",
    )


@pytest.mark.parametrize("status", PASSES)
@pytest.mark.parametrize(
    "unknown",
    [
        mandatory("acl", "5"),
        mandatory("priv-lvl", "15"),
        mandatory("cmd-arg", "-la"),
        mandatory("cmd", "/usr/bin/rm"),
        mandatory("service", "ppp"),
        mandatory("autocmd", ""),
    ],
)
@pytest.mark.parametrize("policy", POLICIES)
def test_pass_with_a_mandatory_arg_it_cannot_apply_denies_naming_it(
    status: AuthorizationStatus, unknown: AvPair, policy: FailPolicy
) -> None:
    verdict = answer(status, mandatory("service", "shell"), unknown, message="see ACL")

    decision = decide(LS_QUERY, verdict, policy)

    assert decision == Decision(
        allowed=False,
        basis=Basis.AGENT,
        reason=f"TACACS+ reply requires {str(unknown)!r}, which session-wrapper cannot apply "
        "(server: tac1)",
        errno=errno.EACCES,
        server="tac1",
        server_message="see ACL",
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (AuthorizationStatus.FAIL, "denied by TACACS+ (server: tac1): not in netops"),
        (AuthorizationStatus.ERROR, "TACACS+ server error (server: tac1): not in netops"),
        (
            AuthorizationStatus.FOLLOW,
            "TACACS+ FOLLOW is not supported (server: tac1): not in netops",
        ),
    ],
)
@pytest.mark.parametrize("policy", POLICIES)
def test_fail_error_and_follow_deny_with_eacces_and_the_server_message(
    status: AuthorizationStatus, reason: str, policy: FailPolicy
) -> None:
    # Optional args or an echo in the reply change nothing: the status alone denies.
    verdict = answer(status, optional("x", "1"), *LS_QUERY.args, message="not in netops")

    decision = decide(LS_QUERY, verdict, policy)

    assert decision == Decision(
        allowed=False,
        basis=Basis.AGENT,
        reason=reason,
        errno=errno.EACCES,
        server="tac1",
        server_message="not in netops",
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (AuthorizationStatus.FAIL, "denied by TACACS+ (server: unknown)"),
        (AuthorizationStatus.ERROR, "TACACS+ server error (server: unknown)"),
        (AuthorizationStatus.FOLLOW, "TACACS+ FOLLOW is not supported (server: unknown)"),
        (AuthorizationStatus.PASS_ADD, "allowed by TACACS+ (server: unknown)"),
    ],
)
def test_reason_without_server_or_message(status: AuthorizationStatus, reason: str) -> None:
    assert decide(LS_QUERY, answer(status, server=""), FailPolicy.CLOSED).reason == reason


@pytest.mark.parametrize(
    ("policy", "allowed", "basis", "verdict_word", "err"),
    [
        (FailPolicy.OPEN, True, Basis.FAIL_OPEN, "allowed by fail policy open", 0),
        (
            FailPolicy.CLOSED,
            False,
            Basis.FAIL_CLOSED,
            "denied by fail policy closed",
            errno.EACCES,
        ),
    ],
)
def test_unspecified_status_counts_as_agent_unavailable(
    policy: FailPolicy, allowed: bool, basis: Basis, verdict_word: str, err: int
) -> None:
    verdict = answer(AuthorizationStatus.UNSPECIFIED, *LS_QUERY.args, message="hello")

    decision = decide(LS_QUERY, verdict, policy)

    assert decision == Decision(
        allowed=allowed,
        basis=basis,
        reason=f"authorization service unavailable (malformed reply): status unspecified; "
        f"{verdict_word}",
        errno=err,
        server="tac1",
        outage=Outage.MALFORMED,
    )


# --- the fail policy --------------------------------------------------------------------------


@pytest.mark.parametrize("outage", list(Outage))
@pytest.mark.parametrize("detail", ["", "connection refused"])
@pytest.mark.parametrize("session", [False, True])
def test_fail_policy_open_allows_and_records_the_outage(
    outage: Outage, detail: str, session: bool
) -> None:
    unavailable = AgentUnavailable(outage, detail, server="tac2")
    tail = f": {detail}" if detail else ""

    if session:
        decision = decide_session(SESSION_QUERY, unavailable, FailPolicy.OPEN)
    else:
        decision = decide(LS_QUERY, unavailable, FailPolicy.OPEN)

    assert decision == Decision(
        allowed=True,
        basis=Basis.FAIL_OPEN,
        reason=f"authorization service unavailable ({outage.value}){tail}; "
        "allowed by fail policy open",
        server="tac2",
        outage=outage,
    )


@pytest.mark.parametrize("outage", list(Outage))
@pytest.mark.parametrize("detail", ["", "deadline exceeded"])
@pytest.mark.parametrize("session", [False, True])
def test_fail_policy_closed_denies_and_records_the_outage(
    outage: Outage, detail: str, session: bool
) -> None:
    unavailable = AgentUnavailable(outage, detail)
    tail = f": {detail}" if detail else ""

    if session:
        decision = decide_session(SESSION_QUERY, unavailable, FailPolicy.CLOSED)
    else:
        decision = decide(LS_QUERY, unavailable, FailPolicy.CLOSED)

    assert decision == Decision(
        allowed=False,
        basis=Basis.FAIL_CLOSED,
        reason=f"authorization service unavailable ({outage.value}){tail}; "
        "denied by fail policy closed",
        errno=errno.EACCES,
        outage=outage,
    )


def test_outage_kinds_read_as_a_user_would_expect() -> None:
    assert {outage.value for outage in Outage} == {
        "cannot connect",
        "timed out",
        "gRPC error",
        "service error",
        "malformed reply",
    }


# --- the session request ----------------------------------------------------------------------


@pytest.mark.parametrize("status", PASSES)
@pytest.mark.parametrize("level", range(16))
def test_session_reply_grants_a_mandatory_priv_lvl(
    status: AuthorizationStatus, level: int
) -> None:
    verdict = answer(status, mandatory("priv-lvl", str(level)), message="welcome")

    decision = decide_session(SESSION_QUERY, verdict, FailPolicy.CLOSED)

    assert decision == Decision(
        allowed=True,
        basis=Basis.AGENT,
        reason="allowed by TACACS+ (server: tac1): welcome",
        server="tac1",
        server_message="welcome",
        granted_priv_lvl=level,
    )


def test_session_pass_repl_restating_the_request_with_a_priv_lvl_grants_it() -> None:
    verdict = answer(
        AuthorizationStatus.PASS_REPL, *SESSION_QUERY.args, mandatory("priv-lvl", "7")
    )

    assert decide_session(SESSION_QUERY, verdict, FailPolicy.CLOSED).granted_priv_lvl == 7


@pytest.mark.parametrize(
    "value", ["16", "99", "-1", "x", "", " 5", "5 ", "1.0", "+3", "\u0663", "\uff11"]
)
def test_session_reply_with_an_invalid_priv_lvl_denies(value: str) -> None:
    bad = mandatory("priv-lvl", value)

    decision = decide_session(
        SESSION_QUERY, answer(AuthorizationStatus.PASS_ADD, bad), FailPolicy.OPEN
    )

    assert not decision.allowed
    assert decision.errno == errno.EACCES
    assert decision.granted_priv_lvl is None
    assert decision.reason == (
        f"TACACS+ reply requires {str(bad)!r}, which session-wrapper cannot apply (server: tac1)"
    )


def test_session_reply_without_priv_lvl_grants_nothing() -> None:
    decision = decide_session(
        SESSION_QUERY, answer(AuthorizationStatus.PASS_ADD, *SESSION_QUERY.args), FailPolicy.CLOSED
    )

    assert decision.allowed
    assert decision.granted_priv_lvl is None


def test_optional_priv_lvl_in_the_session_reply_is_not_granted() -> None:
    verdict = answer(AuthorizationStatus.PASS_ADD, optional("priv-lvl", "15"))

    decision = decide_session(SESSION_QUERY, verdict, FailPolicy.CLOSED)

    assert decision.allowed
    assert decision.granted_priv_lvl is None


@pytest.mark.parametrize("level", ["0", "1", "15"])
def test_priv_lvl_in_an_exec_reply_denies(level: str) -> None:
    verdict = answer(AuthorizationStatus.PASS_ADD, mandatory("priv-lvl", level))

    decision = decide(LS_QUERY, verdict, FailPolicy.OPEN)

    assert not decision.allowed
    assert decision.granted_priv_lvl is None
    assert f"'priv-lvl={level}'" in decision.reason


@pytest.mark.parametrize(
    ("status", "start"),
    [
        (AuthorizationStatus.FAIL, "denied by TACACS+"),
        (AuthorizationStatus.ERROR, "TACACS+ server error"),
        (AuthorizationStatus.FOLLOW, "TACACS+ FOLLOW is not supported"),
    ],
)
def test_session_denied_by_the_server_grants_no_priv_lvl(
    status: AuthorizationStatus, start: str
) -> None:
    verdict = answer(status, mandatory("priv-lvl", "15"))

    decision = decide_session(SESSION_QUERY, verdict, FailPolicy.OPEN)

    assert not decision.allowed
    assert decision.granted_priv_lvl is None
    assert decision.reason.startswith(start)
