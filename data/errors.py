"""The one exception type that reaches the user as a single line."""


class UserError(Exception):
    """Bad input the user can fix: the CLI prints ``error: <message>`` and exits 2.

    Raise it at the boundary (file reading, option checking, backbone lookup)
    with a message that says what is wrong and how to fix it, on one line.
    """
