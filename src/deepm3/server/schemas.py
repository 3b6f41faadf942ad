"""Request and response bodies of the HTTP server, and one-line messages for invalid ones.

Types are strict (a timestamp is a JSON integer -- ``881250949`` or ``881250949.0``, which JSON
Schema counts as one -- not ``"881250949"`` or ``1.5``; a flag is ``true``/``false``) so a
client's mistake is reported instead of guessed at. Item ids are strings or integers, as in the
training data (``"50"`` and ``50`` are the same item).
Every validation failure becomes one line that names the field (``body[2].timestamps[1]: ...``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, model_validator

from deepm3.history import MAX_SECONDS  # int64, as training stores times


def _item_id(value: Any) -> Any:
    """A raw item id: a string, or an integer (not a bool) taken as its decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError("expected an item id (a string or an integer)")
    return value


def _whole(value: Any) -> Any:
    """A number with no fraction (``881250949.0``) is that integer, as JSON Schema's ``integer``
    (this API's OpenAPI schema) says; ``1.5`` and ``"5"`` stay errors."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


ItemId = Annotated[str, BeforeValidator(_item_id)]
Seconds = Annotated[int, BeforeValidator(_whole), Strict(), Field(ge=0, le=MAX_SECONDS)]
UserId = Annotated[str, Strict(), Field(min_length=1, max_length=256)]
Flag = Annotated[bool, Strict()]


class Query(BaseModel):
    """One recommendation request: a known ``user`` (events posted to ``/events``), or a history."""

    # the either-or rule of _one_source, in the OpenAPI schema too (clients and fuzzers read it there)
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["user"],
                    "properties": {
                        "user": {"type": "string"},
                        "items": {"type": "null"},
                        "timestamps": {"type": "null"},
                    },
                },
                {
                    "required": ["items", "timestamps"],
                    "properties": {
                        "user": {"type": "null"},
                        "items": {"type": "array"},
                        "timestamps": {"type": "array"},
                    },
                },
            ]
        },
    )

    user: UserId | None = None
    items: list[ItemId] | None = None
    timestamps: list[Seconds] | None = None
    at: Seconds | None = Field(None, description="when the prediction is asked (unix s); default: now")
    k: Annotated[int, BeforeValidator(_whole), Strict(), Field(ge=1)] | None = Field(
        None, description="list length; default: the server's k"
    )
    exclude_seen: Flag = True
    unknown_items: Literal["error", "skip"] = "error"

    @model_validator(mode="after")
    def _one_source(self) -> "Query":
        history = self.items is not None or self.timestamps is not None
        if self.user is not None and history:
            raise ValueError("give either user or items and timestamps, not both")
        if self.user is None and (self.items is None or self.timestamps is None):
            raise ValueError("give user (a user whose events were posted to /events), or items and timestamps")
        return self


class UserEvents(BaseModel):
    """New events of one user, oldest first, all at or after the user's last stored event."""

    model_config = ConfigDict(extra="forbid")

    user: UserId
    items: list[ItemId]
    timestamps: list[Seconds]
    unknown_items: Literal["error", "skip"] = "error"


class Recommendation(BaseModel):
    """One ranked list; the shape of ``deepm3.recommend``'s JSON lines, plus where it came from."""

    user: str | None = None
    at: int
    items: list[str]
    scores: list[float]
    source: Literal["model", "popularity"]
    state: Literal["stored", "recomputed", "miss"] | None = Field(
        None, description="user queries: stored (DeepM3 state), recomputed (stored event window), miss (no events)"
    )
    skipped_items: list[str] = []
    reason: str | None = Field(None, description="why items is empty, when it is (the user has seen every item)")


class UserSummary(BaseModel):
    user: str
    events: int  # events stored for the user so far (all time, not only the window)
    last_time: int | None


class EventsResponse(BaseModel):
    accepted: int
    skipped_items: list[str]
    users: list[UserSummary]
    durability: str = Field(
        description="what a 200 promises: events are kept in memory until the next snapshot "
        "(POST /snapshot or a clean shutdown); a crash before it loses them"
    )


class SnapshotResponse(BaseModel):
    users: int
    file: str
    bytes: int
    seconds: float


def one_line(error: ValidationError, prefix: str = "body") -> str:
    """The first validation error as ``<field>: <what> (got <value>)``, on one line."""
    first = error.errors(include_url=False)[0]
    where = prefix + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") in ("missing", "value_error") or isinstance(first.get("input"), (dict, list)):
        return f"{where}: {message}".replace("\n", " ")
    return f"{where}: {message} (got {_short(first.get('input'))})".replace("\n", " ")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
