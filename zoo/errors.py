"""The one error type the command line prints as a single line, without a traceback."""


class ZooError(Exception):
    """A problem with the user's input: a config value, a name, a plugin, a file, a run id.

    The message names what was wrong and what to do, on one line.
    """


class ConfigError(ZooError):
    """A config value is invalid. Raised before any run is created."""

    def __init__(self, key: str, value, expected: str):
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key}={value!r} is invalid: expected {expected}")
