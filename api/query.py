"""The query string: a route reads what it declares, and refuses anything else.

FastAPI drops a query parameter no route declares, so a misspelt or unsupported filter
(``?serial_number=``, ``?cluster_name=``) came back as an unfiltered list that looked like the
answer. :class:`QueryCheck`, a dependency of every route, answers 422 instead, naming
each parameter the route does not read; a parameter given twice (FastAPI keeps the last) is
refused the same way. Everywhere accepted, after the operator API conventions the backend
follows: ``private_token`` (the token, read by the guard) and ``language`` (a language tag:
this API has no localized text, so it changes nothing and is only checked). A route names
the dashboard's parameters it cannot honour with :class:`Unsupported`, and the refusal says
why.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from dockgate.api.errors import ApiError, problem

ACCEPTED_EVERYWHERE = frozenset({"private_token", "language"})
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}")


class Unsupported:
    """A route dependency naming the dashboard's parameters this route refuses, and why.

    ``dependencies=[Depends(Unsupported({"model_name": "vehicle models are not recorded"}))]``
    """

    def __init__(self, reasons: Mapping[str, str]) -> None:
        self.reasons = dict(reasons)

    async def __call__(self) -> None:
        """Nothing to do when the request comes: ``QueryCheck`` reads ``reasons``."""


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route (or dependency) reads: a model's fields by their alias."""
    names: set[str] = set()
    for field in dependant.query_params:
        model = field.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names.update(info.alias or name for name, info in model.model_fields.items())
        else:
            names.add(field.alias)
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


class _Declared:
    """What one route reads from the query string, and the reasons it gives for the rest."""

    def __init__(self, route: APIRoute) -> None:
        self.names = frozenset(_query_names(route.dependant))
        self.unsupported: dict[str, str] = {}
        for dependant in route.dependant.dependencies:
            if isinstance(dependant.call, Unsupported):
                self.unsupported.update(dependant.call.reasons)


def query_problems(keys: list[str], declared: _Declared) -> list[dict[str, Any]]:
    """One problem per parameter the route does not read, or that is given more than once."""
    problems = []
    for name, count in Counter(keys).items():
        loc = ["query", name]
        if name in declared.unsupported:
            problems.append(problem(loc, f"not supported: {declared.unsupported[name]}"))
        elif name not in declared.names and name not in ACCEPTED_EVERYWHERE:
            problems.append(problem(loc, "not a parameter of this route"))
        elif count > 1:
            problems.append(problem(loc, "given more than once (a list is comma-separated)"))
    return problems


class QueryCheck:
    """The app's dependency (``FastAPI(dependencies=[Depends(QueryCheck())])``): 422 for a
    query parameter the matched route does not read. What each route reads is worked out on
    its first request and kept, with the route, for the app's life."""

    def __init__(self) -> None:
        self._routes: dict[int, tuple[APIRoute, _Declared]] = {}

    async def __call__(self, request: Request) -> None:
        route = request.scope.get("route")
        if not isinstance(route, APIRoute):
            return
        params = request.query_params
        problems = query_problems([key for key, _ in params.multi_items()], self._declared(route))
        language = params.get("language")
        if language is not None and not LANGUAGE.fullmatch(language):
            problems.append(problem(["query", "language"], "a language tag, e.g. en-US"))
        if problems:
            names = ", ".join(str(p["loc"][-1]) for p in problems)
            raise ApiError(422, f"query parameters refused: {names}", problems)

    def _declared(self, route: APIRoute) -> _Declared:
        known = self._routes.get(id(route))
        if known is None or known[0] is not route:
            known = self._routes[id(route)] = (route, _Declared(route))
        return known[1]
