"""Parsers for list-valued flags shared by several commands (argparse only, no heavy imports)."""

from __future__ import annotations

from longrope.errors import UserError


def parse_lengths(text: str, flag: str = "--lengths") -> list[int]:
    """``"2048,4k,8K"`` → ``[2048, 4096, 8192]`` (sorted, unique); anything else is a one-line error."""
    out = []
    for part in [t.strip() for t in str(text).split(",") if t.strip()]:
        mult = 1
        if part[-1] in "kK":
            part, mult = part[:-1], 1024
        try:
            n = int(part) * mult
        except ValueError:
            raise UserError(f"{flag} must be positive integers (e.g. 2048,4k), got {text!r}") from None
        if n < 2:
            raise UserError(f"{flag} must be positive integers of at least 2 tokens, got {n}")
        out.append(n)
    if not out:
        raise UserError(f"{flag} is empty; give e.g. {flag} 2048,4096")
    return sorted(set(out))


def parse_length(text: str, flag: str) -> int:
    """One length as ``--lengths`` spells them (``16384``, ``16k``); anything else is a one-line error."""
    if "," in str(text):
        raise UserError(f"{flag} takes one length (e.g. 16k), got {text!r}")
    return parse_lengths(text, flag)[0]
