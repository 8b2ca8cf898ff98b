"""Errors that the CLI turns into exit code 2 with one line on stderr."""


class InputError(Exception):
    """Bad usage or bad input: the user can fix it. The message is one line, no traceback.

    Raised anywhere (also inside Dask tasks: it pickles) and caught by the CLI.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
