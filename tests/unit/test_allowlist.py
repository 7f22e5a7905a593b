"""Allowlist parsing: which lines become entries, which are errors, and the built-in entries."""

from __future__ import annotations

import pytest

from session_wrapper.allowlist import (
    BUILTIN_ENTRIES,
    AllowlistError,
    effective_allowlist,
    parse_allowlist,
)


def parse(text: bytes) -> frozenset[bytes]:
    return parse_allowlist(text.split(b"\n"), "allow.conf")


def test_comments_and_blank_lines_are_ignored() -> None:
    text = b"# tools for operators\n\n   \n\t# indented comment\n/usr/bin/show\n#/usr/bin/rm\n"

    assert parse(text) == {b"/usr/bin/show"}


def test_surrounding_whitespace_and_carriage_returns_are_stripped() -> None:
    assert parse(b"  /usr/bin/show\t\r\n/usr/bin/ping\r\n") == {b"/usr/bin/show", b"/usr/bin/ping"}


def test_hash_in_the_middle_of_a_path_is_kept() -> None:
    assert parse(b"/opt/tools/#draft\n/usr/bin/a#b # not a comment\n") == {
        b"/opt/tools/#draft",
        b"/usr/bin/a#b # not a comment",
    }


@pytest.mark.parametrize(
    "path",
    [b"/opt/caf\xe9", b"/opt/\xff\xfe", b"/opt/\xed\xa0\x80", b"/opt/\x80lone", b"/opt/ok\xc3"],
)
def test_non_utf8_path_bytes_are_kept(path: bytes) -> None:
    assert parse(b"# bytes\n" + path + b"\n") == {path}


def test_duplicates_collapse() -> None:
    assert parse(b"/usr/bin/show\n/usr/bin/show\n") == {b"/usr/bin/show"}


def test_empty_text_gives_no_entries() -> None:
    assert parse(b"") == frozenset()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"bin/ls\n", "allow.conf:1: entry 'bin/ls' is not an absolute path"),
        (
            b"# header\n\n/usr/bin/show\n./show\n",
            "allow.conf:4: entry './show' is not an absolute path",
        ),
        (b"/usr/bin/a\n~/bin/b\n", "allow.conf:2: entry '~/bin/b' is not an absolute path"),
        (b"\n\n\nshow \xff\n", "allow.conf:4: entry 'show \\\\xff' is not an absolute path"),
    ],
)
def test_relative_entry_is_an_error_naming_source_and_line(text: bytes, message: str) -> None:
    with pytest.raises(AllowlistError) as raised:
        parse(text)

    assert str(raised.value) == message


def test_error_stops_at_the_first_bad_line() -> None:
    with pytest.raises(AllowlistError, match=r"^allow\.conf:2: entry 'first'"):
        parse(b"/ok\nfirst\nsecond\n")


def test_builtins_are_always_present() -> None:
    assert effective_allowlist(frozenset()) == BUILTIN_ENTRIES
    assert effective_allowlist(frozenset({b"/usr/bin/show"})) == BUILTIN_ENTRIES | {
        b"/usr/bin/show"
    }


def test_builtins_include_the_shells_a_login_needs() -> None:
    assert {b"/bin/bash", b"/bin/sh"} <= BUILTIN_ENTRIES


def test_builtins_are_absolute_paths() -> None:
    assert all(entry.startswith(b"/") for entry in BUILTIN_ENTRIES)


def test_operator_file_cannot_remove_a_builtin() -> None:
    # A comment line naming a built-in does not take it out.
    assert b"/bin/bash" in effective_allowlist(parse(b"#/bin/bash\n"))
