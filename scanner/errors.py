class InputError(ValueError):
    """Bad user input: the CLI prints the message on one line and exits with code 2."""
