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
                    subtitle=f"{len(plan.slides)} slides · {_LABEL}",
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
                f"Slide {request.position} of {request.total}, "
                + ("rewritten" if current is not None else "added")
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
        "overview", "pitch", "short", "brief",
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
_SECTIONS: dict[str, _Section] = {
    "context": _Section("Context", "text", (
        "Where {topic} stands today.", "Why {a} matters now.", "Who is affected by {b}.")),
    "problem": _Section("The problem", "bullets", (
        "What is not working around {a}", "The cost of leaving {b} as it is",
        "Constraints we have to respect")),
    "approach": _Section("Our approach", "two_column", (
        "Start from {a}", "Connect it with {b}", "Measure what changes in {c}",
        "Iterate in small, visible steps")),
    "key_points": _Section("Key points", "bullets", (
        "{A} is at the heart of {topic}", "{B} shapes how it plays out",
        "{C} decides whether it lasts")),
    "examples": _Section("Examples", "bullets", (
        "A first example: {a} in practice", "A contrasting case: {b}",
        "What the examples have in common")),
    "data": _Section("What the numbers say", "two_column", (
        "The metric that tracks {a}", "A baseline to compare against",
        "The trend over time for {b}", "Where the data is still thin")),
    "quote": _Section("In one sentence", "quote", ("Get {a} right, and {b} follows.",)),
    "risks": _Section("Risks and mitigations", "two_column", (
        "Risk: underestimating {a}", "Risk: {b} changes under us",
        "Mitigation: a small pilot first", "Mitigation: review the plan regularly")),
    "roadmap": _Section("Roadmap", "bullets", (
        "Now: agree on goals for {a}", "Next: a pilot with {b}",
        "Later: scale what works across {c}")),
    "summary": _Section("Summary", "bullets", (
        "{A}, {b} and {c} in one picture", "What we propose", "What we need to decide")),
}  # fmt: skip
_PRIORITY = (
    "key_points", "context", "approach", "problem", "roadmap",
    "examples", "risks", "data", "summary", "quote",
)  # fmt: skip
_DEEP_DIVE_ANGLES = ("in depth", "in practice", "trade-offs", "open questions")
_DEEP_DIVE_LAYOUTS: tuple[Layout, ...] = ("bullets", "two_column", "text")
_CLOSING = _Section("Thank you", "closing", (
    "Takeaway: {a} and {b} move together", "Next step: agree on a first pilot",
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
        (f"What {term} means for {{topic}}", f"{term[:1].upper()}{term[1:]} {angle}: what we know",
         f"What to watch with {term}"),
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
    lines = [
        f"Slide {index + 1} of {len(plan.slides)}: {outline.title}.",
        f"Deck: {plan.title}. Topic: {_Subject.of(brief.prompt).phrase}.",
    ]
    if outline.key_points:
        lines.append(
            "Talk through: " + "; ".join(p.rstrip(".;: ") for p in outline.key_points) + "."
        )
    if brief.language:
        lines.append(f"[lang: {brief.language}] Not translated: the offline writer uses English.")
    lines.append(f"{_LABEL}; replace these notes with your own.")
    return "\n".join(lines)
