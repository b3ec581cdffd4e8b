"""Every Redis key, stream, group and channel name the product uses, in one place."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

#: The arq queue of generation jobs.
QUEUE = "presto:queue"
#: Events appended by workers after each commit; read by the API instances' consumer group.
EVENT_STREAM = "presto:events"
#: One group for all API instances: each entry is handled by exactly one of them.
API_CONSUMER_GROUP = "presto-api"
#: Entries no API instance could handle after several deliveries, kept for inspection.
DEAD_LETTER_STREAM = "presto:events:dead"
#: Pub/Sub channel on which an API instance tells all instances that live events may have been
#: lost (the stream was recreated), so that every socket catches up from PostgreSQL.
CATCH_UP_CHANNEL = "presto:catch-up"
#: Key prefix of the Litestar channels plugin (Pub/Sub fan-out to every API instance); see
#: ``channels_prefix``.
CHANNELS_PREFIX = "presto:channels"
#: Held for most of a sweep period by the worker that sweeps in it, so one worker sweeps at a time.
SWEEP_LOCK = "presto:sweep"
#: Name of the arq job that generates a deck.
GENERATE_JOB = "generate_deck"
#: Name of the arq job that applies a deck's queued edits.
EDIT_JOB = "edit_deck"


def channels_prefix(redis_url: str) -> str:
    """The Pub/Sub channels' prefix for the Redis db in ``redis_url``: Pub/Sub ignores db
    numbers, so two deployments on one Redis server (each on its own db) would hear each
    other's events and catch-up calls without it."""
    db = urlsplit(redis_url).path.strip("/") or "0"
    if redis_url.startswith("unix:"):  # unix:///path?db=N
        db = dict(parse_qsl(urlsplit(redis_url).query)).get("db", "0")
    return f"{CHANNELS_PREFIX}:db{db}"


def generation_job_id(deck_id: UUID) -> str:
    """One job id per deck, so that duplicate enqueues collapse into one job."""
    return f"generate:{deck_id}"


def deck_of_job(job_id: str) -> UUID | None:
    """The deck of a generation job's id; None for another job."""
    kind, _, deck = job_id.partition(":")
    if kind != "generate":
        return None
    try:
        return UUID(deck)
    except ValueError:
        return None


def edit_job_id(edit_id: UUID) -> str:
    """One job id per edit: a repeated enqueue collapses, and no edit's job absorbs another's."""
    return f"edit:{edit_id}"


def cancel_flag(deck_id: UUID | str) -> str:
    return f"presto:cancel:{deck_id}"


def creation_log(user_id: str) -> str:
    """A sorted set of the user's recent deck creations (the creation rate limit)."""
    return f"presto:limit:creations:{user_id}"


def theme_change_log(user_id: str) -> str:
    """A sorted set of the user's recent theme changes (their rate limit)."""
    return f"presto:limit:themes:{user_id}"


def export_log(user_id: str) -> str:
    """A sorted set of the user's recent exports (the export rate limit)."""
    return f"presto:limit:exports:{user_id}"


def user_sockets(user_id: str) -> str:
    """A sorted set of the user's open sockets, each scored by the time its seat expires."""
    return f"presto:limit:sockets:user:{user_id}"


#: A sorted set of every open socket, each scored by the time its seat expires.
ALL_SOCKETS = "presto:limit:sockets:all"


def deck_channel(deck_id: UUID | str) -> str:
    """The Pub/Sub channel every socket watching the deck subscribes to."""
    return f"deck:{deck_id}"
