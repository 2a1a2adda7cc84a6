"""Errors raised by object-store access, independent of the backend that raised them."""


class StoreError(Exception):
    """Base class: the object store could not do what was asked."""


class UnsupportedUri(StoreError):
    """The URI's scheme (or the operation on it) is not supported."""


class ObjectNotFound(StoreError):
    """The object (or its bucket / directory) does not exist."""


class StoreUnavailable(StoreError):
    """The store could not be reached, refused the credentials, or failed mid-transfer."""
