"""Unit tests of the pure token arithmetic in ``_token`` (no I/O, no clock but numbers)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from requests_advanced_auth import DEFAULT_LEEWAY, Token, TokenState
from requests_advanced_auth._token import (
    EXPIRY_FRACTION,
    MAX_LEEWAY_FRACTION,
    MAX_LIFETIME,
    fingerprint,
    parse_expires_in,
)

T0 = 1_700_000_000.0
SECRET_TOKEN = "eyJhbGciOi.token-value-that-must-never-be-shown.sig"


def issued(expires_in, *, at=T0, access_token=SECRET_TOKEN, **kw):
    return Token.issued(access_token, issued_at=at, expires_in=expires_in, **kw)


# -- expires_in parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3600", 3600.0),
        (3600, 3600.0),
        (3600.0, 3600.0),
        ("3600.0", 3600.0),  # oauthlib rejects this one; the provider may send it
        (" 3600 ", 3600.0),
        (0, 0.0),
        ("0", 0.0),
        (-5, -5.0),
        (10**12, 1e12),  # capped later, by Token.issued
    ],
)
def test_expires_in_accepts_int_float_and_numeric_strings(value, seconds):
    assert parse_expires_in(value) == seconds


def test_missing_expires_in_means_unknown():
    assert parse_expires_in(None) is None


@pytest.mark.parametrize(
    "value",
    ["soon", "", "3600s", "nan", "NaN", float("nan"), True, False, [3600], {"s": 1}, b"3600"],
)
def test_expires_in_that_is_not_a_number_is_a_value_error(value):
    with pytest.raises(ValueError, match="expires_in"):
        parse_expires_in(value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (10**400, math.inf),  # float() of this int raises OverflowError
        (-(10**400), -math.inf),
        ("9" * 400, math.inf),  # float() of a string already gives inf
        ("-inf", -math.inf),
        (float("inf"), math.inf),
    ],
    ids=["10**400", "-10**400", "400 nines as a string", "'-inf'", "inf"],
)
def test_expires_in_too_large_for_a_float_counts_as_infinite(value, seconds):
    assert parse_expires_in(value) == seconds


def test_expires_in_error_message_quotes_at_most_a_short_excerpt():
    with pytest.raises(ValueError, match="expires_in") as info:
        parse_expires_in("x" * 500)
    assert len(str(info.value)) < 120


# -- lifetime --------------------------------------------------------------------------------


def test_token_expiry_is_issue_time_plus_its_own_lifetime():
    token = issued(parse_expires_in("3600"))
    assert token.expires_at == T0 + 3600


def test_token_without_expires_in_never_goes_stale():
    token = issued(None)
    assert token.expires_at is None
    assert token.stale_at(DEFAULT_LEEWAY) == math.inf
    assert token.expired_at(DEFAULT_LEEWAY) == math.inf
    assert token.state(T0 + 10 * MAX_LIFETIME, DEFAULT_LEEWAY) is TokenState.FRESH


@pytest.mark.parametrize("expires_in", [0, -1, -3600])
def test_zero_or_negative_lifetime_is_expired_at_once(expires_in):
    token = issued(expires_in)
    assert token.state(T0, DEFAULT_LEEWAY) is TokenState.EXPIRED
    assert token.state(T0, 0.0) is TokenState.EXPIRED


@pytest.mark.parametrize("expires_in", [10**12, float("inf"), MAX_LIFETIME + 1])
def test_huge_lifetime_is_capped_at_max_lifetime(expires_in):
    token = issued(parse_expires_in(expires_in))
    assert token.expires_at == T0 + MAX_LIFETIME
    assert token.state(T0 + MAX_LIFETIME, 0.0) is TokenState.EXPIRED


@pytest.mark.parametrize(
    "expires_in",
    [-math.inf, -(10**400), -1e308, -MAX_LIFETIME - 1],
    ids=["-inf", "-10**400", "-1e308", "-MAX_LIFETIME-1"],
)
def test_hugely_negative_lifetime_is_expired_at_once_with_a_finite_expiry(expires_in):
    token = issued(parse_expires_in(expires_in))
    assert math.isfinite(token.expires_at)
    assert token.expires_at <= T0
    for leeway in (0.0, DEFAULT_LEEWAY):
        assert token.state(T0, leeway) is TokenState.EXPIRED


ANY_LIFETIME = [
    -math.inf, -1e308, -MAX_LIFETIME - 1, -1.0, -1e-300, 0.0, 1e-300, 1.0, 3600.0,
    MAX_LIFETIME, MAX_LIFETIME + 1, 1e308, math.inf, None,
]


@pytest.mark.parametrize("expires_in", ANY_LIFETIME)
def test_state_and_boundaries_never_raise_and_the_token_serialises_as_strict_json(expires_in):
    token = issued(expires_in)
    assert token.expires_at is None or math.isfinite(token.expires_at)
    for leeway in (0.0, DEFAULT_LEEWAY, 1e308):
        stale, expired = token.stale_at(leeway), token.expired_at(leeway)
        assert stale <= expired
        for now in (-1e308, 0.0, T0, T0 + MAX_LIFETIME, 1e308, -math.inf, math.inf):
            assert isinstance(token.state(now, leeway), TokenState)
    text = json.dumps(token.to_dict(), allow_nan=False)  # no NaN/Infinity literals
    assert Token.from_dict(json.loads(text)) == token


def test_nan_lifetime_is_a_value_error():
    with pytest.raises(ValueError, match="expires_in"):
        issued(float("nan"))


def test_max_lifetime_is_one_day():
    assert MAX_LIFETIME == 86400.0


# -- FRESH / STALE / EXPIRED -----------------------------------------------------------------


def test_hour_token_states_at_the_boundaries_with_default_leeway():
    # margin = min(60, 3600 / 4) = 60: stale from 3540 s, expired from 3600 - 60 / 3 = 3580 s
    token = issued(3600)
    leeway = DEFAULT_LEEWAY
    assert leeway == 60.0
    assert token.state(T0, leeway) is TokenState.FRESH
    assert token.state(T0 + 3539.999, leeway) is TokenState.FRESH
    assert token.state(T0 + 3540, leeway) is TokenState.STALE
    assert token.state(T0 + 3579.999, leeway) is TokenState.STALE
    assert token.state(T0 + 3580, leeway) is TokenState.EXPIRED
    assert token.state(T0 + 3600, leeway) is TokenState.EXPIRED
    assert token.stale_at(leeway) == T0 + 3540
    assert token.expired_at(leeway) == pytest.approx(T0 + 3600 - 60 * EXPIRY_FRACTION)


@pytest.mark.parametrize(
    ("lifetime", "stale_after", "expired_after"),
    [
        # the margin is capped at a quarter of the lifetime, whatever the leeway
        (5.0, 3.75, 5.0 - 1.25 / 3),
        (30.0, 22.5, 27.5),
    ],
)
def test_short_tokens_cap_the_leeway_and_stay_fresh_for_most_of_their_life(
    lifetime, stale_after, expired_after
):
    token = issued(lifetime)
    for leeway in (DEFAULT_LEEWAY, 300.0, 3600.0):
        assert token.state(T0, leeway) is TokenState.FRESH
        assert token.state(T0 + stale_after - 0.001, leeway) is TokenState.FRESH
        assert token.state(T0 + stale_after, leeway) is TokenState.STALE
        assert token.state(T0 + expired_after - 0.001, leeway) is TokenState.STALE
        assert token.state(T0 + expired_after, leeway) is TokenState.EXPIRED
    assert MAX_LEEWAY_FRACTION == 0.25


def test_leeway_zero_keeps_the_token_fresh_until_its_stated_expiry():
    token = issued(3600)
    assert token.state(T0 + 3599.999, 0.0) is TokenState.FRESH
    assert token.state(T0 + 3600, 0.0) is TokenState.EXPIRED
    assert token.stale_at(0.0) == token.expired_at(0.0) == T0 + 3600


def test_negative_leeway_counts_as_zero():
    token = issued(3600)
    assert token.stale_at(-100.0) == T0 + 3600


def test_leeway_smaller_than_the_cap_is_used_as_is():
    token = issued(3600)
    assert token.stale_at(10.0) == T0 + 3590


# -- serialisation and display ---------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        issued(3600, scope="read write"),
        issued(None),
        issued(0, token_type="bearer", scope=""),
    ],
)
def test_to_dict_from_dict_round_trip(token):
    data = json.loads(json.dumps(token.to_dict()))
    again = Token.from_dict(data)
    assert again == token
    assert again.access_token == token.access_token
    assert again.expires_at == token.expires_at
    assert again.scope == token.scope
    assert again.fingerprint == token.fingerprint


def test_from_dict_fills_token_type_and_accepts_numeric_strings():
    token = Token.from_dict({"access_token": "abc", "issued_at": "10", "expires_at": "70"})
    assert (token.issued_at, token.expires_at, token.token_type) == (10.0, 70.0, "bearer")


@pytest.mark.parametrize(
    "data",
    [
        {"access_token": "", "issued_at": 0},
        {"access_token": 42, "issued_at": 0},
        {"access_token": "abc", "issued_at": "yesterday"},
    ],
)
def test_from_dict_rejects_foreign_data_with_value_error(data):
    with pytest.raises(ValueError, match=r"access_token|issued_at"):
        Token.from_dict(data)


NON_FINITE = [float("nan"), float("inf"), float("-inf"), "NaN", "inf", "-Infinity", 10**400]
NON_FINITE_IDS = ["nan", "inf", "-inf", "'NaN'", "'inf'", "'-Infinity'", "10**400"]


@pytest.mark.parametrize("value", NON_FINITE, ids=NON_FINITE_IDS)
@pytest.mark.parametrize("field_name", ["issued_at", "expires_at"])
def test_from_dict_rejects_non_finite_times_as_foreign_data(field_name, value):
    """A NaN or infinite expiry would keep a planted token FRESH forever."""
    data = {"access_token": "abc", "issued_at": 10.0, "expires_at": 70.0, field_name: value}
    with pytest.raises(ValueError, match=field_name):
        Token.from_dict(data)


def test_from_dict_rejects_non_finite_times_read_from_json():
    for literal in ("NaN", "Infinity", "-Infinity", "9" * 400):
        text = f'{{"access_token": "abc", "issued_at": 0, "expires_at": {literal}}}'
        with pytest.raises(ValueError, match="expires_at"):
            Token.from_dict(json.loads(text))


def test_from_dict_without_issued_at_is_a_lookup_error():
    with pytest.raises(KeyError):
        Token.from_dict({"access_token": "abc"})


def test_repr_and_str_never_show_the_token():
    token = issued(3600, scope="read")
    for text in (repr(token), str(token), f"{token}", f"{token!r}"):
        assert SECRET_TOKEN not in text
        assert "must-never-be-shown" not in text
    assert token.fingerprint in repr(token)


def test_the_dataclass_repr_leaves_the_access_token_out():
    token = issued(3600)
    [access] = [f for f in dataclasses.fields(token) if f.name == "access_token"]
    assert access.repr is False
    assert repr(token).startswith("Token(issued_at=")
    assert f"fingerprint={token.fingerprint!r}" in repr(token)


def test_fingerprint_is_short_stable_and_not_the_token():
    assert fingerprint(SECRET_TOKEN) == fingerprint(SECRET_TOKEN)
    assert len(fingerprint(SECRET_TOKEN)) == 8
    assert fingerprint(SECRET_TOKEN) not in SECRET_TOKEN
    assert fingerprint("a") != fingerprint("b")


def test_token_is_immutable():
    token = issued(3600)
    with pytest.raises(AttributeError):
        token.expires_at = 0.0  # type: ignore[misc]


@pytest.mark.parametrize("value", ["tok\r\nX-Injected: 1", "tok en", "tok€", "", "tok\x00"])
def test_a_token_that_cannot_go_in_a_header_cannot_exist(value):
    """Whatever the source (a file, Redis, a store of one's own), such a value never becomes
    a Token: http.client would refuse the header and quote it whole in its error."""
    with pytest.raises(ValueError, match="HTTP header") as info:
        Token.issued(value, issued_at=0.0, expires_in=60)
    assert value not in str(info.value) or not value
    with pytest.raises(ValueError, match="access_token must be a non-empty string"):
        Token.from_dict({"access_token": value, "issued_at": 0.0, "expires_at": 60.0})
