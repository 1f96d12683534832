"""Human names of device classes: the vendor domain and class name behind the UUIDs.

A package's manifest carries only the SUIT vendor and class IDs (docs/package-format.md,
"Vendor and class IDs": ``VID = uuid5(NAMESPACE_DNS, vendor domain)``, ``CID = uuid5(VID,
class name)``), which people cannot read. The names are given at upload time (``fotakit
package upload --vendor --class``, ``POST /api/v1/packages?vendor=&class=``) and kept only
when they hash to the manifest's IDs, so a stored name is never a guess. One row per class
ID: once named, every package of that class shows the name.

``class_names`` lives in its own SQLAlchemy metadata (like ``api_tokens``, not the store's
versioned schema): it is created when missing, and dropping it only forgets the names.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Column, Connection, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

from fotakit.packages.manifest import class_id, vendor_id

MAX_NAME: Final = 255
"""Longest vendor domain or class name kept (the store's short text)."""

_metadata = MetaData()
_NAMES: Final = Table(
    "class_names",
    _metadata,
    Column("class_id", String(36), primary_key=True),
    Column("vendor_id", String(36), nullable=False),
    Column("vendor_name", String(MAX_NAME), nullable=False),
    Column("class_name", String(MAX_NAME), nullable=False),
)


@dataclass(frozen=True, slots=True)
class ClassName:
    """The names behind one class ID."""

    vendor: str
    name: str


class NameMismatch(ValueError):
    """The names given do not hash to the package's vendor and class IDs."""


def check_names(
    vendor_name: str, class_name: str, vendor: str | uuid.UUID, klass: str | uuid.UUID
) -> ClassName:
    """``ClassName`` if ``uuid5`` of the names gives the IDs, else :class:`NameMismatch`."""
    for label, value in (("vendor", vendor_name), ("class", class_name)):
        if not value or len(value) > MAX_NAME or not value.isprintable():
            raise NameMismatch(f"{label} name must be 1..{MAX_NAME} printable characters")
    vid = vendor_id(vendor_name)
    if str(vid) != str(vendor):
        raise NameMismatch(
            f"vendor {vendor_name!r} is vendor ID {vid}, but the package's is {vendor}"
        )
    cid = class_id(vid, class_name)
    if str(cid) != str(klass):
        raise NameMismatch(
            f"class {class_name!r} of vendor {vendor_name!r} is class ID {cid}, "
            f"but the package's is {klass}"
        )
    return ClassName(vendor_name, class_name)


def create_table(conn: Connection) -> None:
    _metadata.create_all(conn, checkfirst=True)


def remember(conn: Connection, vendor: str, klass: str, names: ClassName) -> None:
    """Keep the (checked) names of class ``klass``; a class named already keeps its row
    (the names of an ID are unique, barring a UUID5 collision)."""
    if conn.execute(select(_NAMES.c.class_id).where(_NAMES.c.class_id == klass)).first():
        return
    try:
        with conn.begin_nested():
            conn.execute(
                insert(_NAMES).values(
                    class_id=klass,
                    vendor_id=vendor,
                    vendor_name=names.vendor,
                    class_name=names.name,
                )
            )
    except IntegrityError:
        pass  # another process named it at the same moment: the same names


def all_names(conn: Connection) -> dict[str, ClassName]:
    """Class ID -> its names, for every named class."""
    rows = conn.execute(select(_NAMES.c.class_id, _NAMES.c.vendor_name, _NAMES.c.class_name))
    return {r.class_id: ClassName(r.vendor_name, r.class_name) for r in rows}
