"""Who is asking the codec server: the single sign-on access token the Temporal UI passes
(its `passAccessToken` option sends `Authorization: Bearer <the user's access token>`),
verified as a JWT with PyJWT against the identity provider's keys, and whether its claims
entitle the user to residents' personal data.

A token is accepted only when it is signed by a key of the configured JWKS URL (or the
configured public key file) with one of the allowed asymmetric algorithms, names the
configured issuer and audience, and has not expired (30 s of clock leeway).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

# Asymmetric algorithms only: a shared secret (HS256…) would let whoever verifies tokens
# also mint them.
ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
LEEWAY_SECONDS = 30
JWKS_LIFESPAN_SECONDS = 300
JWKS_TIMEOUT_SECONDS = 5


class TokenRefused(Exception):
    """The request carries no token the codec server accepts; the message says why (no
    claim values, nothing personal)."""


@dataclasses.dataclass(frozen=True)
class Identity:
    subject: str
    entitled: bool  # may see residents' personal data in clear


def claim_values(claims: Mapping[str, Any], path: str) -> list[str]:
    """The values of a claim named by a dotted path (`roles`, `realm_access.roles`): a
    list's items, or a string's space-separated words (as in `scope`)."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def entitled(claims: Mapping[str, Any], claim: str, value: str) -> bool:
    """Whether the token's claim holds the value that entitles to personal data."""
    return value in claim_values(claims, claim)


class TokenVerifier:
    """Verifies bearer tokens for one issuer and audience, with the keys of a JWKS URL
    (fetched and cached by PyJWT's PyJWKClient, in a thread: it blocks) or of a PEM file."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: list[str],
        pii_claim: str,
        pii_value: str,
        jwks_url: str | None = None,
        public_key_file: Path | None = None,
    ) -> None:
        if (jwks_url is None) == (public_key_file is None):
            raise ValueError("give a JWKS URL or a public key file, not both or neither")
        unknown = sorted(set(algorithms) - ALGORITHMS)
        if unknown or not algorithms:
            raise ValueError(f"algorithms must be among {sorted(ALGORITHMS)}, not {unknown}")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self.pii_claim = pii_claim
        self.pii_value = pii_value
        self._jwks = (
            jwt.PyJWKClient(
                jwks_url,
                cache_keys=False,
                lifespan=JWKS_LIFESPAN_SECONDS,
                timeout=JWKS_TIMEOUT_SECONDS,
            )
            if jwks_url is not None
            else None
        )
        self._key: Any = None
        if public_key_file is not None:
            self._key = load_pem_public_key(public_key_file.read_bytes())

    async def identify(self, authorization: str | None) -> Identity:
        """The user behind an `Authorization` header, or TokenRefused."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRefused("no bearer token")
        token = token.strip()
        try:
            key: Any = self._key
            if self._jwks is not None:
                key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("token not for this audience") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("token from another issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("token signature does not verify") from None
        except jwt.PyJWKClientConnectionError:
            raise TokenRefused("identity provider's keys unavailable") from None
        except jwt.PyJWKClientError:
            raise TokenRefused("token signed by no key of the identity provider") from None
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"token invalid: {type(exc).__name__}") from None
        return Identity(
            subject=str(claims.get("sub", "")),
            entitled=entitled(claims, self.pii_claim, self.pii_value),
        )
