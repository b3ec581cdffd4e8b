"""Time to a finished deck when the model is slow: an OpenAI-compatible fake answering every call
in a fixed time, the real LangChain writer, PostgreSQL and Redis, one slide at a time against
several at once.

    uv run python benchmarks/model_latency.py [--slides 10] [--latency 1.0] [--ahead 1 4]

Prints, for each number of slides written at once, the time from the deck's creation to its first
slide and to its end, beside what the model alone costs: (slides + 1) calls one after another, or
the plan and then ceil(slides / ahead) rounds. Uses a database of its own (dropped at the end) on
the PostgreSQL of PRESTO_BENCH_DATABASE_URL and the Redis db of PRESTO_BENCH_REDIS_URL (db 12 by
default), on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import math

from scratch import REDIS_URL, between, scratch_database, summary

from presto_deck.bootstrap import Role, build_container
from presto_deck.domain.content import DeckBrief
from presto_deck.settings import Settings
from tests.support.fake_openai import FakeOpenAI


async def one_deck(
    database_url: str, model: FakeOpenAI, slides: int, ahead: int
) -> tuple[float, float]:
    """Seconds from the deck's creation to its first slide and to its end."""
    settings = Settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        llm_model="openai:bench-model",
        llm_base_url=model.base_url,
        llm_api_key="sk-bench",
        llm_concurrent_slides_per_deck=ahead,
        log_level="WARNING",
    )
    container = build_container(settings, Role.BOTH)
    try:
        api, worker = container.api_role().services, container.worker_role().services
        deck = await api.decks.create(
            "bench", DeckBrief(prompt="Tides and towns", slide_count=slides)
        )
        await worker.generator.generate(deck.id)
        events = await api.decks.history(deck.id, 0, 1000)
    finally:
        await container.close()
    created = deck.created_at
    first = next(e.timestamp for e in events if e.event_type == "SlideAdded")
    last = events[-1].timestamp
    assert events[-1].event_type == "DeckCompleted", events[-1].event_type
    return (first - created).total_seconds(), (last - created).total_seconds()


async def main() -> None:
    parser = argparse.ArgumentParser(description=summary(__doc__))
    parser.add_argument("--slides", type=between(1, 30), default=10)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per model call")
    parser.add_argument("--ahead", type=between(1, 30), nargs="+", default=[1, 4])
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    with (
        scratch_database("presto_bench") as url,
        FakeOpenAI(plan_slides=args.slides, latency=args.latency) as model,
    ):
        print(f"{args.slides} slides, every model call {args.latency:g} s")
        print(f"{'at once':>8} {'first slide':>12} {'complete':>10} {'model alone':>12}")
        for ahead in args.ahead:
            first, done = await one_deck(url, model, args.slides, ahead)
            floor = args.latency * (1 + math.ceil(args.slides / ahead))
            print(f"{ahead:>8} {first:>11.2f}s {done:>9.2f}s {floor:>11.2f}s")


if __name__ == "__main__":
    asyncio.run(main())
