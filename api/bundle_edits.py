"""One dashboard operation on the rule bundle: take the newest saved bundle, change one part,
check the whole, save it as the next version.

It goes the way a pushed bundle goes (``routes/config.py``: checked as a whole, saved with
its ``config.applied`` event; the daemon then swaps the running engine), inside one store
transaction, so two edits never build on the same version and a refused one leaves nothing
behind.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import State

from dockgate.api.errors import ApiError, ok, problem
from dockgate.api.idempotency import idempotent
from dockgate.api.ports import BundleProblem
from dockgate.api.routes.config import bundle_problems, located, save_bundle, site_network
from dockgate.gateway.rules.config import (
    DashboardBundle,
    SpeedZone,
    VirtualParking,
    content_id,
)

NOTHING_PUSHED = (
    "no rule bundle has been pushed yet: push a whole one first (POST /api/v1/config/bundles)"
)
NOT_LOADING = "the saved rule bundle does not load as a dashboard bundle: push a whole one"
Change = Callable[["BundleDraft"], dict[str, Any]]
SPEED_ZONES, PARKINGS = "speed_zones", "virtual_parkings"
_ID_NAMES = frozenset({"id", SpeedZone.id_name, VirtualParking.id_name})


def _as_dashboard(state: State, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A saved bundle as a dashboard bundle: a GBFS document is embedded as its ``gbfs``."""
    if kind == "dashboard":
        return body
    return {"version": "gbfs", "network_id": site_network(state.store) or 1, "gbfs": body}


def _checked(doc: dict[str, Any]) -> DashboardBundle:
    try:
        return DashboardBundle.model_validate(doc)
    except ValidationError:
        raise ApiError(409, NOT_LOADING) from None


def _wrong_network(expected: int, loc: Sequence[str], status: int) -> ApiError:
    message = f"must be this gateway's network ({expected})"
    return ApiError(status, f"{loc[-1]} names another network", [problem(loc, message)])


def read_bundle(
    state: State, network_id: int, loc: Sequence[str], *, status: int = 422
) -> DashboardBundle | None:
    """The saved bundle for reading (None: nothing pushed yet), once ``network_id`` (at
    ``loc``) is known to be its network, or the site's when there is no bundle."""
    saved = state.store.bundles.current()
    bundle = None if saved is None else _checked(_as_dashboard(state, saved.kind, saved.body))
    expected = bundle.network_id if bundle is not None else site_network(state.store)
    if expected is not None and network_id != expected:
        raise _wrong_network(expected, loc, status)
    return bundle


@dataclass
class BundleDraft:
    """The newest saved bundle opened for one change.

    ``doc`` is the bundle's JSON, to edit in place; ``config`` the bundle as it was, checked
    (its entries carry their ids, given or derived). ``edited``: the path of the part the
    request replaces, so a problem found there is reported as the request body's.
    """

    version: int
    doc: dict[str, Any]
    config: DashboardBundle
    original: dict[str, Any]
    edited: tuple[str, ...] = field(default=())

    @classmethod
    def open(cls, state: State) -> BundleDraft:
        saved = state.store.bundles.current()
        if saved is None:
            raise ApiError(409, NOTHING_PUSHED)
        doc = _as_dashboard(state, saved.kind, saved.body)
        return cls(saved.version, doc, _checked(doc), copy.deepcopy(doc))

    def check_network(self, given: int | None, loc: Sequence[str], *, status: int = 422) -> None:
        """Refuse a request for another network than the bundle's (None: not named)."""
        if given is not None and given != self.config.network_id:
            raise _wrong_network(self.config.network_id, loc, status)

    def entries(self, key: str) -> list[Any]:
        """The bundle's list ``key`` (``speed_zones``, ...), created empty if absent."""
        items = self.doc.get(key)
        if not isinstance(items, list):  # absent (the bundle was checked)
            items = self.doc[key] = []
        return items

    def checked_entries(self, key: str) -> Sequence[SpeedZone | VirtualParking]:
        """The bundle's ``speed_zones`` or ``virtual_parkings`` as checked, with their ids."""
        return self.config.speed_zones if key == SPEED_ZONES else self.config.virtual_parkings

    def position(self, key: str, entry_id: int, loc: Sequence[str]) -> int:
        """Where the entry named ``entry_id`` (given at ``loc``) is in list ``key`` (404: in
        none)."""
        for i, entry in enumerate(self.checked_entries(key)):
            if entry.id == entry_id:
                return i
        message = "names no entry of this network's bundle"
        raise ApiError(404, f"{loc[-1]} {entry_id} not found", [problem(loc, message)])

    def add_entry(self, key: str, entry: dict[str, Any]) -> int:
        """Append a created entry, named by its content (409 if the same one exists)."""
        entry_id = content_id(entry)
        if any(e.id == entry_id for e in self.checked_entries(key)):
            raise ApiError(409, f"the same entry exists already in {key} (id {entry_id})")
        items = self.entries(key)
        items.append({"id": entry_id, **entry})
        self.edited = (key, str(len(items) - 1))
        return entry_id

    def replace_entry(self, key: str, index: int, changes: dict[str, Any]) -> None:
        """Replace the fields ``changes`` gives in entry ``index``. Its id is written out as
        ``id`` (it may have been derived from the content the change replaces)."""
        items = self.entries(key)
        kept = {k: v for k, v in items[index].items() if k not in _ID_NAMES}
        items[index] = {**kept, **changes, "id": self.checked_entries(key)[index].id}
        self.edited = (key, str(index))

    def remove_entry(self, key: str, index: int) -> None:
        del self.entries(key)[index]

    def save(self, state: State) -> tuple[int, object]:
        """Check the changed bundle as a whole and save it as the next version: (version,
        warnings). A change that changes nothing saves nothing (the current version)."""
        if self._unchanged():
            return self.version, []
        version = self.version + 1
        self.doc["version"] = str(version)
        problems = bundle_problems(state, "dashboard", self.doc)
        if problems:
            raise ApiError(422, "the change was refused", self._located(problems))
        save_bundle(state, version, "dashboard", self.doc)
        return version, getattr(problems, "warnings", [])

    def _unchanged(self) -> bool:
        """Whether the change leaves the bundle as it was (written as it was, or the same
        once read: ``speed_zone_id`` rewritten as ``id``, ``6`` as ``6.0``)."""
        if self.doc == self.original:
            return True
        try:
            changed = DashboardBundle.model_validate(self.doc)
        except ValidationError:
            return False
        return changed.model_dump() == self.config.model_dump()

    def _located(self, problems: Sequence[BundleProblem | str]) -> list[dict[str, Any]]:
        """A problem in the edited part is the body's (``["body", field]``); any other is the
        bundle's (``["bundle", ...]``), which the change broke or left as it was."""
        n = len(self.edited)
        out: list[dict[str, Any]] = []
        for p in problems:
            if n and isinstance(p, BundleProblem) and p.path[:n] == self.edited:
                out.append(problem(["body", *p.path[n:]], p.message))
            else:
                out += located([p], ("bundle",))
        return out


async def run_edit(request: Request, fields: Any, change: Change) -> dict[str, Any]:
    """Apply ``change`` to the newest bundle and save the result, in one transaction, once
    per ``Idempotency-Key``. The answer: ``{"version", **change's data, "warnings"}``."""

    async def handler() -> dict[str, Any]:
        state = request.app.state
        with state.store.transaction():
            draft = BundleDraft.open(state)
            data = change(draft)
            version, warnings = draft.save(state)
        return ok({"version": version, **data, "warnings": warnings})

    return await idempotent(request, fields, handler)
