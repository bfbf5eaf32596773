"""Crypto failures: callers map these to user-facing messages; none carries secret material."""


class CryptoError(Exception):
    """Base of crypto failures."""


class AuthenticationFailed(CryptoError):
    """Ciphertext, its associated data or its key did not verify: tampering, corruption or wrong key."""


class WrongPassphrase(CryptoError):
    """No key file could be opened with the passphrase given."""


class UnsupportedSuite(CryptoError):
    """A stored object names a cipher suite or KDF this version does not know."""
