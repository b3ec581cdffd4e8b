"""The offline writer: a deterministic, network-free deck about the prompt, labelled as offline."""

from __future__ import annotations

import time

import pytest

from presto_deck.application.ports import DeckWriter
from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent, SlideRequest
from presto_deck.infrastructure.writers.offline import OfflineWriter
from presto_deck.infrastructure.writers.rendering import ThemeRenderer
from tests.support.themes import THEME_BOOK
from tests.unit.test_sanitizer import assert_inert

_PROMPT = (
    "Please make a deck about renewable energy adoption in Korea. "
    "Cover solar and wind energy, storage, and what energy policy should change."
)


def _brief(prompt: str = _PROMPT, slide_count: int = 8, **fields: str) -> DeckBrief:
    return DeckBrief(prompt=prompt, slide_count=slide_count, **fields)


async def _write_all(writer: OfflineWriter, brief: DeckBrief) -> tuple[DeckPlan, list[str]]:
    plan = await writer.plan(brief)
    slides = [await writer.write_slide(brief, plan, i) for i in range(len(plan.slides))]
    renderer = ThemeRenderer(THEME_BOOK)
    html = [renderer.render(slide, "dark") for slide in slides]
    return plan, html


def test_offline_writer_is_a_deck_writer_named_offline() -> None:
    writer: DeckWriter = OfflineWriter(slide_delay_ms=0)

    assert writer.name == "offline"


@pytest.mark.parametrize("count", range(1, 31))
async def test_the_plan_has_exactly_the_requested_number_of_slides(count: int) -> None:
    plan = await OfflineWriter(0).plan(_brief(slide_count=count))

    assert len(plan.slides) == count
    assert plan.slides[0].layout == "title"
    assert all(slide.title.strip() for slide in plan.slides)
    if count >= 3:
        assert plan.slides[-1].layout == "closing"
        assert all(slide.layout not in {"title", "closing"} for slide in plan.slides[1:-1])


@pytest.mark.parametrize("count", [8, 12, 30])
async def test_middle_slides_do_not_repeat_a_title(count: int) -> None:
    plan = await OfflineWriter(0).plan(_brief(slide_count=count))

    titles = [slide.title for slide in plan.slides]
    assert len(set(titles)) == len(titles)


async def test_the_same_brief_gives_the_same_deck() -> None:
    first = await _write_all(OfflineWriter(0), _brief(slide_count=12))
    second = await _write_all(OfflineWriter(0), _brief(slide_count=12))

    assert first == second


async def test_a_different_prompt_gives_a_different_deck() -> None:
    energy = await OfflineWriter(0).plan(_brief())
    jazz = await OfflineWriter(0).plan(_brief("A talk on the history of jazz in New Orleans"))

    assert energy.slides != jazz.slides


async def test_the_deck_is_about_the_prompts_key_terms() -> None:
    plan = await OfflineWriter(0).plan(_brief())

    points = " ".join(point for slide in plan.slides for point in slide.key_points)
    assert "energy" in points
    assert "renewable energy adoption in Korea" in points


async def test_the_title_comes_from_the_brief_when_given() -> None:
    plan = await OfflineWriter(0).plan(_brief(title="Powering Korea"))

    assert plan.title == "Powering Korea"
    assert plan.slides[0].title == "Powering Korea"


async def test_without_a_title_the_request_phrasing_is_dropped_from_the_prompt() -> None:
    plan = await OfflineWriter(0).plan(_brief())

    assert plan.title == "Renewable energy adoption in Korea"


async def test_a_long_prompt_gives_a_short_title() -> None:
    plan = await OfflineWriter(0).plan(_brief("word " * 800))

    assert len(plan.title) <= 80


async def test_a_prompt_without_words_still_gives_a_full_deck() -> None:
    plan = await OfflineWriter(0).plan(_brief("!!! ??? 123", slide_count=6))

    assert len(plan.slides) == 6
    assert plan.title


async def test_the_plan_summary_says_it_was_written_offline() -> None:
    plan = await OfflineWriter(0).plan(_brief())

    assert "offline writer" in plan.summary
    assert "renewable energy adoption in Korea" in plan.summary


async def test_each_slide_follows_its_outline_and_its_notes_give_place_topic_and_label() -> None:
    writer = OfflineWriter(0)
    brief = _brief()
    plan = await writer.plan(brief)

    for index, outline in enumerate(plan.slides):
        slide = await writer.write_slide(brief, plan, index)

        assert slide.layout == outline.layout
        assert slide.title == outline.title
        assert slide.bullets or slide.body or slide.layout == "title"
        assert slide.notes.startswith(f"{outline.title}.\n")
        assert "renewable energy adoption in Korea" in slide.notes
        assert "offline writer" in slide.notes


async def test_the_title_slide_is_labelled_as_offline_output() -> None:
    writer = OfflineWriter(0)
    brief = _brief()
    plan = await writer.plan(brief)

    title_slide = await writer.write_slide(brief, plan, 0)

    assert "offline writer" in title_slide.subtitle


async def test_the_requested_language_is_noted_as_a_hint() -> None:
    writer = OfflineWriter(0)
    brief = _brief(language="ko")
    plan = await writer.plan(brief)

    slide = await writer.write_slide(brief, plan, 1)

    assert "[lang: ko]" in slide.notes


@pytest.mark.parametrize("index", [-1, 8])
async def test_an_index_outside_the_plan_is_refused(index: int) -> None:
    writer = OfflineWriter(0)
    plan = await writer.plan(_brief())

    with pytest.raises(IndexError):
        await writer.write_slide(_brief(), plan, index)


@pytest.mark.parametrize("count", [0, -3])
async def test_a_plan_needs_at_least_one_slide(count: int) -> None:
    with pytest.raises(ValueError, match="slide_count"):
        await OfflineWriter(0).plan(_brief(slide_count=count))


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="slide_delay_ms"):
        OfflineWriter(slide_delay_ms=-1)


async def test_with_no_delay_a_whole_deck_is_written_at_once() -> None:
    started = time.perf_counter()

    await _write_all(OfflineWriter(slide_delay_ms=0), _brief(slide_count=30))

    assert time.perf_counter() - started < 1.0


async def test_the_delay_paces_each_slide() -> None:
    writer = OfflineWriter(slide_delay_ms=50)
    brief = _brief(slide_count=3)
    plan = await writer.plan(brief)
    started = time.perf_counter()

    await writer.write_slide(brief, plan, 1)

    assert time.perf_counter() - started >= 0.045


async def test_a_hostile_prompt_is_carried_as_plain_text_and_rendered_escaped() -> None:
    prompt = '<script>alert("x")</script> Make slides about <img src=x onerror=alert(1)> cats'
    writer = OfflineWriter(0)
    brief = _brief(prompt, slide_count=5)

    plan, html = await _write_all(writer, brief)

    assert plan.title.startswith("<script>")  # plain text: kept as written, not interpreted
    context = await writer.write_slide(brief, plan, 1)
    assert "&lt;script&gt;" in context.body  # a markup field: the prompt text is escaped
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html[0]
    assert "&lt;script&gt;" in html[1]
    for slide in html:
        assert_inert(slide)


# -- edits --------------------------------------------------------------------------------------


def _request(prompt: str, current: SlideContent | None) -> SlideRequest:
    return SlideRequest(
        brief=_brief(), plan=None, prompt=prompt, current=current, position=2, total=5
    )


async def test_a_rewrite_keeps_the_layout_and_title_and_writes_about_the_prompt() -> None:
    current = SlideContent(layout="two_column", title="Costs", bullets=["old"], subtitle="Q3")

    slide = await OfflineWriter(0).edit_slide(_request("Focus on maintenance budgets", current))

    assert (slide.layout, slide.title, slide.subtitle) == ("two_column", "Costs", "Q3")
    assert slide.bullets
    assert "old" not in slide.bullets
    assert any("Maintenance" in bullet for bullet in slide.bullets)
    assert slide.notes.startswith("Rewritten as asked: Focus on maintenance budgets")
    assert "Slide 2" not in slide.notes  # where it stands is the presenter's to say


async def test_a_title_line_in_the_prompt_sets_the_title() -> None:
    current = SlideContent(title="Costs")

    prompt = "title: Running costs\nFocus on mentoring and code review"
    slide = await OfflineWriter(0).edit_slide(_request(prompt, current))

    assert slide.title == "Running costs"
    assert not any("title" in bullet.lower() for bullet in slide.bullets)
    assert any("Mentoring" in bullet for bullet in slide.bullets)


async def test_a_new_slide_is_titled_after_the_prompt_and_its_markup_is_inert() -> None:
    slide = await OfflineWriter(0).edit_slide(_request("<script>alert(1)</script> budgets", None))

    assert slide.layout == "bullets"
    assert slide.notes.startswith("Added as asked: ")
    assert_inert(ThemeRenderer(THEME_BOOK).render(slide, None))


# -- an honest scaffold ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [6, 8, 12])
async def test_the_agenda_lists_the_slides_that_follow_it(count: int) -> None:
    plan = await OfflineWriter(0).plan(_brief(slide_count=count))

    titles = [slide.title for slide in plan.slides]
    agenda = plan.slides[titles.index("Agenda")]
    after = titles[titles.index("Agenda") + 1 : -1]
    assert agenda.key_points == after


async def test_every_point_says_in_brackets_what_belongs_there_never_pretends_to_know() -> None:
    plan = await OfflineWriter(0).plan(_brief(slide_count=12))

    for slide in plan.slides[1:]:
        if slide.title == "Agenda":
            continue
        for point in slide.key_points:
            assert "[" in point or point == "Questions and discussion", (slide.title, point)


async def test_the_notes_tell_the_speaker_what_each_slide_is_for() -> None:
    writer = OfflineWriter(0)
    brief = _brief(slide_count=8)
    plan = await writer.plan(brief)

    notes = [(await writer.write_slide(brief, plan, i)).notes for i in range(8)]

    assert all("Purpose: " in note for note in notes)
    assert len({note.split("Purpose: ")[1].split("\n")[0] for note in notes}) == 8
