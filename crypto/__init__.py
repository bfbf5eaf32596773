"""Pure cryptography: KDF, key files, AEAD envelope, keyed ids. Imports neither `agent` nor `backends`."""
