"""Pages of a list: the dashboard's keyset convention, the same on every list route.

A page is at most ``page_size`` rows (10..500, 20 unless asked; a larger size is refused,
never quietly cut) after the row whose id is ``last_primary_key``, ids in ``primary_key_dir``
order (after the route's ``sort_by``, if any, in ``sort_dir`` order). The answer's ``total``
counts every row the filters match, so a client that reads only the first page can tell
there is more: the next page is asked for with the last row's ``id``.

Ids run newest first (``DESC``) where the dashboard pages the list itself (alerts, trips,
users: :class:`SortedPageQuery`); the lists it serves whole (networks, clusters, stations,
vehicles, products, ...) keep the order they always had here, oldest first (``ASC``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from dockgate.api.params import MAX_ID, Digits, IdList, network_ids
from dockgate.gateway.store import Keyset

PAGE_SIZE_MAX = 500
Direction = Literal["ASC", "DESC"]


class PageQuery(BaseModel):
    """``page_size``, ``last_primary_key`` and ``primary_key_dir``, as query parameters."""

    primary_key_dir: Direction = Field("ASC", description="Order of the row ids")
    page_size: Annotated[int, Digits] = Field(
        20, ge=10, le=PAGE_SIZE_MAX, description="Rows per page (more is refused)"
    )
    last_primary_key: Annotated[int | None, Digits] = Field(
        None, ge=1, le=MAX_ID, description="The id of the last row of the previous page"
    )

    def keyset(self) -> Keyset:
        return Keyset(self.page_size, self.last_primary_key, self.primary_key_dir)


class SortedPageQuery(PageQuery):
    """A page of a list the dashboard pages: newest first, and ``sort_dir`` orders the
    route's ``sort_by`` key."""

    primary_key_dir: Direction = Field("DESC", description="Order of the row ids")
    sort_dir: Direction = Field("DESC", description="Order of the `sort_by` key")

    def keyset(self) -> Keyset:
        return Keyset(self.page_size, self.last_primary_key, self.primary_key_dir, self.sort_dir)


class NetworksPageQuery(PageQuery):
    """A page of what belongs to some networks (none given: every network)."""

    networks: Annotated[str | None, IdList] = Field(
        None, max_length=500, description="Network ids, e.g. `1,5,7` (none: every network)"
    )

    def network_ids(self) -> list[int]:
        return network_ids(self.networks)
