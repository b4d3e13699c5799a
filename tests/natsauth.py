"""NATS decentralised auth (operator mode) for tests, minted in Python.

There is no nsc tool in the test environment, so the operator, accounts and users and their
JWTs are made here with the nkeys package, the way nats-io/jwt v2 encodes them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import nkeys

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
NO_LIMIT = -1


def _b64(data: bytes) -> str:
    """JWT segments are base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_keypair(prefix: int) -> nkeys.KeyPair:
    """A fresh NKey pair of one kind (operator, account or user) from 32 random bytes."""
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def public_key(keypair: nkeys.KeyPair) -> str:
    return bytes(keypair.public_key).decode()


def seed_of(keypair: nkeys.KeyPair) -> str:
    return bytes(keypair.seed).decode()


def encode_jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, Any]) -> str:
    """Sign claims for `subject` with the issuer's key, as nats-server expects.

    jti is the unpadded base32 of the SHA-512/256 of the claims without jti (what nats-io/jwt
    does); the server only needs it to be present and unique.
    """
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": public_key(issuer),
                              "name": name, "sub": subject, "nats": {**nats, "version": 2}}
    digest = hashlib.new("sha512_256", json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    signing_input = _b64(json.dumps(HEADER).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = issuer.sign(signing_input.encode())
    return signing_input + "." + _b64(signature)


def account_jwt(operator: nkeys.KeyPair, account: nkeys.KeyPair, name: str) -> str:
    """An account with no limits; without explicit -1 limits an account may do nothing."""
    limits = {"subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT, "imports": NO_LIMIT,
              "exports": NO_LIMIT, "wildcards": True, "conn": NO_LIMIT, "leaf": NO_LIMIT}
    return encode_jwt(operator, public_key(account), name, {
        "type": "account", "limits": limits,
        "default_permissions": {"pub": {}, "sub": {}},
    })


def user_jwt(account: nkeys.KeyPair, user: nkeys.KeyPair, name: str) -> str:
    """A user signed directly by its account key, so no issuer_account is needed."""
    return encode_jwt(account, public_key(user), name, {
        "type": "user", "pub": {}, "sub": {},
        "subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT,
    })


def make_operator_setup(tmpdir: Path | str) -> dict[str, Any]:
    """Mint an operator, a system account, an application account with two users, and write
    an operator-mode nats-server config with a MEMORY resolver preloaded with both accounts.

    Returns config (path), jwt and seed of the user, seed_file (a file holding that seed), and
    other_seed: a valid user seed of the same account that does not match the JWT.
    """
    tmp = Path(tmpdir)
    tmp.mkdir(parents=True, exist_ok=True)
    operator = new_keypair(nkeys.PREFIX_BYTE_OPERATOR)
    system = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    account = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user = new_keypair(nkeys.PREFIX_BYTE_USER)
    other_user = new_keypair(nkeys.PREFIX_BYTE_USER)

    operator_token = encode_jwt(operator, public_key(operator), "cozemq-test-operator", {
        "type": "operator", "system_account": public_key(system),
    })
    accounts = {
        public_key(system): account_jwt(operator, system, "SYS"),
        public_key(account): account_jwt(operator, account, "APP"),
    }
    operator_path = tmp / "operator.jwt"
    operator_path.write_text(operator_token)
    preload = "\n".join(f"  {key}: {token}" for key, token in accounts.items())
    config = tmp / "operator.conf"
    config.write_text(
        f"operator: {json.dumps(str(operator_path))}\n"
        f"system_account: {public_key(system)}\n"
        "resolver: MEMORY\n"
        f"resolver_preload: {{\n{preload}\n}}\n"
    )

    seed = seed_of(user)
    seed_file = tmp / "user.nk"
    seed_file.write_text(seed + "\n")
    seed_file.chmod(0o600)
    return {
        "config": config,
        "jwt": user_jwt(account, user, "cozemq-test-user"),
        "seed": seed,
        "seed_file": seed_file,
        "other_seed": seed_of(other_user),
        "account": public_key(account),
    }
