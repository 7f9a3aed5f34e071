"""The errors scanner raises on purpose, each printed by the CLI as one line."""


class ScannerError(Exception):
    """A scan cannot go on: the CLI prints the message on one line and exits with code 1."""
    exit_code = 1


class InputError(ScannerError, ValueError):
    """Bad user input, found before any packet leaves: one line, exit code 2."""
    exit_code = 2


class EnvironmentFault(ScannerError):
    """The machine cannot do what was asked (no route, capture failure, missing tool): exit 1."""
    exit_code = 1
