"""The ``#!`` parser against the rules of fs/binfmt_script.c, with plain bytes."""

from __future__ import annotations

import pytest

from session_wrapper.shebang import (
    BINPRM_BUF_SIZE,
    BadShebang,
    Shebang,
    interpreter_argv,
    parse_shebang,
)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"#!/bin/sh\necho hi\n", Shebang(b"/bin/sh", None)),
        (b"#! /bin/sh\n", Shebang(b"/bin/sh", None)),
        (b"#!\t/bin/sh \t \n", Shebang(b"/bin/sh", None)),
        (b"#!/usr/bin/env python3\n", Shebang(b"/usr/bin/env", b"python3")),
        # Everything after the name is one argument, inner blanks kept.
        (b"#!/usr/bin/env -S a  b\tc  \n", Shebang(b"/usr/bin/env", b"-S a  b\tc")),
        # A carriage return is not a blank: it stays part of the name.
        (b"#!/bin/sh\r\n", Shebang(b"/bin/sh\r", None)),
        # No newline in a short file: the zero padding ends the name.
        (b"#!/usr/bin/whoami", Shebang(b"/usr/bin/whoami", None)),
        # A NUL ends the line before a later newline.
        (b"#!/bin/sh\0 -x\n", Shebang(b"/bin/sh", None)),
        (b"#!/bin/sh -x\0junk\n", Shebang(b"/bin/sh", b"-x")),
        (b"#!relative/interp arg\n", Shebang(b"relative/interp", b"arg")),
    ],
)
def test_parses_like_the_kernel(head: bytes, expected: Shebang) -> None:
    assert parse_shebang(head) == expected


@pytest.mark.parametrize("head", [b"\x7fELF\x02\x01", b"", b"#", b"# !/bin/sh\n", b"!#/bin/sh"])
def test_not_a_script(head: bytes) -> None:
    assert parse_shebang(head) is None


@pytest.mark.parametrize("head", [b"#!\n", b"#!   \t\n", b"#!", b"#!" + b" " * 300])
def test_no_interpreter_is_enoexec(head: bytes) -> None:
    with pytest.raises(BadShebang):
        parse_shebang(head)


def test_name_cut_by_the_buffer_is_enoexec() -> None:
    head = b"#!/" + b"a" * (BINPRM_BUF_SIZE + 10)
    with pytest.raises(BadShebang, match="does not fit"):
        parse_shebang(head)


def test_argument_cut_by_the_buffer_is_kept_cut() -> None:
    # A long argument may be cut: the interpreter can read the script itself.
    head = b"#!/bin/sh " + b"x" * 400
    shebang = parse_shebang(head)
    assert shebang is not None
    assert shebang.interpreter == b"/bin/sh"
    assert shebang.argument == b"x" * (BINPRM_BUF_SIZE - 1 - len(b"#!/bin/sh "))


def test_only_the_first_buffer_counts() -> None:
    head = b"#!/bin/sh" + b" " * (BINPRM_BUF_SIZE - 9) + b"-x\n"
    assert parse_shebang(head) == Shebang(b"/bin/sh", None)


def test_interpreter_argv_with_and_without_argument() -> None:
    argv = (b"./job", b"one", b"two")
    assert interpreter_argv(Shebang(b"/bin/sh", None), b"./job", argv) == (
        b"/bin/sh",
        b"./job",
        b"one",
        b"two",
    )
    assert interpreter_argv(Shebang(b"/usr/bin/env", b"-S a b"), b"/t/job", argv) == (
        b"/usr/bin/env",
        b"-S a b",
        b"/t/job",
        b"one",
        b"two",
    )


def test_interpreter_argv_of_an_empty_argv() -> None:
    assert interpreter_argv(Shebang(b"/bin/sh", None), b"/t/job", ()) == (b"/bin/sh", b"/t/job")
