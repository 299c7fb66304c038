"""The one exception type for mistakes a user can fix.

Library code raises :class:`UserError` with a one-line message that names what is wrong and how
to fix it; the CLI prints that line (no traceback) and exits with status 2. Anything else is a
bug and keeps its traceback.
"""


class UserError(Exception):
    """A bad input, file or flag. The message is shown to the user as one line."""
