"""Quoting a server in a message: secrets blanked, one line, safe to print on a terminal."""

from __future__ import annotations

import pytest

from requests_advanced_auth._redact import excerpt, spellings, visible

SECRET = "s3cr3t-Value/+"


def test_excerpt_blanks_every_spelling_of_a_secret_and_folds_white_space():
    text = f"you sent {SECRET}\n and\t{spellings(SECRET).pop()}"
    quoted = excerpt(text, spellings(SECRET))
    assert "s3cr3t" not in quoted
    assert quoted.startswith("you sent *** and ***")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x1b[Hall good", "\\x1b[2J\\x1b[Hall good"),  # clear screen, cursor home
        ("\x1b]0;owned\x07title", "\\x1b]0;owned\\x07title"),  # set the window title, BEL
        ("back\x08space del\x7f", "back\\x08space del\\x7f"),
        ("nul\x00 and C1 \x9b31m", "nul\\x00 and C1 \\x9b31m"),  # \x9b: the 8-bit CSI
        ("a\u202eevil", "a\\u202eevil"),  # right-to-left override: reorders what follows
        ("lone \udcff surrogate", "lone \\udcff surrogate"),  # unprintable on a UTF-8 stream
    ],
)
def test_excerpt_shows_control_characters_as_escapes(text, shown):
    assert excerpt(text) == shown


def test_excerpt_keeps_printable_text_as_it_is():
    text = "Grüße, ünïcødé, \u2013 \u201cquotes\u201d 日本 🙂 \\x1b stays"
    assert excerpt(text) == text


def test_excerpt_never_shows_a_secret_with_a_control_character_escaped_or_raw():
    secret = "tok\x1ben"
    for echoed in (secret, "tok\\x1ben"):
        quoted = excerpt(f"got {echoed}!", spellings(secret))
        assert quoted == "got ***!"


def test_excerpt_cuts_after_escaping_and_never_exceeds_the_limit():
    quoted = excerpt("\x1b" * 100, limit=20)
    assert len(quoted) == 20
    assert "\x1b" not in quoted
    assert quoted.endswith("…")


def test_visible_escapes_control_characters_but_keeps_the_lines():
    assert visible("line 1\nline\t2 \x1b[31mred\r") == "line 1\nline\t2 \\x1b[31mred\\x0d"
