"""Exceptions for mistakes a user can fix.

Library code raises :class:`UserError` with a one-line message that names what is wrong and how
to fix it; the CLI prints that line (no traceback) and exits with status 2. Anything else is a
bug and keeps its traceback.

:class:`UserError` is a :class:`ValueError`: a library caller who catches ``ValueError`` around a call (Python's
word for a bad argument value) catches every refusal of this package too. Code here that turns a library's own
``ValueError`` into a message of its own lets a :class:`UserError` raised under it pass unchanged (it already
names the problem and its fix).

:class:`ConfigError` is the typed form for a bad value of a configuration field: the library
names the *field* (``samples``), and whoever shows the message names it the way the user gave it
— the CLI as its flag (``--samples``), the Python API as the field.
"""

from __future__ import annotations

#: every character :meth:`str.splitlines` breaks a line at, as the escape that shows it in one line
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(text: str) -> str:
    """``text`` with its line breaks written as escapes (``\\n``): a path or value holding a newline, or a library's
    multi-line words quoted in a message, printed a refusal over several lines (battery 19)."""
    return text.translate(_LINE_BREAKS)


def shown(value: object) -> str:
    """``value`` as a refusal quotes it: its ``repr`` cut to 60 characters, an integer of 15 digits or more by its
    number of digits (counted without ``str``, which refuses integers past 4,300 digits). The one way a message
    shows a value it was given: a 5,000-digit length or a megabyte of text was echoed whole (battery 19)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        n = abs(value)
        digits = len(str(n)) if n.bit_length() < 10_000 else int(n.bit_length() * 0.30102999566398120) + 1
        return f"an integer of {digits:,} digits" if digits < 10_000 else f"an integer of about {digits:,} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class UserError(ValueError):
    """A bad input, file or flag. The message is shown to the user as one line (line breaks in it escaped)."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (one_line(args[0]), *args[1:])
        super().__init__(*args)

    #: under ``accelerate launch`` every process runs the same checks, so the CLI tells a refusal once per
    #: machine; an error that is one process's own (:class:`PeerLost`) is told by each process that meets it
    every_process = False


class PeerLost(UserError):
    """A process of an ``accelerate launch`` group lost the connection to another one (killed or crashed): the
    survivor says so in one line, since the process that stopped cannot."""

    every_process = True


class ConfigError(UserError):
    """A bad value of configuration field(s).

    ``template`` holds ``{name}`` (or ``{name0}``, ``{name1}`` … for several fields) where the field
    is mentioned; ``str(err)`` fills in the field names, :meth:`render` any other spelling.
    """

    def __init__(self, fields: str | tuple[str, ...], template: str) -> None:
        self.fields = (fields,) if isinstance(fields, str) else tuple(fields)
        self.template = template
        super().__init__(self.render(lambda f: f))

    def render(self, spell) -> str:
        """The message with each field written as ``spell(field)`` (e.g. its command-line flag).

        Plain substitution, not ``str.format``: a user's value quoted in the message may hold braces."""
        text = self.template
        for i, f in reversed(list(enumerate(self.fields))):
            text = text.replace(f"{{name{i}}}", str(spell(f)))
        return one_line(text.replace("{name}", str(spell(self.fields[0]))))
