"""Typer commands whose options are one dataclass instead of a long parameter list.

A command with many options declares them as the fields of a keyword-only dataclass, each
``Annotated[type, typer.Option(...)]`` (or ``typer.Argument``) with its default, and its
function takes one typed argument, the options. :func:`with_options` gives typer what it
expects, a callable with one keyword parameter per field, that builds the options and calls
the function with them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Generic, TypeVar

OptionsT = TypeVar("OptionsT")


class OptionsCommand(Generic[OptionsT]):
    """The callable typer sees: the option fields as its signature, the function's name and
    docstring as the command's."""

    def __init__(self, options: Callable[..., OptionsT], run: Callable[[OptionsT], None]) -> None:
        self._options = options
        self._run = run
        # typer reads parameters from the signature and help from the docstring
        signature = inspect.signature(options, eval_str=True)
        self.__signature__ = signature.replace(return_annotation=None)
        self.__name__ = run.__name__
        self.__doc__ = run.__doc__
        self.__annotations__: dict[str, object] = {}  # typer's get_type_hints needs one

    def __call__(self, **values: object) -> None:
        self._run(self._options(**values))


def with_options(
    options: Callable[..., OptionsT],
) -> Callable[[Callable[[OptionsT], None]], OptionsCommand[OptionsT]]:
    """``@app.command() @with_options(VerifyOptions) def verify(opts: VerifyOptions)``."""

    def wrap(run: Callable[[OptionsT], None]) -> OptionsCommand[OptionsT]:
        return OptionsCommand(options, run)

    return wrap
