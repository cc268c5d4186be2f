"""Validation problems in plain words: "must be between 6 and 25", not a library's phrasing.

Operators read these next to the dashboard's field names, so each message says what the
field needs, never what was sent (an input is not echoed back). Bounds come from the model's
own constraints, so a message cannot disagree with the check that produced it.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]

_BY_TYPE = {
    "missing": "required",
    "extra_forbidden": "not a known field",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "string_unicode": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "none_required": "must be null",
}
_LENGTHS = {"too_short", "too_long", "string_too_short", "string_too_long"}
_BOUNDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _unwrapped(tp: Any) -> tuple[Any, list[Any]]:
    """``tp`` without ``Annotated`` and ``| None``, and the constraints ``Annotated`` carried."""
    meta: list[Any] = []
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp, *extra = get_args(tp)
            for item in extra:
                meta += item.metadata if isinstance(item, FieldInfo) else [item]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(tp) if a is not type(None)]
            if len(options) != 1:
                return tp, meta
            tp = options[0]
        else:
            return tp, meta


def _step(tp: Any, part: str | int) -> tuple[Any, list[Any]] | None:
    """The type one location part below ``tp`` and its constraints (None: not found)."""
    tp, _ = _unwrapped(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
        field = tp.model_fields.get(part)
        if field is None:
            return None
        inner, meta = _unwrapped(field.annotation)
        return inner, [*field.metadata, *meta]
    if get_origin(tp) is list and isinstance(part, int):
        return _unwrapped(get_args(tp)[0])
    return None


def _constraints(model: type[BaseModel], loc: Loc) -> list[Any]:
    """The constraints declared on the field at ``loc`` ([] if the path leaves the models)."""
    tp: Any = model
    meta: list[Any] = []
    for part in loc:
        found = _step(tp, part)
        if found is None:
            return []
        tp, meta = found
    return meta


def _bounds_message(constraints: Sequence[Any], ctx: dict[str, Any]) -> str:
    lo = next((c for c in constraints if isinstance(c, at.Ge | at.Gt)), None)
    hi = next((c for c in constraints if isinstance(c, at.Le | at.Lt)), None)
    if isinstance(lo, at.Ge) and isinstance(hi, at.Le):
        return f"must be between {lo.ge} and {hi.le}"
    parts = []
    if lo is not None:
        parts.append(f"at least {lo.ge}" if isinstance(lo, at.Ge) else f"above {lo.gt}")
    if hi is not None:
        parts.append(f"at most {hi.le}" if isinstance(hi, at.Le) else f"below {hi.lt}")
    if not parts:  # a bound the model does not declare: say the one pydantic checked
        words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
        parts = [f"{words[k]} {v}" for k, v in ctx.items() if k in words]
    return "must be " + " and ".join(parts)


def _length_message(kind: str, ctx: dict[str, Any]) -> str:
    unit = "characters" if kind.startswith("string") else "items"
    if kind.endswith("too_short"):
        return f"needs at least {ctx['min_length']} {unit}"
    return f"takes at most {ctx['max_length']} {unit}"


def plain_message(model: type[BaseModel], error: ErrorDetails) -> str:
    """``error`` (found validating ``model``) said in plain words, without its input."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _BY_TYPE:
        return _BY_TYPE[kind]
    if kind in _BOUNDS:
        return _bounds_message(_constraints(model, tuple(error["loc"])), ctx)
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    if kind in _LENGTHS:
        return _length_message(kind, ctx)
    return error["msg"]


def plain_problems(model: type[BaseModel], exc: ValidationError) -> list[tuple[Loc, str]]:
    """Every problem of ``exc`` as (location, plain message)."""
    return [(tuple(e["loc"]), plain_message(model, e)) for e in exc.errors()]


def plain_error(
    model: type[BaseModel],
    errors: Iterable[ErrorDetails],
    extra: Iterable[tuple[Loc, str]] = (),
) -> ValidationError:
    """A ``ValidationError`` of ``model`` whose messages are plain, with ``extra`` problems
    (checks across fields) after the fields' own."""
    details: list[InitErrorDetails] = [
        _custom(tuple(e["loc"]), plain_message(model, e), e["input"]) for e in errors
    ]
    details += [_custom(loc, message, None) for loc, message in extra]
    return ValidationError.from_exception_data(model.__name__, details)


def _custom(loc: Loc, message: str, value: Any) -> InitErrorDetails:
    # The message is a template argument, so a brace in it is never read as a placeholder.
    error = PydanticCustomError("plain", "{message}", {"message": message})
    return InitErrorDetails(type=error, loc=loc, input=value)
