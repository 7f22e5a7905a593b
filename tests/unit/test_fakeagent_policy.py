"""The fake agent's policy: parsing, first-match order, defaults and every error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakeagent.policy import (
    Answer,
    Fault,
    PolicyError,
    Query,
    ReplyArg,
    Rpc,
    ServiceErrorAnswer,
    load_policy_file,
    parse_policy,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"


def authz(cmd: str | None, *cmd_args: str, user: str = "alice", priv_lvl: int = 1) -> Query:
    return Query(Rpc.AUTHORIZATION, user, cmd, tuple(cmd_args), priv_lvl)


def accounting(cmd: str, *cmd_args: str, user: str = "alice") -> Query:
    return Query(Rpc.ACCOUNTING, user, cmd, tuple(cmd_args))


def pap(user: str = "alice", priv_lvl: int = 1) -> Query:
    return Query(Rpc.AUTHENTICATE_PAP, user, priv_lvl=priv_lvl)


# --- the example policy used by the demo -------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        (authz(""), "PASS_ADD", "welcome to the demo"),
        (authz("/usr/bin/ls", "-l", "/srv"), "PASS_ADD", ""),
        (authz("/usr/bin/cat", "/etc/hostname"), "PASS_ADD", ""),
        (authz("/usr/bin/echo", "hi"), "PASS_ADD", ""),
        (authz("/usr/bin/true"), "PASS_ADD", ""),
        (authz("/usr/bin/date"), "PASS_ADD", ""),
        (authz("/usr/bin/hostname"), "PASS_ADD", ""),
        (authz("/usr/bin/sleep", "1"), "PASS_ADD", ""),
        (authz("/usr/bin/grep", "root", "/etc/passwd"), "PASS_ADD", ""),
        (authz("/usr/bin/head", "-n1", "/etc/passwd"), "PASS_ADD", ""),
        (authz("/usr/bin/whoami"), "FAIL", "whoami is not allowed on this device"),
        (authz("/usr/bin/rm", "-r", "/srv/x"), "FAIL", "recursive rm is not allowed"),
        (authz("/usr/bin/rm", "-rf", "/srv/x"), "FAIL", "recursive rm is not allowed"),
        (authz("/usr/bin/rm", "/srv/x", "-fR"), "FAIL", "recursive rm is not allowed"),
        (authz("/usr/bin/rm", "--recursive", "x"), "FAIL", "recursive rm is not allowed"),
        (authz("/usr/bin/rm", "/srv/rfile"), "FAIL", "command not in the demo policy"),
        (authz("/usr/bin/id"), "FAIL", "command not in the demo policy"),
        (accounting("/usr/bin/ls"), "SUCCESS", ""),
    ],
)
def test_example_policy_answers(query: Query, status: str, message: str) -> None:
    answer = load_policy_file(EXAMPLE).answer(query)
    assert (answer.status, answer.server_message) == (status, message)
    assert answer.error is None
    assert answer.fault is None


# --- matching ------------------------------------------------------------------------------------


def test_first_matching_rule_wins_in_file_order() -> None:
    policy = parse_policy(
        """
        [[rule]]
        name = "first"
        cmd = "/usr/bin/*"
        status = "FAIL"
        [[rule]]
        name = "second"
        cmd = "/usr/bin/ls"
        status = "PASS_ADD"
        """
    )
    answer = policy.answer(authz("/usr/bin/ls"))
    assert (answer.origin, answer.status) == ("rule 1 ('first')", "FAIL")


def test_a_later_rule_answers_when_earlier_ones_do_not_match() -> None:
    policy = parse_policy(
        """
        [[rule]]
        user = "bob"
        status = "FAIL"
        [[rule]]
        cmd = "/usr/bin/ls"
        status = "PASS_REPL"
        """
    )
    assert policy.answer(authz("/usr/bin/ls", user="alice")).status == "PASS_REPL"
    assert policy.answer(authz("/usr/bin/ls", user="bob")).status == "FAIL"


@pytest.mark.parametrize(
    ("cmd", "matching", "not_matching"),
    [
        ('"/usr/bin/ls"', ["/usr/bin/ls"], ["/usr/bin/lsblk", "/bin/ls", ""]),
        ('"/usr/bin/l?"', ["/usr/bin/ls", "/usr/bin/ln"], ["/usr/bin/lsof"]),
        ('"/usr/*/ls"', ["/usr/bin/ls", "/usr/sbin/ls"], ["/usr/bin/cat"]),
        ('"/usr/bin/[bc]at"', ["/usr/bin/cat", "/usr/bin/bat"], ["/usr/bin/rat"]),
        ('""', [""], ["/usr/bin/ls"]),
        ('"*"', ["", "/usr/bin/ls"], []),
        ('["/usr/bin/ls", "/usr/bin/c*"]', ["/usr/bin/ls", "/usr/bin/cat"], ["/usr/bin/id"]),
    ],
)
def test_cmd_is_exact_or_a_glob(cmd: str, matching: list[str], not_matching: list[str]) -> None:
    policy = parse_policy(f'[[rule]]\ncmd = {cmd}\nstatus = "PASS_ADD"\n')
    for value in matching:
        assert policy.answer(authz(value)).status == "PASS_ADD", value
    for value in not_matching:
        assert policy.answer(authz(value)).origin == "built-in default", value


def test_a_rule_with_cmd_does_not_match_a_request_without_cmd() -> None:
    policy = parse_policy('[[rule]]\ncmd = "*"\nstatus = "PASS_ADD"\n')
    assert policy.answer(authz(None)).status == "FAIL"


def test_args_regex_is_searched_in_the_cmd_args_joined_with_spaces() -> None:
    policy = parse_policy(
        """
        [[rule]]
        cmd = "/usr/bin/rm"
        args = '(^| )-r( |$)'
        status = "FAIL"
        server_message = "no -r"
        [[rule]]
        args = 'a b'
        status = "PASS_REPL"
        [default]
        status = "PASS_ADD"
        """
    )
    assert policy.answer(authz("/usr/bin/rm", "x", "-r")).server_message == "no -r"
    assert policy.answer(authz("/usr/bin/rm", "-rf")).status == "PASS_ADD"
    assert policy.answer(authz("/usr/bin/rm", "--r")).status == "PASS_ADD"
    # The joining is what lets a pattern span two arguments.
    assert policy.answer(authz("/usr/bin/echo", "a", "b")).status == "PASS_REPL"
    assert policy.answer(authz("/usr/bin/echo", "ab")).status == "PASS_ADD"


def test_user_and_priv_lvl_matchers() -> None:
    policy = parse_policy(
        """
        [[rule]]
        user = "admin"
        priv_lvl = 15
        status = "PASS_ADD"
        """
    )
    assert policy.answer(authz("/x", user="admin", priv_lvl=15)).status == "PASS_ADD"
    assert policy.answer(authz("/x", user="admin", priv_lvl=14)).status == "FAIL"
    assert policy.answer(authz("/x", user="admins", priv_lvl=15)).status == "FAIL"
    assert policy.answer(pap(user="admin", priv_lvl=15)).origin == "built-in default"


def test_rpc_matcher() -> None:
    policy = parse_policy('[[rule]]\nrpc = "authenticate_pap"\nuser = "alice"\nstatus = "PASS"\n')
    assert policy.answer(pap()).status == "PASS"
    assert policy.answer(authz("")).origin == "built-in default"


def test_a_rule_without_rpc_applies_where_its_status_exists() -> None:
    policy = parse_policy(
        """
        [[rule]]
        name = "deny everything"
        status = "FAIL"
        [[rule]]
        name = "errors for all"
        status = "ERROR"
        """
    )
    assert policy.answer(authz("/x")).origin == "rule 1 ('deny everything')"
    assert policy.answer(pap()).origin == "rule 1 ('deny everything')"
    # Accounting has no FAIL, so the first rule does not apply to it.
    assert policy.answer(accounting("/x")).origin == "rule 2 ('errors for all')"


def test_cmd_applies_to_accounting_command() -> None:
    policy = parse_policy('[[rule]]\ncmd = "/usr/bin/ls"\nargs = "^-l$"\nstatus = "FOLLOW"\n')
    assert policy.answer(accounting("/usr/bin/ls", "-l")).status == "FOLLOW"
    assert policy.answer(authz("/usr/bin/ls", "-l")).status == "FOLLOW"
    assert policy.answer(accounting("/usr/bin/ls")).origin == "built-in default"


# --- answers ---------------------------------------------------------------------------------


def test_reply_fields_and_reply_args() -> None:
    policy = parse_policy(
        """
        [[rule]]
        cmd = ""
        status = "PASS_ADD"
        server = "tacacs-2"
        server_message = "hello"
        data = "d"
        reply_args = [
          { name = "priv-lvl", value = "15", mandatory = true },
          { name = "idletime", value = "5", mandatory = false },
          { name = "timeout", value = "10" },
        ]
        """
    )
    answer = policy.answer(authz(""))
    assert answer == Answer(
        origin="rule 1",
        status="PASS_ADD",
        server="tacacs-2",
        server_message="hello",
        data="d",
        reply_args=(
            ReplyArg("priv-lvl", "15", True),
            ReplyArg("idletime", "5", False),
            ReplyArg("timeout", "10", True),
        ),
    )


@pytest.mark.parametrize(
    ("answer_toml", "expected"),
    [
        (
            'error = { message = "no server", retriable = true }',
            Answer("rule 1", error=ServiceErrorAnswer("no server", retriable=True)),
        ),
        (
            'error = { message = "bad key", server = "10.0.0.1" }',
            Answer("rule 1", error=ServiceErrorAnswer("bad key", False, "10.0.0.1")),
        ),
        ("hang = true", Answer("rule 1", fault=Fault.HANG)),
        ("drop = true\ndelay_ms = 50", Answer("rule 1", fault=Fault.DROP, delay_ms=50)),
        (
            'malformed = "unspecified"\nserver_message = "m"',
            Answer("rule 1", fault=Fault.MALFORMED_UNSPECIFIED, server_message="m"),
        ),
        ('malformed = "empty"', Answer("rule 1", fault=Fault.MALFORMED_EMPTY)),
        ('status = "PASS_ADD"\ndelay_ms = 250', Answer("rule 1", "PASS_ADD", delay_ms=250)),
        ('status = "ERROR"\nhang = false', Answer("rule 1", "ERROR")),
    ],
)
def test_answer_kinds(answer_toml: str, expected: Answer) -> None:
    policy = parse_policy(f"[[rule]]\n{answer_toml}\n")
    assert policy.answer(authz("/x")) == expected


# --- defaults ------------------------------------------------------------------------------------


def test_without_default_table_the_built_in_default_fails() -> None:
    policy = parse_policy('[[rule]]\ncmd = "/usr/bin/ls"\nstatus = "PASS_ADD"\n')
    for query in (authz("/usr/bin/id"), pap()):
        answer = policy.answer(query)
        assert (answer.status, answer.server_message) == ("FAIL", "no rule matched")
    # Accounting has no FAIL status; its negative answer is ERROR.
    answer = policy.answer(accounting("/usr/bin/id"))
    assert (answer.status, answer.server_message) == ("ERROR", "no rule matched")


def test_an_empty_policy_answers_with_the_built_in_default() -> None:
    answer = parse_policy("").answer(authz(""))
    assert (answer.origin, answer.status) == ("built-in default", "FAIL")


def test_default_table_answers_what_no_rule_matched() -> None:
    policy = parse_policy(
        """
        [[rule]]
        cmd = "/usr/bin/ls"
        status = "PASS_ADD"
        [default]
        status = "FAIL"
        server_message = "not allowed"
        """
    )
    answer = policy.answer(authz("/usr/bin/id"))
    assert (answer.origin, answer.status, answer.server_message) == (
        "[default]",
        "FAIL",
        "not allowed",
    )
    # FAIL does not exist for accounting: the built-in default answers there.
    assert policy.answer(accounting("/usr/bin/id")).origin == "built-in default"


def test_default_table_can_be_a_fault() -> None:
    policy = parse_policy("[default]\nhang = true\n")
    for query in (authz("/x"), accounting("/x"), pap()):
        assert policy.answer(query).fault is Fault.HANG


# --- errors --------------------------------------------------------------------------------------

RULE = '[[rule]]\nname = "r"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            RULE + 'status = "ALLOW"\n',
            "p.toml: rule 1 ('r'): unknown status 'ALLOW' (known: ERROR, FAIL, FOLLOW, "
            "PASS, PASS_ADD, PASS_REPL, SUCCESS)",
        ),
        (
            RULE + 'stauts = "FAIL"\n',
            "p.toml: rule 1 ('r'): unknown key 'stauts' (known: args, cmd, data, delay_ms, "
            "drop, error, hang, malformed, name, priv_lvl, reply_args, rpc, server, "
            "server_message, status, user)",
        ),
        (
            RULE + "args = '(-r'\nstatus = \"FAIL\"\n",
            "p.toml: rule 1 ('r'): args is not a valid regular expression '(-r': "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            RULE + 'cmd = 5\nstatus = "FAIL"\n',
            "p.toml: rule 1 ('r'): cmd must be a string or a non-empty array of strings "
            "(globs), not an integer",
        ),
        (
            RULE + 'cmd = ["/usr/bin/ls", 5]\nstatus = "FAIL"\n',
            "p.toml: rule 1 ('r'): cmd must be a string or a non-empty array of strings "
            "(globs), not an array",
        ),
        (
            RULE + 'cmd = []\nstatus = "FAIL"\n',
            "p.toml: rule 1 ('r'): cmd must be a string or a non-empty array of strings "
            "(globs), not an array",
        ),
        (
            RULE + 'cmd = { path = "/x" }\nstatus = "FAIL"\n',
            "p.toml: rule 1 ('r'): cmd must be a string or a non-empty array of strings "
            "(globs), not a table",
        ),
        (
            RULE + 'user = 7\nstatus = "FAIL"\n',
            "p.toml: rule 1 ('r'): user must be a string, not an integer",
        ),
        (
            RULE + 'args = ["-r"]\nstatus = "FAIL"\n',
            "p.toml: rule 1 ('r'): args must be a string, not an array",
        ),
        (
            RULE + 'rpc = "authz"\nstatus = "FAIL"\n',
            "p.toml: rule 1 ('r'): unknown rpc 'authz' (one of 'authorization', "
            "'accounting', 'authenticate_pap')",
        ),
        (
            RULE + 'rpc = "accounting"\nstatus = "FAIL"\n',
            "p.toml: rule 1 ('r'): status 'FAIL' does not exist for rpc 'accounting' "
            "(one of SUCCESS, ERROR, FOLLOW)",
        ),
        (
            RULE + 'cmd = "/x"\nstatus = "PASS"\n',
            "p.toml: rule 1 ('r'): status 'PASS' does not exist for rpc 'accounting' "
            "or 'authorization'",
        ),
        (
            RULE + 'rpc = "accounting"\npriv_lvl = 15\nstatus = "SUCCESS"\n',
            "p.toml: rule 1 ('r'): priv_lvl does not apply to rpc 'accounting'",
        ),
        (
            RULE + 'rpc = "authenticate_pap"\ncmd = "/x"\nstatus = "PASS"\n',
            "p.toml: rule 1 ('r'): cmd does not apply to rpc 'authenticate_pap'",
        ),
        (
            RULE + 'rpc = "accounting"\nstatus = "SUCCESS"\n'
            'reply_args = [{ name = "a", value = "b" }]\n',
            "p.toml: rule 1 ('r'): reply_args does not apply to rpc 'accounting'",
        ),
        (
            RULE + 'priv_lvl = 1\nargs = "x"\nrpc = "accounting"\nstatus = "ERROR"\n',
            "p.toml: rule 1 ('r'): priv_lvl does not apply to rpc 'accounting'",
        ),
        (
            RULE + 'status = "FAIL"\nerror = { message = "x" }\n',
            "p.toml: rule 1 ('r'): needs exactly one of status, error, hang = true, "
            "drop = true, malformed (found status and error)",
        ),
        (
            RULE + 'cmd = "/x"\n',
            "p.toml: rule 1 ('r'): needs exactly one of status, error, hang = true, "
            "drop = true, malformed (found none)",
        ),
        (
            RULE + 'hang = "yes"\n',
            "p.toml: rule 1 ('r'): hang must be true or false, not a string",
        ),
        (
            RULE + "hang = true\ndelay_ms = 10\n",
            "p.toml: rule 1 ('r'): delay_ms has no effect with hang = true; remove one of them",
        ),
        (
            RULE + 'drop = true\nserver_message = "x"\n',
            "p.toml: rule 1 ('r'): server_message has no effect with drop; remove one of them",
        ),
        (
            RULE + 'malformed = "empty"\nserver = "s"\n',
            "p.toml: rule 1 ('r'): server has no effect with malformed; remove one of them",
        ),
        (
            RULE + 'malformed = "garbled"\n',
            "p.toml: rule 1 ('r'): malformed must be \"unspecified\" or \"empty\", not 'garbled'",
        ),
        (
            RULE + 'status = "FAIL"\npriv_lvl = 16\n',
            "p.toml: rule 1 ('r'): priv_lvl must be between 0 and 15, not 16",
        ),
        (
            RULE + 'status = "FAIL"\npriv_lvl = true\n',
            "p.toml: rule 1 ('r'): priv_lvl must be an integer, not a boolean",
        ),
        (
            RULE + 'status = "FAIL"\ndelay_ms = -1\n',
            "p.toml: rule 1 ('r'): delay_ms must be between 0 and 600000, not -1",
        ),
        (
            RULE + 'status = "FAIL"\ndelay_ms = 1.5\n',
            "p.toml: rule 1 ('r'): delay_ms must be an integer, not a float",
        ),
        (
            RULE + "error = { retriable = true }\n",
            "p.toml: rule 1 ('r'): error: needs a non-empty message",
        ),
        (
            RULE + 'error = { message = "x", retry = true }\n',
            "p.toml: rule 1 ('r'): error: unknown key 'retry' (known: message, retriable, server)",
        ),
        (
            RULE + 'error = "down"\n',
            "p.toml: rule 1 ('r'): error must be a table like { message = .. }, not a string",
        ),
        (
            RULE + 'status = "PASS_ADD"\nreply_args = [{ name = "priv-lvl" }]\n',
            "p.toml: rule 1 ('r'): reply_args[1]: needs a non-empty name and a value",
        ),
        (
            RULE + 'status = "PASS_ADD"\nreply_args = ["priv-lvl=15"]\n',
            "p.toml: rule 1 ('r'): reply_args[1] must be a table like { name = .. }",
        ),
        (
            RULE + 'status = "PASS_ADD"\n'
            'reply_args = [{ name = "a", value = "b", mandatory = "yes" }]\n',
            "p.toml: rule 1 ('r'): reply_args[1]: mandatory must be true or false, not a string",
        ),
        (
            '[[rule]]\nstatus = "FAIL"\n[[rule]]\nstatus = "FIAL"\n',
            "p.toml: rule 2: unknown status 'FIAL' (known: ERROR, FAIL, FOLLOW, PASS, "
            "PASS_ADD, PASS_REPL, SUCCESS)",
        ),
        (
            '[default]\nstatus = "FAIL"\ncmd = "/x"\n',
            "p.toml: [default]: unknown key 'cmd' (known: data, delay_ms, drop, error, hang, "
            "malformed, reply_args, server, server_message, status)",
        ),
        (
            "[default]\n",
            "p.toml: [default]: needs exactly one of status, error, hang = true, drop = true, "
            "malformed (found none)",
        ),
        (
            '[default]\nstatus = "SUCCESS"\nreply_args = [{ name = "a", value = "b" }]\n',
            "p.toml: [default]: status 'SUCCESS' does not exist for rpc 'authorization' "
            "(one of PASS_ADD, PASS_REPL, FAIL, ERROR, FOLLOW)",
        ),
        (
            '[[rules]]\nstatus = "FAIL"\n',
            "p.toml: unknown top-level key 'rules' (expected [[rule]] and [default])",
        ),
        ('rule = "x"\n', "p.toml: 'rule' must be an array of tables, written [[rule]]"),
        ('default = "FAIL"\n', "p.toml: 'default' must be a table, written [default]"),
    ],
)
def test_errors_are_one_line_naming_file_rule_and_problem(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "p.toml")
    assert str(raised.value) == message
    assert "\n" not in str(raised.value)


def test_bad_toml_names_the_file_and_position() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy('[[rule]]\nstatus = "FAIL"\ncmd = /usr/bin/ls\n', "p.toml")
    # The rest of the sentence is tomllib's, which may be worded differently in other Pythons.
    assert str(raised.value).startswith("p.toml: not valid TOML: ")
    assert str(raised.value).endswith("(at line 3, column 7)")


def test_error_in_the_third_rule_names_its_index_and_name() -> None:
    text = (
        '[[rule]]\nstatus = "FAIL"\n[[rule]]\nstatus = "FAIL"\n'
        '[[rule]]\nname = "deny rm"\nargs = "[" \nstatus = "FAIL"\n'
    )
    with pytest.raises(PolicyError, match=r"^p\.toml: rule 3 \('deny rm'\): args is not"):
        parse_policy(text, "p.toml")


def test_unreadable_policy_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(PolicyError) as raised:
        load_policy_file(missing)
    assert str(raised.value) == f"{missing}: cannot read policy: No such file or directory"


def test_policy_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[rule]]\nstatus = "MAYBE"\n')
    with pytest.raises(PolicyError, match=rf"^{path}: rule 1: unknown status 'MAYBE'"):
        load_policy_file(path)
