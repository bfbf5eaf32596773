"""Crypto failures: callers map these to user-facing messages; none carries secret material."""


class CryptoError(Exception):
    """Base of crypto failures."""


class AuthenticationFailed(CryptoError):
    """Ciphertext, its associated data or its key did not verify: tampering, corruption or wrong key."""


class KeyNotUnwrapped(CryptoError):
    """This key file does not open with the passphrase given (or belongs to another repository).

    Not "wrong passphrase": another key file of the repository may open; the repository layer
    decides that after trying them all (agent.errors.WrongPassphrase)."""


class KeyFileDamaged(CryptoError):
    """A key file's integrity digest does not match its other fields: it changed after it was written
    (a flipped bit on the storage), so its passphrase cannot be told right or wrong."""


class UnsupportedSuite(CryptoError):
    """A stored object names a cipher suite or KDF this version does not know."""
