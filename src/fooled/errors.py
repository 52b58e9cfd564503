"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class FooledError(Exception):
    """Base class of every error caused by user input (config, paths, data, checkpoints)."""


class ConfigError(FooledError, ValueError):
    """A config file or override is invalid: unknown key, wrong type, value out of range."""


class DataError(FooledError):
    """A dataset is missing or malformed."""


class CheckpointError(FooledError):
    """A checkpoint cannot be used (wrong config, corrupt file)."""
