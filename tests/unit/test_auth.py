"""JWT verification (SPEC §4): `sub` is the user; anything doubtful is InvalidToken, never more."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import importlib.util
import json
import time
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presto_deck.api.auth import bearer_token
from presto_deck.infrastructure.tokens import InvalidToken, TokenVerifier
from presto_deck.settings import Settings, load_settings

SECRET = "unit-test-secret-" + "x" * 64  # long enough for HS512 too
_FAKE_PUBLIC_KEY = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "-----END PUBLIC KEY-----\n"
)


def _settings(**overrides: Any) -> Settings:
    environ = {"PRESTO_DATABASE_URL": "postgresql://h/db", "PRESTO_REDIS_URL": "redis://h/0"}
    return load_settings(environ=environ, **{"jwt_secret": SECRET, **overrides})


def _verifier(**overrides: Any) -> TokenVerifier:
    return TokenVerifier(_settings(**overrides))


def _claims(**claims: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 600, **claims}


def _token(claims: dict[str, Any] | None = None, key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(_claims() if claims is None else claims, key, algorithm=alg)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A token built without PyJWT, which refuses to sign the tokens an attacker would send."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = (
        b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{_b64(signature)}"


# -- accepted -------------------------------------------------------------------------------------


def test_a_valid_token_gives_its_subject() -> None:
    assert _verifier().verify(_token()) == "alice"


def test_a_hand_made_hs256_token_verifies_so_the_forgeries_below_are_real_tests() -> None:
    token = _hand_made({"alg": "HS256", "typ": "JWT"}, _claims(), SECRET.encode())

    assert _verifier().verify(token) == "alice"


def test_a_subject_of_255_characters_is_accepted() -> None:
    assert _verifier().verify(_token(_claims(sub="u" * 255))) == "u" * 255


def test_a_token_signed_with_another_configured_hmac_algorithm_is_accepted() -> None:
    verifier = _verifier(jwt_algorithms=["HS256", "HS512"])

    assert verifier.verify(_token(alg="HS512")) == "alice"


def test_the_configured_audience_and_issuer_are_accepted() -> None:
    verifier = _verifier(jwt_audience="presto-deck", jwt_issuer="https://auth.example.com/")
    token = _token(_claims(aud="presto-deck", iss="https://auth.example.com/"))

    assert verifier.verify(token) == "alice"


def test_a_token_with_an_audience_is_accepted_when_no_audience_is_configured() -> None:
    # SPEC §3: PRESTO_JWT_AUDIENCE defaults to "unchecked"; tokens from an identity provider
    # nearly always carry an `aud`, which must then be ignored, not rejected.
    assert _verifier().verify(_token(_claims(aud="some-api"))) == "alice"


def test_a_token_with_an_issuer_is_accepted_when_no_issuer_is_configured() -> None:
    assert _verifier().verify(_token(_claims(iss="https://elsewhere/"))) == "alice"


# -- refused --------------------------------------------------------------------------------------


def test_an_expired_token_is_invalid() -> None:
    token = _token(_claims(exp=int(time.time()) - 60))

    with pytest.raises(InvalidToken, match="expired"):
        _verifier().verify(token)


def test_a_token_signed_with_another_secret_is_invalid() -> None:
    with pytest.raises(InvalidToken):
        _verifier().verify(_token(key="another-secret-that-is-long-enough-for-hs256"))


def test_a_token_whose_claims_were_changed_after_signing_is_invalid() -> None:
    header, _, signature = _token().split(".")
    forged = _b64(json.dumps(_claims(sub="admin")).encode())

    with pytest.raises(InvalidToken):
        _verifier().verify(f"{header}.{forged}.{signature}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
@pytest.mark.parametrize("signature", [None, b"x"], ids=["unsigned", "junk signature"])
def test_an_alg_none_token_is_invalid(alg: str, signature: bytes | None) -> None:
    token = _hand_made({"alg": alg, "typ": "JWT"}, _claims(), None)
    if signature is not None:
        token += _b64(signature)

    with pytest.raises(InvalidToken):
        _verifier().verify(token)


def test_a_token_without_an_algorithm_is_invalid() -> None:
    with pytest.raises(InvalidToken):
        _verifier().verify(_hand_made({"typ": "JWT"}, _claims(), SECRET.encode()))


@pytest.mark.parametrize("missing", ["exp", "sub"])
def test_a_token_without_a_required_claim_is_invalid(missing: str) -> None:
    claims = _claims()
    del claims[missing]

    with pytest.raises(InvalidToken):
        _verifier().verify(_token(claims))


@pytest.mark.parametrize(
    "sub",
    [42, "", "u" * 256, None, ["alice"], {"id": "alice"}, True],
    ids=["int", "empty", "too long", "null", "list", "object", "bool"],
)
def test_a_subject_that_is_not_a_string_of_1_to_255_characters_is_invalid(sub: object) -> None:
    # Hand-made: PyJWT may refuse to encode some of these claims itself.
    token = _hand_made({"alg": "HS256", "typ": "JWT"}, _claims(sub=sub), SECRET.encode())

    with pytest.raises(InvalidToken):
        _verifier().verify(token)


@pytest.mark.parametrize(
    "sub", ["\ud800", "alice\udfff", "\udc00\ud800"], ids=["high", "low at the end", "reversed"]
)
def test_a_subject_holding_a_lone_surrogate_is_invalid(sub: str) -> None:
    # JSON escapes such as "\ud800" decode to lone surrogates, which no UTF-8 text can hold.
    with pytest.raises(InvalidToken):
        _verifier().verify(_token(_claims(sub=sub)))


def test_a_refusal_that_quotes_a_hostile_header_is_short_and_encodable() -> None:
    crit = ["\u00e9" * 400 + "\ud800", *(f"ext-{i}" for i in range(300))]
    token = jwt.encode(_claims(), SECRET, algorithm="HS256", headers={"crit": crit})

    with pytest.raises(InvalidToken) as refused:
        _verifier().verify(token)

    message = str(refused.value)
    assert "critical extension" in message
    assert len(message) <= 100
    message.encode("utf-8")  # raises if a lone surrogate got through


@pytest.mark.parametrize("exp", ["tomorrow", None, [1]], ids=["string", "null", "list"])
def test_a_token_whose_exp_is_not_a_number_is_invalid(exp: object) -> None:
    token = _hand_made({"alg": "HS256"}, _claims(exp=exp), SECRET.encode())

    with pytest.raises(InvalidToken):
        _verifier().verify(token)


def test_a_token_not_valid_yet_is_invalid() -> None:
    with pytest.raises(InvalidToken):
        _verifier().verify(_token(_claims(nbf=int(time.time()) + 3600)))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "a.b.c",
        "a.b",
        "....",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",
        "bm90IGpzb24.e30.c2ln",
        "WzFd.e30.c2ln",  # header is a JSON array
        "ImhpIg.e30.c2ln",  # header is a JSON string
        "토큰.토큰.토큰",
        "Bearer " + "x" * 50,
    ],
)
def test_garbage_is_an_invalid_token(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        _verifier().verify(garbage)


@pytest.mark.parametrize(
    ("claims", "configured"),
    [
        ({"aud": "someone-else"}, {"jwt_audience": "presto-deck"}),
        ({}, {"jwt_audience": "presto-deck"}),
        ({"iss": "https://evil.example/"}, {"jwt_issuer": "https://auth.example.com/"}),
        ({}, {"jwt_issuer": "https://auth.example.com/"}),
    ],
    ids=["wrong audience", "no audience", "wrong issuer", "no issuer"],
)
def test_a_token_failing_a_configured_claim_check_is_invalid(
    claims: dict[str, Any], configured: dict[str, str]
) -> None:
    with pytest.raises(InvalidToken):
        _verifier(**configured).verify(_token(_claims(**claims)))


def test_a_token_with_an_algorithm_not_in_the_list_is_invalid() -> None:
    with pytest.raises(InvalidToken, match="algorithm"):
        _verifier().verify(_token(alg="HS512"))


def test_an_hmac_token_is_invalid_when_only_rs256_is_configured() -> None:
    verifier = _verifier(jwt_algorithms=["RS256"], jwt_public_key=_FAKE_PUBLIC_KEY)

    with pytest.raises(InvalidToken):
        verifier.verify(_token())


def test_an_hmac_token_signed_with_the_public_key_is_invalid() -> None:
    # Key confusion: an attacker who knows the public key signs an HS256 token with it.
    verifier = _verifier(
        jwt_secret=None, jwt_algorithms=["HS256", "RS256"], jwt_public_key=_FAKE_PUBLIC_KEY
    )
    token = _hand_made({"alg": "HS256"}, _claims(), _FAKE_PUBLIC_KEY.encode())

    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_an_rs256_token_is_invalid_when_no_public_key_is_configured() -> None:
    verifier = _verifier(jwt_algorithms=["HS256", "RS256"])
    token = _hand_made({"alg": "RS256"}, _claims(), SECRET.encode())

    with pytest.raises(InvalidToken):
        verifier.verify(token)


_tokenish = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.one_of(
            st.binary(max_size=60).map(_b64),
            st.dictionaries(
                st.sampled_from(["alg", "typ", "kid", "sub", "exp", "aud", "crit"]),
                st.one_of(
                    st.none(), st.booleans(), st.integers(), st.text(max_size=10), st.just("HS256")
                ),
                max_size=4,
            ).map(lambda value: _b64(json.dumps(value).encode())),
        ),
        min_size=1,
        max_size=4,
    ).map(".".join),
)


@settings(max_examples=300, deadline=None)
@given(_tokenish)
def test_verify_raises_nothing_but_invalid_token_for_any_forged_input(token: str) -> None:
    try:
        subject = _verifier().verify(token)
    except InvalidToken:
        return
    pytest.fail(f"a forged token was accepted as {subject!r}")


# -- RS256 with a real key pair -------------------------------------------------------------------

_HAS_CRYPTOGRAPHY = importlib.util.find_spec("cryptography") is not None


@pytest.mark.skipif(
    not _HAS_CRYPTOGRAPHY,
    reason="`cryptography` is not installed (PyJWT needs it for RS256; not a project dependency)",
)
def test_an_rs256_token_verifies_against_the_configured_public_key() -> None:
    serialization: Any = importlib.import_module("cryptography.hazmat.primitives.serialization")
    rsa: Any = importlib.import_module("cryptography.hazmat.primitives.asymmetric.rsa")

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = _verifier(jwt_secret=None, jwt_algorithms=["RS256"], jwt_public_key=public_pem)

    assert verifier.verify(jwt.encode(_claims(), private, algorithm="RS256")) == "alice"
    with pytest.raises(InvalidToken):
        verifier.verify(jwt.encode(_claims(), other, algorithm="RS256"))
    with pytest.raises(InvalidToken):  # key confusion: HS256 signed with the public PEM
        verifier.verify(_hand_made({"alg": "HS256"}, _claims(), public_pem.encode()))


# -- minting --------------------------------------------------------------------------------------


def test_a_minted_token_verifies_as_its_user() -> None:
    verifier = _verifier()

    assert verifier.verify(verifier.mint("bob", 60)) == "bob"


def test_a_minted_token_carries_the_configured_audience_and_issuer_and_verifies() -> None:
    verifier = _verifier(jwt_audience="presto-deck", jwt_issuer="https://auth.example.com/")

    token = verifier.mint("bob", 120)

    assert verifier.verify(token) == "bob"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["aud"], claims["iss"]) == ("presto-deck", "https://auth.example.com/")
    assert claims["exp"] - claims["iat"] == 120


def test_a_minted_token_is_refused_by_a_verifier_with_another_audience() -> None:
    token = _verifier(jwt_audience="presto-deck").mint("bob", 60)

    with pytest.raises(InvalidToken):
        _verifier(jwt_audience="another-service").verify(token)


def test_a_minted_token_with_a_negative_ttl_is_already_expired() -> None:
    verifier = _verifier()

    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(verifier.mint("bob", -10))


def test_minting_uses_the_first_configured_hmac_algorithm() -> None:
    verifier = _verifier(jwt_algorithms=["RS256", "HS512"], jwt_public_key=_FAKE_PUBLIC_KEY)

    token = verifier.mint("bob", 60)

    assert jwt.get_unverified_header(token)["alg"] == "HS512"
    assert verifier.verify(token) == "bob"


def test_minting_without_a_secret_is_refused() -> None:
    with pytest.raises(InvalidToken, match="PRESTO_JWT_SECRET"):
        _verifier(jwt_secret=None).mint("bob", 60)


# -- the Authorization header ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        (None, None),
        ("", None),
        ("   ", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer    ", None),
        ("Basic dXNlcjpwdw==", None),
        ("Token abc", None),
        ("Bearerabc", None),
        ("Bearer abc def", None),
        ("abc.def.ghi", None),
    ],
)
def test_bearer_token_takes_the_token_of_a_bearer_header_only(
    header: str | None, token: str | None
) -> None:
    assert bearer_token(header) == token
