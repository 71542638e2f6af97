"""
Option errors of the twistd plugin as one line that names the option.
"""

from __future__ import annotations

from typing import Any

from twisted.python import usage

_KINDS = {float: "a number", int: "a whole number"}


class _NamedCoercion(usage.CoerceParameter):
    """
    Converts an option's value, and says which option and what it takes
    when the value does not convert (twisted's message names neither).
    """

    def dispatch(self, parameterName: str, value: str | None) -> None:
        try:
            super().dispatch(parameterName, value)
        except usage.UsageError:
            if value is None:
                raise
            kind = _KINDS.get(self.coerce, "another value")
            raise usage.UsageError(
                f"--{parameterName} takes {kind}, not {value!r}"
            ) from None


def namedCoercions(options: usage.Options) -> None:
    """
    Make the typed parameters of C{options} name themselves in their
    errors.
    """
    dispatch: dict[str, Any] = options._dispatch
    for name, handler in dispatch.items():
        if type(handler) is usage.CoerceParameter:
            dispatch[name] = _NamedCoercion(options, handler.coerce)


def oneLine(error: BaseException) -> str:
    """
    The first line of an error's message (a policy's parse error adds the
    expression and a pointer below, without which its first line ends with
    a colon); a file error names the file.
    """
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror.lower()}"
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return lines[0].rstrip(":") if len(lines) > 1 else lines[0]
