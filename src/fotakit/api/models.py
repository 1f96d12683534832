"""The JSON shapes of the REST API (pydantic models): they validate request bodies and
document responses in the OpenAPI document (docs/openapi.json).

Response models allow extra fields (``extra="allow"``) where the API passes through
free-form JSON (campaign specs, event details, registration parameters), so adding a field
to those never breaks a client that validates against the document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

RoleName = Literal["viewer", "operator", "admin"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Problem(_Open):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class Health(BaseModel):
    status: str
    node_id: str | None
    version: str


class Me(BaseModel):
    name: str
    role: RoleName


class TokenOut(BaseModel):
    id: str
    name: str
    role: RoleName
    created_at: str
    expires_at: str | None = Field(
        default=None, description="When the token stops working (UTC); null: never."
    )


class TokenCreated(TokenOut):
    token: str


class TokenList(BaseModel):
    items: list[TokenOut]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"\S")
    role: RoleName
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the token stops working (RFC 3339 with an offset, in the future).",
    )
    expires_in: int | None = Field(
        default=None,
        gt=0,
        le=100 * 366 * 86400,
        description="Seconds from now until the token stops working (instead of expires_at).",
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> TokenCreate:
        if self.expires_at is not None and self.expires_in is not None:
            raise ValueError("give expires_at or expires_in, not both")
        return self


class Fleet(BaseModel):
    total: int
    online: int
    offline: int
    by_version: dict[str, int]
    by_class: dict[str, int]
    by_class_version: list[dict[str, Any]]


class Device(_Open):
    endpoint: str
    online: bool
    class_: str | None = Field(default=None, alias="class")
    firmware_version: str | None
    tags: list[str]
    lwm2m_version: str | None
    binding: str | None
    queue_mode: bool
    address: str | None
    registration_id: str | None
    node: str | None = None
    """The server process ("node") the device is registered with (several may share the
    database; docs/operator-guide.md "Several processes on PostgreSQL")."""
    last_seen: str | None


class DevicePage(BaseModel):
    items: list[Device]
    next_cursor: str | None


class ObjectLink(BaseModel):
    path: str
    object_id: int
    instance_id: int | None
    version: str | None


class Job(_Open):
    id: str
    endpoint: str
    campaign_id: str | None
    package_id: str
    state: str
    reason: str | None
    reason_detail: str | None = None
    """Why, in words, when more is known than ``reason`` (the job's findings and the
    device's own words)."""
    attempts: int
    delivery: str | None
    created_at: str
    updated_at: str
    node_id: str | None


class JobPage(BaseModel):
    items: list[Job]
    next_cursor: str | None


class DeviceDetail(Device):
    registration: dict[str, Any] | None
    objects: list[ObjectLink]
    jobs: list[Job]
    profile: dict[str, Any] | None = None
    """The device profile a job started now would use, with ``why`` (None without the
    update service)."""


class ResourceValue(_Open):
    path: str
    value: Any = None
    values: dict[str, Any] | None = None


class WriteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str | int | float | bool


class ExecuteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    args: str | None = Field(default=None, max_length=1024)


class ObservationOut(BaseModel):
    observation_id: str
    path: str
    value: Any = None
    values: dict[str, Any] | None = None


class TagsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: list[str] = Field(max_length=64)


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    package_id: str = Field(min_length=1, max_length=64)


class Event(_Open):
    id: int
    at: str
    endpoint: str
    job_id: str | None
    campaign_id: str | None
    kind: str
    data: dict[str, Any]


class EventPage(BaseModel):
    items: list[Event]
    next_cursor: str | None


class FirmwarePoint(BaseModel):
    at: str
    state: int | None
    result: int | None


class Firmware(BaseModel):
    state: int | None
    result: int | None
    live: bool
    history: list[FirmwarePoint]


class Package(_Open):
    id: str
    vendor: str
    class_: str = Field(alias="class", description="The SUIT class ID (a UUID).")
    vendor_name: str | None = Field(
        None, description="The vendor domain behind `vendor`, when an upload named it."
    )
    class_name: str | None = Field(
        None, description="The class name behind `class`, when an upload named it."
    )
    version: str
    sequence: int
    size: int
    payload_size: int
    sha256: str
    uploaded_at: str
    in_use: bool


class PackagePage(BaseModel):
    items: list[Package]
    next_cursor: str | None


class PackageDetail(Package):
    manifest: dict[str, Any]


class Progress(_Open):
    campaign_id: str
    state: str
    wave: int
    total: int
    finished: int
    by_state: dict[str, int]
    by_reason: dict[str, int]
    busy: int = Field(
        0,
        description="Members queued because their device has an unfinished job of another "
        "campaign or a single-device job; their job is created when that one has ended.",
    )


class ErrorCount(BaseModel):
    """What the error threshold counts: since the start, or the last explicit reset."""

    failed: int
    finished: int


class Campaign(_Open):
    id: str
    name: str
    state: str
    wave: int
    package_id: str | None
    parent_id: str | None
    created_at: str
    updated_at: str
    spec: dict[str, Any]
    progress: Progress
    paused_reason: str | None = Field(
        None,
        description="While paused: why (paused by whom, the success gate lost, the error "
        "threshold crossed, with the figures).",
    )
    error_count: ErrorCount | None = None


class CampaignPage(BaseModel):
    items: list[Campaign]
    next_cursor: str | None


class GateOverride(BaseModel):
    by: str = Field(description="Who resumed past the lost gate.")
    at: str
    why: str = Field(description="What the gate lacked, e.g. '1 of 3 succeeded, gate needs 3'.")


class Wave(_Open):
    index: int
    size: int
    started: int
    succeeded: int
    failed: int
    finished: int
    gate: str = Field(
        description="pending, met, or overridden (resumed past a lost gate: see override)."
    )
    override: GateOverride | None = None


class CampaignDetail(Campaign):
    waves: list[Wave]


class CampaignCreate(BaseModel):
    """A :class:`fotakit.updates.campaign.CampaignSpec` as JSON, plus ``start``."""

    model_config = ConfigDict(extra="allow")
    name: str
    package_id: str
    target: dict[str, Any]
    start: bool = True


class TimelinePoint(BaseModel):
    at: str
    by_state: dict[str, int]


class Timeline(BaseModel):
    points: list[TimelinePoint]


class FailureGroup(BaseModel):
    reason: str
    count: int
    endpoints: list[str]
    details: dict[str, str] = Field(default_factory=dict)
    """Endpoint -> its job's reason detail, for the devices that have one."""


class Failures(BaseModel):
    groups: list[FailureGroup]


class ProfileTimeouts(BaseModel):
    """Per-state deadlines of the update job, in seconds (absent: the server's)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    start: float | None = Field(default=None, ge=1, le=604800)
    downloading: float | None = Field(default=None, ge=1, le=604800)
    downloaded: float | None = Field(default=None, ge=1, le=604800)
    updating: float | None = Field(default=None, ge=1, le=604800)
    reregistration: float | None = Field(default=None, ge=1, le=604800)


class ProfileBody(BaseModel):
    """A device profile as written (the name is in the URL: a device class, or
    ``default``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    payload_form: Literal["signed", "bare"] = "signed"
    protocols: list[Literal["coap", "coaps", "http", "https"]] = Field(
        default=["coap", "coaps", "http", "https"], min_length=1, max_length=4
    )
    push: bool = True
    timeouts: ProfileTimeouts = Field(default_factory=ProfileTimeouts)
    description: str = Field(default="", max_length=500)


class Profile(_Open):
    name: str
    payload_form: str
    protocols: list[str]
    push: bool
    timeouts: dict[str, float]
    description: str
    stored: bool
    """False for the built-in default (no ``default`` profile stored)."""


class ProfileList(BaseModel):
    items: list[Profile]


class DeviceProfileChoice(_Open):
    profile: Profile
    why: str
