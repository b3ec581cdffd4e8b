"""The offline deck writer: plans and writes slides about the prompt from templates, no network.

It is the default writer, so the product runs anywhere, and the zero-latency model of tests and
benchmarks. The same brief always gives the same deck. Its output says that it came from the
offline writer (plan summary, title slide, presenter notes), so nobody mistakes it for a model's.

It writes plain text. ``bullets`` and ``body`` may carry markup, so text from the prompt is
escaped before it goes there: a prompt with HTML in it is shown, never interpreted.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass
from html import escape

from presto_deck.application.ports import ModelCallBudget
from presto_deck.domain.content import (
    DeckBrief,
    DeckPlan,
    Layout,
    SlideContent,
    SlideOutline,
    SlideRequest,
)
from presto_deck.domain.deck import TITLE_MAX_LENGTH

__all__ = ["OfflineWriter"]

_LABEL = "Drafted by the offline writer (templates, no LLM)"


class OfflineWriter:
    """The ``DeckWriter`` behind ``PRESTO_LLM_MODEL=offline``."""

    name = "offline"

    def __init__(self, slide_delay_ms: int = 300) -> None:
        """``slide_delay_ms`` is the pause per slide, so that streaming can be watched."""
        if slide_delay_ms < 0:
            raise ValueError("slide_delay_ms must not be negative")
        self._delay_seconds = slide_delay_ms / 1000

    async def plan(self, brief: DeckBrief, budget: ModelCallBudget | None = None) -> DeckPlan:
        """Plan the deck; no model is called, so ``budget`` is left untouched."""
        if brief.slide_count < 1:
            raise ValueError("slide_count must be at least 1")
        subject = _Subject.of(brief.prompt)
        title = _shorten((brief.title or "").strip(), TITLE_MAX_LENGTH) or subject.title
        slides = _outline(subject, title, brief.slide_count)
        return DeckPlan(
            title=title,
            summary=(
                f"{len(slides)} slides about {subject.phrase}: "
                + ", ".join(slide.title for slide in slides)
                + f". {_LABEL}."
            ),
            slides=slides,
        )

    async def write_slide(
        self,
        brief: DeckBrief,
        plan: DeckPlan,
        index: int,
        budget: ModelCallBudget | None = None,
    ) -> SlideContent:
        """Write slide ``index`` (0-based) of the plan; no model call, so no ``budget`` spent."""
        if not 0 <= index < len(plan.slides):
            raise IndexError(f"slide {index} is not in a plan of {len(plan.slides)} slides")
        await asyncio.sleep(self._delay_seconds)
        outline = plan.slides[index]
        points = [escape(point, quote=False) for point in outline.key_points]
        notes = _notes(brief, plan, index)
        match outline.layout:
            case "title":
                return SlideContent(
                    layout="title",
                    title=outline.title,
                    subtitle=_LABEL,
                    body="".join(f"<p>{point}</p>" for point in points),
                    notes=notes,
                )
            case "text":
                body = "".join(f"<p>{point}</p>" for point in points)
                return SlideContent(layout="text", title=outline.title, body=body, notes=notes)
            case "quote":
                return SlideContent(
                    layout="quote",
                    title=outline.title,
                    subtitle="The offline writer's one-line summary",
                    body=points[0] if points else "",
                    bullets=points[1:],
                    notes=notes,
                )
            case _:
                return SlideContent(
                    layout=outline.layout, title=outline.title, bullets=points, notes=notes
                )

    async def edit_slide(
        self, request: SlideRequest, budget: ModelCallBudget | None = None
    ) -> SlideContent:
        """Rewrite a slide, or write a new one, about the user's prompt: its key terms become the
        bullets; a rewrite keeps the slide's layout, and its title unless the prompt names one
        (``title: …`` on a line of its own). No model call, so no ``budget`` spent."""
        await asyncio.sleep(self._delay_seconds)
        asked_title = _asked_title(request.prompt)
        # What the slide is about: the prompt without its title line, else the title itself.
        subject = _Subject.of(_ASKED_TITLE.sub("", request.prompt).strip() or asked_title)
        current = request.current
        layout: Layout = "bullets" if current is None else current.layout
        title = asked_title or (subject.title if current is None else current.title)
        bullets = [
            escape(f"{term[:1].upper()}{term[1:]}: what it means for {subject.phrase}", quote=False)
            for term in subject.terms[:4]
        ]
        notes = "\n".join(
            [
                ("Rewritten" if current is not None else "Added")
                + f" as asked: {_shorten(' '.join(request.prompt.split()), 200)}",
                f"{_LABEL}; replace these notes with your own.",
            ]
        )
        return SlideContent(
            layout=layout,
            title=_shorten(title, 200),
            subtitle="" if current is None else current.subtitle,
            bullets=bullets,
            notes=notes,
        )


_ASKED_TITLE = re.compile(r"^\s*title\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def _asked_title(prompt: str) -> str:
    """The title a prompt asks for on a line ``title: …``, if it does."""
    found = _ASKED_TITLE.search(prompt)
    return found.group(1) if found else ""


# -- what the prompt is about -------------------------------------------------------------------

_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s|\n")
# "Please make me a 10-slide deck about X" → "X"; only English request phrasing is recognised.
_REQUEST = re.compile(
    r"^(?:please\s+)?(?:(?:can|could|would)\s+you\s+)?"
    r"(?:make|create|build|generate|write|prepare|draft|design|give|i\s+need|i\s+want)\s+"
    r"(?:me\s+|us\s+)?(?:an?\s+|the\s+)?(?:\d+[\s-]*slides?\s+|short\s+|brief\s+)*"
    r"(?:slide\s+deck|deck|presentation|slides?|talk|pitch(?:\s+deck)?|overview)?\s*"
    r"(?:about|on|for|covering|explaining|of)?\s+",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
# ASCII words shorter than three letters never count, so they need no entry here.
_STOPWORDS = frozenset(
    {
        "about", "above", "after", "again", "all", "also", "and", "any", "are", "because", "been",
        "before", "being", "below", "between", "both", "but", "can", "could", "deck", "did",
        "does", "doing", "down", "during", "each", "few", "for", "from", "further", "give", "had",
        "has", "have", "having", "her", "here", "hers", "him", "his", "how", "into", "its",
        "itself", "just", "more", "most", "need", "nor", "not", "now", "off", "once", "only",
        "other", "our", "ours", "out", "over", "own", "please", "presentation", "same", "she",
        "should", "slide", "slides", "some", "such", "talk", "than", "that", "the", "their",
        "them", "then", "there", "these", "they", "this", "those", "through", "too", "under",
        "until", "very", "want", "was", "were", "what", "when", "where", "which", "while", "who",
        "whom", "why", "will", "with", "would", "you", "your", "make", "create", "build",
        "generate", "write", "prepare", "draft", "design", "explain", "explaining", "covering",
        "overview", "pitch", "short", "brief", "new", "old", "good", "best", "better", "first",
        "next", "last", "great",
    }
)  # fmt: skip
_MAX_TERMS = 6
# When the prompt yields too few key terms, these keep the templates readable.
_FALLBACK_TERMS = ("goals", "people", "process", "results")


@dataclass(frozen=True)
class _Subject:
    phrase: str
    """What the deck is about, in the prompt's words (plain text, may hold anything)."""
    terms: tuple[str, ...]
    """Its key terms, most frequent first; at least three."""

    @classmethod
    def of(cls, prompt: str) -> _Subject:
        sentence = _FIRST_SENTENCE.split(prompt.strip(), maxsplit=1)[0]
        sentence = " ".join(sentence.split()).rstrip(".!?:;, ")
        phrase = _REQUEST.sub("", sentence, count=1).strip() or sentence or "the topic"
        return cls(phrase=_shorten(phrase, 80), terms=_key_terms(prompt))

    @property
    def title(self) -> str:
        return self.phrase[:1].upper() + self.phrase[1:]


def _key_terms(prompt: str) -> tuple[str, ...]:
    """The prompt's most frequent content words, ties broken by first appearance."""
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for match in _WORD.finditer(prompt):
        word = match.group()
        key = word.casefold()
        if key in _STOPWORDS or len(word) < (3 if word.isascii() else 2):
            continue
        counts[key] += 1
        spelling.setdefault(key, word)
    ranked = sorted(spelling, key=lambda key: -counts[key])  # stable: ties keep their order
    terms = [spelling[key] for key in ranked[:_MAX_TERMS]]
    terms += [term for term in _FALLBACK_TERMS if term not in terms][: max(0, 3 - len(terms))]
    return tuple(terms)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:-") + "…"


# -- the deck's shape ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Section:
    title: str
    layout: Layout
    points: tuple[str, ...]
    """Templates over ``{topic}`` and the key terms ``{a}``, ``{b}``, ``{c}``."""


# In the order a talk tells them. A short deck keeps the most important ones (``_PRIORITY``).
# The writer drafts a structure, not content: each point says, in brackets, what belongs there,
# so that nobody mistakes a template for knowledge about the topic.
_SECTIONS: dict[str, _Section] = {
    "agenda": _Section("Agenda", "bullets", ()),  # the titles of the slides that follow
    "context": _Section("Context", "text", (
        "[Where {topic} stands today, in one or two facts the audience already accepts.]",
        "[Why it matters now: a recent change, a deadline or a number.]")),
    "problem": _Section("The problem", "bullets", (
        "[What does not work today, in the audience's own words]",
        "[What it costs: time, money or risk]",
        "[The constraints any answer has to respect]")),
    "approach": _Section("Our approach", "two_column", (
        "[The idea, in one sentence]", "[How it answers the problem]",
        "[What we will measure to know it works]", "[What we will not do, and why]")),
    "key_points": _Section("Key points", "bullets", (
        "{A}: [what the audience should remember about it]",
        "{B}: [what the audience should remember about it]",
        "{C}: [what the audience should remember about it]")),
    "examples": _Section("Examples", "bullets", (
        "[A concrete case where {topic} worked, or failed]", "[What that case shows]",
        "[How it applies to us]")),
    "data": _Section("What the numbers say", "two_column", (
        "[The one metric that matters most, and its source]", "[The baseline to compare with]",
        "[How it has moved over time]", "[Where the data is still thin]")),
    "quote": _Section("In one sentence", "quote", (
        "[The one sentence about {topic} you want the audience to repeat.]",)),
    "risks": _Section("Risks and mitigations", "two_column", (
        "[Risk: what could go wrong]", "[Mitigation: how we make it less likely]",
        "[Risk: what we depend on]", "[Mitigation: what we do if it fails]")),
    "roadmap": _Section("Next steps", "bullets", (
        "[Now: the first step, its owner and its date]", "[Next: what follows once it works]",
        "[Later: how it grows]")),
    "summary": _Section("Summary", "bullets", (
        "[The problem, in one line]", "[What we propose]", "[What we ask you to decide]")),
}  # fmt: skip
_PRIORITY = (
    "key_points", "context", "approach", "agenda", "roadmap", "problem",
    "examples", "risks", "data", "summary", "quote",
)  # fmt: skip
#: What each slide is for, told to the speaker in its notes.
_PURPOSES = {
    "Agenda": "tell the audience where the talk goes, so they can follow it",
    "Context": "agree with the audience on where things stand before proposing anything",
    "The problem": "make the cost of doing nothing concrete",
    "Our approach": "state the idea and how it answers the problem",
    "Key points": "the three things the audience should still remember tomorrow",
    "Examples": "make the idea tangible with a case the audience recognises",
    "What the numbers say": "back the claims with the numbers you have, and admit the gaps",
    "In one sentence": "give the audience one sentence to repeat",
    "Risks and mitigations": "show that you have thought about what could go wrong",
    "Next steps": "turn the talk into actions with owners and dates",
    "Summary": "repeat the problem, the proposal and the decision you need",
    "Thank you": "close on the takeaway and the decision or next step you ask for",
}
_DEEP_DIVE_ANGLES = ("in depth", "in practice", "trade-offs", "open questions")
_DEEP_DIVE_LAYOUTS: tuple[Layout, ...] = ("bullets", "two_column", "text")
_CLOSING = _Section("Thank you", "closing", (
    "[The one takeaway about {topic}]", "[The decision or next step you ask for]",
    "Questions and discussion"))  # fmt: skip


def _outline(subject: _Subject, title: str, count: int) -> list[SlideOutline]:
    """A title slide, the middle sections, and a closing slide once there are three or more."""
    # Under a title of its own, the title slide also says what the deck is about.
    about = [subject.phrase] if title != subject.title else []
    opening = SlideOutline(title=title, layout="title", key_points=about)
    if count == 1:
        return [opening]
    middle = count - 2 if count >= 3 else count - 1
    chosen = set(_PRIORITY[:middle])
    sections = [_SECTIONS[key] for key in _SECTIONS if key in chosen]
    deep_dives = [_deep_dive(subject, n) for n in range(middle - len(sections))]
    if deep_dives:  # after the key points, which they expand on
        at = list(_SECTIONS).index("key_points") + 1
        sections[at:at] = deep_dives
    slides = [opening, *(_fill(section, subject) for section in sections)]
    if count >= 3:
        slides.append(_fill(_CLOSING, subject))
    for at, slide in enumerate(slides):
        if slide.title == _SECTIONS["agenda"].title:  # what the talk goes through after it
            following = [later.title for later in slides[at + 1 :] if later.layout != "closing"]
            slides[at] = SlideOutline(title=slide.title, layout="bullets", key_points=following)
    return slides


def _deep_dive(subject: _Subject, n: int) -> _Section:
    """The n-th extra slide for a long deck: each key term from each angle, then again."""
    terms, angles = subject.terms, _DEEP_DIVE_ANGLES
    term = terms[n % len(terms)]
    angle = angles[(n // len(terms)) % len(angles)]
    round_ = n // (len(terms) * len(angles))
    suffix = f" (part {round_ + 1})" if round_ else ""
    # The term is letters only (see _WORD), so it cannot smuggle a placeholder into the template.
    return _Section(
        f"{term[:1].upper()}{term[1:]}: {angle}{suffix}",
        _DEEP_DIVE_LAYOUTS[n % len(_DEEP_DIVE_LAYOUTS)],
        (f"[What {term} means for {{topic}}]", f"[One example or number about {term}]",
         "[What it implies for the audience]"),
    )  # fmt: skip


def _fill(section: _Section, subject: _Subject) -> SlideOutline:
    a, b, c = subject.terms[:3]
    values = {"topic": subject.phrase, "a": a, "b": b, "c": c}
    values |= {key.upper(): value[:1].upper() + value[1:] for key, value in values.items()}
    # format_map over our own templates only: prompt text is a value, never a template.
    points = [template.format_map(values) for template in section.points]
    return SlideOutline(title=section.title, layout=section.layout, key_points=points)


def _notes(brief: DeckBrief, plan: DeckPlan, index: int) -> str:
    outline = plan.slides[index]
    purpose = _PURPOSES.get(outline.title)
    if index == 0:
        purpose = "open the talk: say who you are and what the audience will get from it"
    lines = [
        # No "slide 2 of 6": the presenter shows where a slide stands, and edits move slides.
        f"{outline.title}.",
        f"Deck: {plan.title}. Topic: {_Subject.of(brief.prompt).phrase}.",
        f"Purpose: {purpose or 'go deeper into one part of the topic'}.",
    ]
    if any("[" in point for point in outline.key_points):
        lines.append("Replace each bracketed line with your own words, then speak to it.")
    if brief.language:
        lines.append(f"[lang: {brief.language}] Not translated: the offline writer uses English.")
    lines.append(f"{_LABEL}; replace these notes with your own.")
    return "\n".join(lines)
