"""The one exception type for what the user can fix: its message says what is wrong and how to fix it."""


class DreamvidError(Exception):
    """A problem with the user's input or settings; the message says what to change."""

    exit_code = 2  # the command's exit status when this ends it
