"""The fake agent's policy: a TOML file parsed into ordered rules, and the rule matching.

Pure code: it knows nothing of gRPC, protobuf or sockets. The policy backend turns a request
into a Query, asks Policy.answer for an Answer and carries it out (reply, delay, hang, drop).

Schema (every key is optional unless marked; an unknown key is an error)::

    [[rule]]                      # tried in file order; the first rule that matches answers
    name = "deny recursive rm"    # shown in error messages and logs
    # -- matchers: an absent matcher matches anything --
    rpc = "authorization"         # "authorization", "accounting" or "authenticate_pap"
    user = "alice"                # exact user name
    cmd = "/usr/bin/rm"           # the value of the `cmd` arg (accounting: the command), exact
                                  # or an fnmatch glob; a list of them matches any; "" matches
                                  # the session request, whose `cmd` is empty
    args = '(^| )-[a-z]*r'        # regex searched (re.search) over the cmd-arg values joined
                                  # with single spaces (accounting: the command arguments)
    priv_lvl = 15                 # the request's privilege_level (TACACS+ priv-lvl), 0..15
    # -- the answer: exactly one of status, error, hang, drop and malformed --
    status = "FAIL"               # authorization: PASS_ADD PASS_REPL FAIL ERROR FOLLOW
                                  # accounting: SUCCESS ERROR FOLLOW
                                  # authenticate_pap: PASS FAIL ERROR
    server_message = "no recursive rm here"
    server = "tacacs-1"           # the reply's server name; default "fakeagent"
    data = ""                     # the reply's data field
    reply_args = [ { name = "priv-lvl", value = "15", mandatory = true } ]  # authorization
    error = { message = "no server reachable", retriable = true, server = "" }  # ServiceError
    hang = true                   # never answer: the client's deadline ends the RPC
    drop = true                   # close the client's connection instead of answering
    malformed = "unspecified"     # a response whose status is UNSPECIFIED; or "empty": a reply
                                  # with neither response nor error set
    delay_ms = 250                # wait this long, then answer (not with hang)

    [default]                     # the answer when no rule matches: the answer keys above
    status = "FAIL"
    server_message = "no rule matched"

A rule without ``rpc`` applies to the rpcs its keys make sense for: a status applies to the rpcs
that have it (``PASS_ADD`` to authorization only, ``FAIL`` to authorization and PAP), ``cmd`` and
``args`` to authorization and accounting, ``priv_lvl`` and PAP. With ``rpc`` given, a key that
does not fit it is an error. Without ``[default]``, or when its status does not exist for the
rpc, the built-in default answers: FAIL "no rule matched" (accounting: ERROR).
"""

from __future__ import annotations

import enum
import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_SERVER = "fakeagent"
NO_RULE_MATCHED = "no rule matched"
MAX_DELAY_MS = 600_000


class Rpc(enum.Enum):
    """The three rpcs of tacacsrs.agent.v1.TacacsAgent, by the names used in a policy."""

    AUTHORIZATION = "authorization"
    ACCOUNTING = "accounting"
    AUTHENTICATE_PAP = "authenticate_pap"


# The status names each rpc's reply can carry (tacacsrs.agent.v1 enums without their prefix).
STATUSES: Mapping[Rpc, tuple[str, ...]] = {
    Rpc.AUTHORIZATION: ("PASS_ADD", "PASS_REPL", "FAIL", "ERROR", "FOLLOW"),
    Rpc.ACCOUNTING: ("SUCCESS", "ERROR", "FOLLOW"),
    Rpc.AUTHENTICATE_PAP: ("PASS", "FAIL", "ERROR"),
}

ALL_RPCS = frozenset(Rpc)


class PolicyError(ValueError):
    """A policy that cannot be used; str() is one line naming the source, the rule and why."""


class Fault(enum.Enum):
    """An answer that is not a well-formed reply."""

    HANG = "hang"
    DROP = "drop"
    MALFORMED_UNSPECIFIED = "malformed unspecified"
    MALFORMED_EMPTY = "malformed empty"


@dataclass(frozen=True)
class ReplyArg:
    """One argument of an authorization reply: ``name=value`` or, optional, ``name*value``."""

    name: str
    value: str
    mandatory: bool = True


@dataclass(frozen=True)
class ServiceErrorAnswer:
    """A tacacsrs.agent.v1.ServiceError: the agent itself failed."""

    message: str
    retriable: bool = False
    server: str = ""


@dataclass(frozen=True)
class Answer:
    """What a rule answers. With neither ``error`` nor ``fault``, a reply with ``status``."""

    origin: str
    status: str = ""
    server: str = DEFAULT_SERVER
    server_message: str = ""
    data: str = ""
    reply_args: tuple[ReplyArg, ...] = ()
    error: ServiceErrorAnswer | None = None
    fault: Fault | None = None
    delay_ms: int = 0


@dataclass(frozen=True)
class Query:
    """The parts of a request that rules match on. None: the rpc has no such field."""

    rpc: Rpc
    user: str
    cmd: str | None = None
    cmd_args: tuple[str, ...] = ()
    priv_lvl: int | None = None


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]``: matchers (None matches anything) and the answer."""

    index: int
    name: str
    rpcs: frozenset[Rpc]
    answer: Answer
    user: str | None = None
    cmd: tuple[str, ...] | None = None
    args: re.Pattern[str] | None = None
    priv_lvl: int | None = None

    def matches(self, query: Query) -> bool:
        """Whether every matcher of this rule accepts the query."""
        if query.rpc not in self.rpcs:
            return False
        if self.user is not None and query.user != self.user:
            return False
        if self.cmd is not None and (
            query.cmd is None or not any(fnmatch.fnmatchcase(query.cmd, c) for c in self.cmd)
        ):
            return False
        if self.args is not None and not self.args.search(" ".join(query.cmd_args)):
            return False
        return self.priv_lvl is None or query.priv_lvl == self.priv_lvl


BUILTIN_DEFAULTS: Mapping[Rpc, Answer] = {
    Rpc.AUTHORIZATION: Answer("built-in default", "FAIL", server_message=NO_RULE_MATCHED),
    Rpc.ACCOUNTING: Answer("built-in default", "ERROR", server_message=NO_RULE_MATCHED),
    Rpc.AUTHENTICATE_PAP: Answer("built-in default", "FAIL", server_message=NO_RULE_MATCHED),
}


@dataclass(frozen=True)
class Policy:
    """An ordered list of rules and an optional default answer."""

    source: str
    rules: tuple[Rule, ...] = ()
    default: Answer | None = None

    def answer(self, query: Query) -> Answer:
        """The answer of the first matching rule, else of the default."""
        for rule in self.rules:
            if rule.matches(query):
                return rule.answer
        default = self.default
        if default is not None and (default.status == "" or default.status in STATUSES[query.rpc]):
            return default
        return BUILTIN_DEFAULTS[query.rpc]


EMPTY_POLICY = Policy("<empty policy>")

_MATCHER_KEYS = frozenset({"name", "rpc", "user", "cmd", "args", "priv_lvl"})
_REPLY_KEYS = frozenset({"status", "server", "server_message", "data", "reply_args"})
_ANSWER_KEYS = _REPLY_KEYS | {"error", "hang", "drop", "malformed", "delay_ms"}
_ANSWER_KINDS = ("status", "error", "hang", "drop", "malformed")
_MALFORMED = {"unspecified": Fault.MALFORMED_UNSPECIFIED, "empty": Fault.MALFORMED_EMPTY}

# Which rpcs a key can apply to; a rule applies to the intersection over its keys.
_KEY_RPCS: Mapping[str, frozenset[Rpc]] = {
    "cmd": frozenset({Rpc.AUTHORIZATION, Rpc.ACCOUNTING}),
    "args": frozenset({Rpc.AUTHORIZATION, Rpc.ACCOUNTING}),
    "priv_lvl": frozenset({Rpc.AUTHORIZATION, Rpc.AUTHENTICATE_PAP}),
    "reply_args": frozenset({Rpc.AUTHORIZATION}),
}


def load_policy_file(path: Path | str) -> Policy:
    """Reads and parses a policy file; unreadable or bad files raise PolicyError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PolicyError(f"{path}: cannot read policy: {reason}") from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parses policy TOML; ``source`` names it in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from exc

    unknown = sorted(set(document) - {"rule", "default"})
    if unknown:
        raise PolicyError(
            f"{source}: unknown top-level key {unknown[0]!r} (expected [[rule]] and [default])"
        )

    raw_rules = document.get("rule", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        raise PolicyError(f"{source}: 'rule' must be an array of tables, written [[rule]]")
    rules = tuple(_parse_rule(source, index, raw) for index, raw in enumerate(raw_rules, 1))

    default = None
    if "default" in document:
        raw_default = document["default"]
        if not isinstance(raw_default, dict):
            raise PolicyError(f"{source}: 'default' must be a table, written [default]")
        default = _parse_default(source, raw_default)
    return Policy(source, rules, default)


class _Table:
    """A TOML table being read, with the location used in every error about it."""

    def __init__(self, where: str, raw: Mapping[str, object]) -> None:
        self.where = where
        self.raw = raw

    def error(self, problem: str) -> PolicyError:
        return PolicyError(f"{self.where}: {problem}")

    def string(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self.error(f"{key} must be a string, not {_toml_type(value)}")

    def boolean(self, key: str) -> bool:
        value = self.raw.get(key, False)
        if isinstance(value, bool):
            return value
        raise self.error(f"{key} must be true or false, not {_toml_type(value)}")

    def integer(self, key: str, low: int, high: int) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"{key} must be an integer, not {_toml_type(value)}")
        if not low <= value <= high:
            raise self.error(f"{key} must be between {low} and {high}, not {value}")
        return value


def _parse_rule(source: str, index: int, raw: Mapping[str, object]) -> Rule:
    name = raw.get("name")
    label = f"rule {index} ({name!r})" if isinstance(name, str) and name else f"rule {index}"
    table = _Table(f"{source}: {label}", raw)
    _reject_unknown(table, _MATCHER_KEYS | _ANSWER_KEYS)
    table.string("name")

    rpcs = _applicable_rpcs(table)
    answer = _parse_answer(table, label)
    if answer.status:
        rpcs = _narrow_by_status(table, rpcs, answer.status)
    return Rule(
        index=index,
        name=name if isinstance(name, str) else "",
        rpcs=rpcs,
        answer=answer,
        user=table.string("user"),
        cmd=_parse_cmd(table),
        args=_parse_args_regex(table),
        priv_lvl=table.integer("priv_lvl", 0, 15),
    )


def _parse_default(source: str, raw: Mapping[str, object]) -> Answer:
    table = _Table(f"{source}: [default]", raw)
    _reject_unknown(table, _ANSWER_KEYS)
    answer = _parse_answer(table, "[default]")
    if answer.reply_args:
        _narrow_by_status(table, _KEY_RPCS["reply_args"], answer.status)
    return answer


def _reject_unknown(table: _Table, allowed: frozenset[str]) -> None:
    unknown = sorted(set(table.raw) - allowed)
    if unknown:
        raise table.error(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def _applicable_rpcs(table: _Table) -> frozenset[Rpc]:
    """The rpcs a rule applies to: its ``rpc``, or what its keys allow (see the module doc)."""
    rpc_name = table.string("rpc")
    if rpc_name is not None:
        try:
            rpc = Rpc(rpc_name)
        except ValueError:
            known = ", ".join(repr(r.value) for r in Rpc)
            raise table.error(f"unknown rpc {rpc_name!r} (one of {known})") from None
        for key, rpcs in _KEY_RPCS.items():
            if key in table.raw and rpc not in rpcs:
                raise table.error(f"{key} does not apply to rpc {rpc.value!r}")
        return frozenset({rpc})

    # Every key applies to authorization, so the intersection is never empty.
    applicable = ALL_RPCS
    for key, rpcs in _KEY_RPCS.items():
        if key in table.raw:
            applicable &= rpcs
    return applicable


def _narrow_by_status(table: _Table, rpcs: frozenset[Rpc], status: str) -> frozenset[Rpc]:
    """The rpcs among ``rpcs`` whose replies can carry ``status``; none is an error."""
    fitting = frozenset(rpc for rpc in rpcs if status in STATUSES[rpc])
    if fitting:
        return fitting
    if len(rpcs) == 1:
        (rpc,) = rpcs
        raise table.error(
            f"status {status!r} does not exist for rpc {rpc.value!r} "
            f"(one of {', '.join(STATUSES[rpc])})"
        )
    names = " or ".join(repr(rpc.value) for rpc in sorted(rpcs, key=lambda r: r.value))
    raise table.error(f"status {status!r} does not exist for rpc {names}")


def _parse_answer(table: _Table, origin: str) -> Answer:
    """The answer keys of a rule or of [default]."""
    raw = table.raw
    kinds = [k for k in _ANSWER_KINDS if k in raw and raw[k] is not False]
    if len(kinds) != 1:
        found = f"found {' and '.join(kinds)}" if kinds else "found none"
        raise table.error(
            f"needs exactly one of status, error, hang = true, drop = true, malformed ({found})"
        )
    kind = kinds[0]
    table.boolean("hang")
    table.boolean("drop")

    # malformed = "unspecified" still sends a response, so its server fields still show.
    shown = set(_REPLY_KEYS) if kind == "status" else set()
    if kind == "malformed" and raw["malformed"] == "unspecified":
        shown = {"server", "server_message", "data"}
    stray = sorted(k for k in _REPLY_KEYS if k in raw and k not in shown)
    if stray:
        raise table.error(f"{stray[0]} has no effect with {kind}; remove one of them")
    delay_ms = table.integer("delay_ms", 0, MAX_DELAY_MS) or 0
    if kind == "hang" and delay_ms:
        raise table.error("delay_ms has no effect with hang = true; remove one of them")

    answer = Answer(
        origin,
        server=table.string("server") or DEFAULT_SERVER,
        server_message=table.string("server_message") or "",
        data=table.string("data") or "",
        delay_ms=delay_ms,
    )
    if kind == "status":
        return replace(answer, status=_parse_status(table), reply_args=_parse_reply_args(table))
    if kind == "error":
        return replace(answer, error=_parse_service_error(table))
    if kind == "malformed":
        return replace(answer, fault=_parse_malformed(table))
    return replace(answer, fault=Fault.HANG if kind == "hang" else Fault.DROP)


def _parse_status(table: _Table) -> str:
    status = table.string("status")
    known = sorted({s for rpc in Rpc for s in STATUSES[rpc]})
    if status not in known:
        raise table.error(f"unknown status {status!r} (known: {', '.join(known)})")
    return status


def _parse_reply_args(table: _Table) -> tuple[ReplyArg, ...]:
    raw = table.raw.get("reply_args", [])
    if not isinstance(raw, list):
        raise table.error(f"reply_args must be an array of tables, not {_toml_type(raw)}")
    reply_args = []
    for position, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            raise table.error(f"reply_args[{position}] must be a table like {{ name = .. }}")
        arg = _Table(f"{table.where}: reply_args[{position}]", item)
        _reject_unknown(arg, frozenset({"name", "value", "mandatory"}))
        name, value = arg.string("name"), arg.string("value")
        if not name or value is None:
            raise arg.error("needs a non-empty name and a value")
        mandatory = item.get("mandatory", True)
        if not isinstance(mandatory, bool):
            raise arg.error(f"mandatory must be true or false, not {_toml_type(mandatory)}")
        reply_args.append(ReplyArg(name, value, mandatory))
    return tuple(reply_args)


def _parse_service_error(table: _Table) -> ServiceErrorAnswer:
    raw = table.raw["error"]
    if not isinstance(raw, dict):
        raise table.error(f"error must be a table like {{ message = .. }}, not {_toml_type(raw)}")
    error = _Table(f"{table.where}: error", raw)
    _reject_unknown(error, frozenset({"message", "retriable", "server"}))
    message = error.string("message")
    if not message:
        raise error.error("needs a non-empty message")
    return ServiceErrorAnswer(message, error.boolean("retriable"), error.string("server") or "")


def _parse_malformed(table: _Table) -> Fault:
    value = table.raw["malformed"]
    if not isinstance(value, str) or value not in _MALFORMED:
        raise table.error(f'malformed must be "unspecified" or "empty", not {value!r}')
    return _MALFORMED[value]


def _parse_cmd(table: _Table) -> tuple[str, ...] | None:
    value = table.raw.get("cmd")
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise table.error(
        f"cmd must be a string or a non-empty array of strings (globs), not {_toml_type(value)}"
    )


def _parse_args_regex(table: _Table) -> re.Pattern[str] | None:
    pattern = table.string("args")
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise table.error(f"args is not a valid regular expression {pattern!r}: {exc}") from None


def _toml_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)
