"""Bundle signatures: an HMAC-SHA256 of a bundle's manifest.json with a key only its owners hold.

The manifest holds the sha256 of every other file, so a signature over its bytes covers the whole
bundle. HMAC is a shared secret: whoever can verify a bundle can also sign one (docs/inference.md,
"Trust"). The key comes from ``MLFACTORY_BUNDLE_KEY`` (the key itself) or ``MLFACTORY_BUNDLE_KEY_FILE``
(a file holding it); only a hash prefix of it (:func:`key_id`) is ever written down.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import warnings
from pathlib import Path
from typing import Any

from mlfactory.atomic import write_text
from mlfactory.errors import BundleError

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "signature.json"
SIGNATURE_ALGORITHM = "hmac-sha256"
KEY_ENV = "MLFACTORY_BUNDLE_KEY"  # the key itself (its UTF-8 bytes)
KEY_FILE_ENV = "MLFACTORY_BUNDLE_KEY_FILE"  # a file holding the key (surrounding whitespace ignored)
MIN_KEY_BYTES = 16
KEY_HINT = (
    f"set {KEY_ENV} to the key, or {KEY_FILE_ENV} to a file holding it (make one with "
    "`python -c \"import secrets; print(secrets.token_hex(32))\"`)"
)


def signing_key() -> bytes | None:
    """The bundle key from ``MLFACTORY_BUNDLE_KEY`` or the file ``MLFACTORY_BUNDLE_KEY_FILE`` names; None if neither is set.

    Raises:
        BundleError: both are set, the key file cannot be read, or the key is shorter than 16 bytes.
    """
    text, file = os.environ.get(KEY_ENV) or None, os.environ.get(KEY_FILE_ENV) or None
    if text is not None and file is not None:
        raise BundleError(f"both {KEY_ENV} and {KEY_FILE_ENV} are set; set only one, so it is clear which key signs bundles")
    if file is not None:
        try:
            key = Path(file).expanduser().read_bytes().strip()
        except OSError as err:
            raise BundleError(f"cannot read the bundle key file {file} ({KEY_FILE_ENV}): {err.strerror or err}") from None
        where = f"the key in {file} ({KEY_FILE_ENV})"
    elif text is not None:
        key, where = text.encode("utf-8"), f"the key in {KEY_ENV}"
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise BundleError(f"{where} has {len(key)} bytes; a bundle key needs at least {MIN_KEY_BYTES}. {KEY_HINT}")
    return key


def key_id(key: bytes) -> str:
    """A short public name of ``key`` (a hash prefix; the key cannot be recovered from it)."""
    return hashlib.sha256(b"mlfactory bundle key id\0" + key).hexdigest()[:16]


def signature_of(key: bytes, manifest_bytes: bytes) -> str:
    return hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()


def write_signature(directory: Path, key: bytes) -> None:
    """``signature.json``: the HMAC-SHA256 of manifest.json's bytes (which hold every other file's sha256)."""
    payload = {
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": key_id(key),
        "signed_file": MANIFEST_FILE,
        "signature": signature_of(key, (directory / MANIFEST_FILE).read_bytes()),
    }
    write_text(directory / SIGNATURE_FILE, json.dumps(payload, indent=2) + "\n")


def verify_signature(directory: Path, manifest_bytes: bytes, required: bool) -> str | None:
    """The verified signer's key id, or None for a bundle loaded unsigned (allowed only when not ``required``).

    A signature that does not verify is refused whether or not one is required; a signed bundle with no
    key configured here cannot be checked, and loads as an unsigned one would (with a warning).
    """
    key = signing_key()
    path = directory / SIGNATURE_FILE
    if not path.is_file():
        if required:
            raise BundleError(
                f"{directory} is not signed, and a signature is required; load only bundles signed with your key "
                "(`mlfactory sign --bundle DIR` signs a bundle you trust)"
            )
        if key is not None:
            warnings.warn(f"{directory} is not signed; loading it unverified (--require-signature refuses unsigned bundles)",
                          stacklevel=3)
        return None
    if key is None:
        if required:
            raise BundleError(f"{directory} is signed, but no bundle key is configured to verify it; {KEY_HINT}")
        warnings.warn(f"{directory} is signed, but no bundle key is configured; its signature is not checked "
                      f"({KEY_ENV} or {KEY_FILE_ENV} sets one)", stacklevel=3)
        return None
    signature = _read_signature(path)
    if signature.get("algorithm") != SIGNATURE_ALGORITHM:
        raise BundleError(
            f"{path}: signature algorithm {signature.get('algorithm')!r} is not {SIGNATURE_ALGORITHM!r}; "
            "the bundle was not signed by mlfactory. Refused."
        )
    if signature.get("key_id") != key_id(key):
        raise BundleError(
            f"{path}: the bundle is signed with another key (key id {str(signature.get('key_id'))[:16]}; the configured "
            f"key's id is {key_id(key)}), so it cannot be verified. Refused: configure the key it was signed with, "
            "or re-sign a copy you trust"
        )
    if not hmac.compare_digest(signature_of(key, manifest_bytes), str(signature.get("signature"))):
        raise BundleError(
            f"{path}: the signature does not verify: {MANIFEST_FILE} (and so the files it lists) changed after the "
            "bundle was signed. Refused: use an intact copy of the bundle"
        )
    return key_id(key)


def _read_signature(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BundleError(f"cannot read {path} as JSON ({err}); the bundle's signature is damaged. Refused.") from None
    if not isinstance(payload, dict):
        raise BundleError(f"{path} is not a JSON object; the bundle's signature is damaged. Refused.")
    return payload
