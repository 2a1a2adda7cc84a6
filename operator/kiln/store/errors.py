"""Errors raised by object-store access, independent of the backend that raised them."""


class StoreError(Exception):
    """Base class: the object store could not do what was asked."""


class UnsupportedUri(StoreError):
    """The URI's scheme (or the operation on it) is not supported."""


class ObjectNotFound(StoreError):
    """The object (or its bucket / directory) does not exist."""


class StoreUnavailable(StoreError):
    """The store could not be reached, refused the credentials, or failed mid-transfer."""


class IntegrityError(StoreError):
    """The object's bytes do not have the sha256 they were recorded with."""

    reason = "IntegrityError"

    def __init__(self, uri: str, expected: str, actual: str) -> None:
        super().__init__(f"{uri}: sha256 {actual} does not match the recorded {expected}")
        self.uri = uri
        self.expected = expected
        self.actual = actual


class InvalidObject(StoreError):
    """The object was read and verified but is not the document it should be."""
