"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class FooledError(Exception):
    """Base class of every error caused by user input (config, paths, data, checkpoints)."""


class ConfigError(FooledError, ValueError):
    """A config file or override is invalid: unknown key, wrong type, value out of range."""


class DataError(FooledError):
    """A dataset is missing or malformed."""


class CheckpointError(FooledError):
    """A checkpoint cannot be used (wrong config, corrupt file)."""


class ModelError(FooledError, ValueError):
    """A model is asked for something it cannot do: an unknown name, inputs of the wrong shape."""


def suggest(name: str, choices, *, prefix: str = "", cutoff: float = 0.6, list_all: bool = False) -> str:
    """The end of an 'unknown name' message: "; did you mean 'x'?" for a close match, else (or with list_all, also) the choices."""
    import difflib

    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=cutoff)
    listed = f"; expected one of {', '.join(choices)}"
    if not close:
        return listed
    return (listed if list_all else "") + f"; did you mean '{prefix}{close[0]}'?"
