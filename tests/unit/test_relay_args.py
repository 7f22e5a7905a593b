"""The relay's pure mapping: agent messages to RFC 8907 fields, and reply args back."""

from __future__ import annotations

import pytest

from fakeagent.relay import (
    UnsendableRequest,
    accounting_start,
    authen_fields,
    authorization_start,
    decode_arg,
    encode_arg,
    pap_start,
)
from fakeagent.tacacs_client import Secret, Upstream
from session_wrapper.rpc import tacacsrs_agent_pb2 as pb

# RFC 8907 section 5.1 and 6.1 values, written out here rather than imported from the code
# under test.
METH_NOT_SET, METH_NONE, METH_TACACSPLUS = 0x00, 0x01, 0x06
TYPE_NOT_SET, TYPE_ASCII, TYPE_PAP = 0x00, 0x01, 0x02
SVC_LOGIN = 0x01
ACCT_FLAG_START, ACCT_FLAG_STOP = 0x02, 0x04


@pytest.mark.parametrize(
    ("name", "value", "mandatory", "wire"),
    [
        ("service", "shell", True, b"service=shell"),
        ("cmd", "/bin/ls", True, b"cmd=/bin/ls"),
        ("cmd-arg", "-l", False, b"cmd-arg*-l"),
        ("cmd-arg", "a=b*c", True, b"cmd-arg=a=b*c"),
        ("cmd-arg", "", True, b"cmd-arg="),
        ("cmd-arg", "caf\u00e9", True, b"cmd-arg=caf\xc3\xa9"),
    ],
)
def test_encode_arg_writes_name_separator_value(
    name: str, value: str, mandatory: bool, wire: bytes
) -> None:
    assert encode_arg(name, value, mandatory=mandatory) == wire


@pytest.mark.parametrize("name", ["", "a=b", "a*b"])
def test_encode_arg_refuses_a_name_the_server_would_split_elsewhere(name: str) -> None:
    with pytest.raises(UnsendableRequest, match="argument name"):
        encode_arg(name, "x")


def test_encode_arg_refuses_more_than_255_bytes_instead_of_truncating() -> None:
    assert len(encode_arg("cmd-arg", "x" * 247)) == 255
    with pytest.raises(UnsendableRequest, match="256 bytes"):
        encode_arg("cmd-arg", "x" * 248)


@pytest.mark.parametrize(
    ("wire", "name", "mandatory", "value"),
    [
        (b"priv-lvl=15", "priv-lvl", True, "15"),
        (b"timeout*30", "timeout", False, "30"),
        (b"cmd-arg=x*y", "cmd-arg", True, "x*y"),
        (b"cmd-arg*x=y", "cmd-arg", False, "x=y"),
        (b"acl=", "acl", True, ""),
    ],
)
def test_decode_arg_splits_at_the_first_separator(
    wire: bytes, name: str, mandatory: bool, value: str
) -> None:
    arg = decode_arg(wire)
    assert arg is not None
    assert (arg.name, arg.mandatory, arg.value) == (name, mandatory, value)


def test_decode_arg_without_separator_is_none() -> None:
    assert decode_arg(b"priv-lvl") is None


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (
            pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_ASCII,
            (METH_TACACSPLUS, TYPE_ASCII, SVC_LOGIN),
        ),
        (
            pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_PAP,
            (METH_TACACSPLUS, TYPE_PAP, SVC_LOGIN),
        ),
        (
            pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_UNAUTHENTICATED,
            (METH_NONE, TYPE_NOT_SET, SVC_LOGIN),
        ),
        (
            pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_UNSPECIFIED,
            (METH_NOT_SET, TYPE_NOT_SET, SVC_LOGIN),
        ),
    ],
)
def test_authentication_context_maps_to_rfc_8907_fields(
    context: int, expected: tuple[int, int, int]
) -> None:
    assert authen_fields(context) == expected


def test_authorization_start_carries_every_request_field() -> None:
    req = pb.AuthorizationRequest(
        user="alice",
        port="ssh:pts/3",
        remote_address="192.0.2.7",
        privilege_level=15,
        authentication_context=pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_PAP,
        args=[
            pb.AuthorizationArg(name="service", mandatory=True, value="shell"),
            pb.AuthorizationArg(name="cmd", mandatory=True, value="/usr/bin/ip"),
            pb.AuthorizationArg(name="cmd-arg", mandatory=False, value="route"),
        ],
    )
    start = authorization_start(req)
    assert (start.user, start.port, start.rem_addr) == (b"alice", b"ssh:pts/3", b"192.0.2.7")
    assert start.priv_lvl == 15
    assert (start.authen_method, start.authen_type, start.authen_service) == (
        METH_TACACSPLUS,
        TYPE_PAP,
        SVC_LOGIN,
    )
    assert start.args == (b"service=shell", b"cmd=/usr/bin/ip", b"cmd-arg*route")


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (pb.AuthorizationRequest(user="u" * 256), "user is 256 bytes"),
        (pb.AuthorizationRequest(privilege_level=16), "privilege level 16"),
        (
            pb.AuthorizationRequest(
                args=[pb.AuthorizationArg(name="cmd-arg", mandatory=True)] * 256
            ),
            "256 arguments",
        ),
    ],
)
def test_authorization_start_refuses_what_rfc_8907_cannot_carry(
    req: pb.AuthorizationRequest, message: str
) -> None:
    with pytest.raises(UnsendableRequest, match=message):
        authorization_start(req)


def test_accounting_start_is_one_stop_record_with_the_command() -> None:
    req = pb.AccountingRequest(
        user="alice",
        port="ssh:pts/3",
        remote_address="192.0.2.7",
        command="/usr/bin/ip",
        command_arguments=["route", "show"],
    )
    start = accounting_start(req, task_id="7f3a", start_time=1700000000)
    # RFC 8907 section 7.2 lists START|STOP (0x06) as INVALID: the record is STOP alone.
    assert start.flags == ACCT_FLAG_STOP
    assert start.flags & ACCT_FLAG_START == 0
    assert start.args == (
        b"task_id=7f3a",
        b"start_time=1700000000",
        b"service=shell",
        b"cmd=/usr/bin/ip",
        b"cmd-arg=route",
        b"cmd-arg=show",
    )
    assert (start.user, start.port, start.rem_addr) == (b"alice", b"ssh:pts/3", b"192.0.2.7")
    assert (start.authen_method, start.authen_type, start.authen_service) == (
        METH_NOT_SET,
        TYPE_NOT_SET,
        SVC_LOGIN,
    )


def test_pap_start_keeps_the_password_out_of_repr() -> None:
    start = pap_start(pb.PapAuthenticationRequest(user="alice", password=b"hunter2-pw"))
    assert start.password == b"hunter2-pw"
    assert "hunter2-pw" not in repr(start)


def test_secret_repr_and_str_do_not_show_the_key() -> None:
    secret = Secret(b"s3cr3t-key")
    assert "s3cr3t-key" not in repr(secret)
    assert "s3cr3t-key" not in str(secret)
    assert "s3cr3t-key" not in f"{secret!r} {[secret]}"


def test_secret_round_trips_any_byte_through_the_library_key() -> None:
    key = bytes(range(256))
    assert Secret(key).library_key().encode("latin-1") == key


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        Secret(b"")


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [("192.0.2.1", 49, "192.0.2.1:49"), ("::1", 4949, "[::1]:4949"), ("tac1", 49, "tac1:49")],
)
def test_upstream_is_named_host_colon_port(host: str, port: int, text: str) -> None:
    assert str(Upstream(host, port)) == text
