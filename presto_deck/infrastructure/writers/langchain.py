"""The LLM deck writer: any LangChain chat model (``provider:model``) behind the DeckWriter port.

Every model call runs under its own timeout and is retried with exponential backoff and jitter
(stamina) on timeouts, connection errors, 429 (after the provider's ``Retry-After``, when it
gives one), 5xx and unparseable output; anything else, or the last failed attempt, surfaces as
one ``WriterError`` that the caller turns into a failed deck. That error's reason names a
category only; the provider's own message, which may name internal hosts, goes to the logs.

Each attempt is first counted against the deck's model-call budget, which may refuse it.

A plan is asked for with its number of slides stated in the schema. Extra slides are cut; a
plan that comes back short is asked for once more, with the short plan to build on, and if the
model still falls short the deck is written with the slides it planned.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import re
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import msgspec
import openai
import stamina
from langchain.chat_models import init_chat_model
from langchain_core.exceptions import ModelError
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from loguru import logger

from presto_deck.application.ports import ModelCallBudget, RunStopped, WriterError
from presto_deck.domain.content import LAYOUTS, DeckBrief, DeckPlan, SlideContent, SlideRequest

__all__ = ["LangChainWriter", "TokenUsage", "WriterError"]

StructuredOutput = Literal["function_calling", "json_schema"]
_T = TypeVar("_T")
_MARKDOWN_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)
#: The key sent to a server given by its base URL when none is set.
_NO_KEY = "not-needed"
#: The longest wait a provider's Retry-After can impose before the next attempt.
_MAX_RETRY_AFTER_SECONDS = 60.0


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens one model response cost."""

    model: str
    input_tokens: int
    output_tokens: int


class _BadOutput(Exception):
    """The model answered, but not with the structure we asked for; asking again may help."""


#: What the client stack raises on an answer it cannot read at all: a body that is not UTF-8 or
#: not JSON, an empty list of choices, tool arguments of the wrong type, a web page for an
#: answer. The model may well answer properly when asked again.
_UNREADABLE = (ValueError, TypeError, LookupError, openai.APIResponseValidationError)


_SYSTEM_PROMPT = f"""\
You are an expert presentation writer. You plan slide decks that tell a clear story and write \
slides that are concise, concrete and accurate.
Rules:
- Always answer with the requested structure, never with prose around it.
- Write in the requested language; if none is given, use the language of the user's request.
- Slide layouts are one of: {", ".join(LAYOUTS)}.
- Bullets are short phrases (at most about 12 words), 3 to 6 per slide.
- Text may use only simple inline markup: <strong>, <em>, <code>. No other HTML, no scripts.
- Presenter notes are two to four sentences the speaker can say aloud."""


class LangChainWriter:
    """Plans decks and writes slides with a LangChain chat model.

    Use it from one event loop: langchain-openai shares an HTTP client per (base URL, timeout)
    across the process, and its pooled connections belong to the loop that opened them.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: str | None,
        timeout_seconds: float,
        max_attempts: int,
        structured_output: StructuredOutput,
        on_usage: Callable[[TokenUsage], None] | None = None,
    ) -> None:
        self.name = model
        self._api_key = api_key
        self._timeout_seconds = timeout_seconds
        self._max_attempts = max_attempts
        self._structured_output = structured_output
        self._on_usage = on_usage
        kwargs = _model_kwargs(model, base_url, api_key, timeout_seconds)
        self._chat_model = init_chat_model(model, **kwargs)
        self._slide_model = self._structured(
            _json_schema(SlideContent, "The written content of one slide of a deck.")
        )

    async def plan(self, brief: DeckBrief, budget: ModelCallBudget) -> DeckPlan:
        wanted = brief.slide_count
        runnable = self._structured(_plan_schema(wanted))
        prompt = _plan_prompt(brief)
        plan = await self._generate("plan the deck", runnable, prompt, DeckPlan, budget)
        if len(plan.slides) < wanted:
            again = _replan_prompt(brief, plan)
            try:
                longer = await self._generate(
                    "complete the plan", runnable, again, DeckPlan, budget
                )
            except WriterError as exc:  # a short deck is still a deck
                logger.warning("keeping a plan of {} slides: {}", len(plan.slides), exc.detail)
            else:
                plan = max(plan, longer, key=lambda candidate: len(candidate.slides))
        return msgspec.structs.replace(
            plan, title=brief.title or plan.title, slides=plan.slides[:wanted]
        )

    async def write_slide(
        self, brief: DeckBrief, plan: DeckPlan, index: int, budget: ModelCallBudget
    ) -> SlideContent:
        """Write slide ``index`` (0-based) of the plan."""
        if not 0 <= index < len(plan.slides):
            raise IndexError(f"slide {index} is outside a plan of {len(plan.slides)} slides")
        prompt = _slide_prompt(brief, plan, index)
        return await self._generate(
            f"write slide {index + 1}", self._slide_model, prompt, SlideContent, budget
        )

    async def edit_slide(self, request: SlideRequest, budget: ModelCallBudget) -> SlideContent:
        """Rewrite a slide as the user asks, or write a new one, in the deck's flow."""
        task = "rewrite a slide" if request.current is not None else "write a new slide"
        return await self._generate(
            task, self._slide_model, _edit_prompt(request), SlideContent, budget
        )

    def _structured(self, schema: dict[str, Any]) -> Runnable[LanguageModelInput, Any]:
        runnable: Runnable[LanguageModelInput, Any] = self._chat_model.with_structured_output(
            schema, method=self._structured_output, include_raw=True
        )
        return runnable

    async def _generate(
        self,
        task: str,
        runnable: Runnable[LanguageModelInput, Any],
        prompt: str,
        output_type: type[_T],
        budget: ModelCallBudget,
    ) -> _T:
        messages = [SystemMessage(_SYSTEM_PROMPT), HumanMessage(prompt)]
        attempts = 0
        try:
            async for attempt in stamina.retry_context(
                on=_retry_wait,
                attempts=self._max_attempts,
                # Each attempt has its own timeout; the attempt count bounds the whole call.
                timeout=None,
                wait_initial=0.5,
                wait_max=20.0,
                wait_jitter=1.0,
            ):
                with attempt:
                    attempts = attempt.num
                    await budget.spend()
                    return await self._invoke_once(runnable, messages, output_type)
        except RunStopped:
            raise
        except Exception as exc:
            raise self._failure(task, attempts, exc) from exc
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _invoke_once(
        self,
        runnable: Runnable[LanguageModelInput, Any],
        messages: list[BaseMessage],
        output_type: type[_T],
    ) -> _T:
        # The client has the same timeout, but not every provider honours it for the whole
        # response (slow streams, stuck connection pools); this one always holds.
        async with asyncio.timeout(self._timeout_seconds):
            try:
                output = await runnable.ainvoke(messages)
            except _UNREADABLE as exc:  # an answer the client could not even parse
                raise _BadOutput(f"unreadable answer ({type(exc).__name__}: {exc})") from exc
        # include_raw=True makes LangChain answer {"raw": AIMessage, "parsed", "parsing_error"}.
        raw, error = output["raw"], output["parsing_error"]
        if not isinstance(raw, AIMessage):
            raise _BadOutput(f"no message in the answer ({error})")
        if self._on_usage is not None and (usage := raw.usage_metadata) is not None:
            self._on_usage(
                TokenUsage(
                    model=self.name,
                    input_tokens=usage["input_tokens"],
                    output_tokens=usage["output_tokens"],
                )
            )
        if error is not None:
            raise _BadOutput(f"unparseable structured output ({error})")
        try:
            return msgspec.convert(_structured_payload(raw), output_type)
        except msgspec.ValidationError as exc:
            raise _BadOutput(f"output does not match the schema: {exc}") from exc

    def _failure(self, task: str, attempts: int, exc: Exception) -> WriterError:
        code, reason = _category(exc, self._timeout_seconds)
        detail = f"model {self.name} could not {task} after {attempts} attempt(s): "
        detail += reason if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        if self._api_key:
            # Providers echo a wrong key back ("Incorrect API key provided: ..."). Whole tokens
            # only, so that a dummy key such as "x" does not mangle the rest of the message.
            key = rf"(?<![\w-]){re.escape(self._api_key)}(?![\w-])"
            detail = re.sub(key, "***", detail)
        return WriterError(f"{reason} ({attempts} attempt(s))", code=code, detail=detail)


def _category(exc: Exception, timeout_seconds: float) -> tuple[str, str]:
    """A code and a sentence for the user that say what went wrong, without the provider's text."""
    if isinstance(exc, TimeoutError):
        return "llm_timeout", f"The model did not answer within {timeout_seconds:g} s"
    if isinstance(exc, _BadOutput | openai.LengthFinishReasonError):
        return "llm_bad_output", "The model's answers did not have the expected structure"
    status = getattr(exc, "status_code", None)
    if status == 429:
        return "llm_rate_limited", "The model provider kept refusing requests as too many"
    if status in (401, 403):
        return "llm_refused", "The model provider refused the credentials (check the API key)"
    if isinstance(status, int) and 400 <= status < 500:
        return "llm_refused", f"The model provider refused the request (HTTP {status})"
    if isinstance(status, int) or isinstance(exc, ConnectionError | openai.APIConnectionError):
        return "llm_unavailable", "The model provider was unavailable"
    return "writer_failed", "The model call failed"


def _retry_wait(exc: Exception) -> bool | float:
    """Whether to try again (stamina's backoff hook), and after how long if the provider said."""
    if not _is_transient(exc):
        return False
    after = _retry_after(exc)
    return True if after is None else min(after, _MAX_RETRY_AFTER_SECONDS)


def _retry_after(exc: Exception) -> float | None:
    """Seconds from the ``Retry-After`` (or ``retry-after-ms``) header of a provider's answer.

    None when there is none or it makes no sense: a provider's header is untrusted input, and a
    NaN handed to asyncio.sleep would break the ordering of every timer of the event loop.
    """
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        if (millis := headers.get("retry-after-ms")) is not None:
            seconds = float(millis) / 1000
        elif (value := headers.get("retry-after")) is None:
            return None
        elif value.strip().replace(".", "", 1).isdigit():
            seconds = float(value)
        else:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _is_transient(exc: BaseException) -> bool:
    """Whether asking again may succeed: timeouts, lost connections, 429, 5xx, bad output."""
    # A LengthFinishReasonError is an answer cut off mid-structure: bad output too.
    transient = (TimeoutError, ConnectionError, openai.APIConnectionError, _BadOutput)
    if isinstance(exc, (*transient, openai.LengthFinishReasonError)):
        return True
    # LangChain maps every provider's errors onto ModelError subclasses that say this.
    if isinstance(exc, ModelError) and exc.is_retryable:
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)


def _structured_payload(message: AIMessage) -> Any:
    """The structure the model answered with, parsed strictly.

    Not LangChain's ``parsed``: its JSON parser repairs truncated JSON, which would turn a
    cut-off answer into a slide with missing parts instead of a retry.
    """
    if message.tool_calls:
        return message.tool_calls[0]["args"]
    if message.invalid_tool_calls:
        raise _BadOutput("the tool call's arguments are not valid JSON")
    text = message.text.strip()
    if fenced := _MARKDOWN_FENCE.fullmatch(text):
        text = fenced.group(1)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _BadOutput(f"the answer is not valid JSON: {exc}") from exc


def _model_kwargs(
    model: str, base_url: str | None, api_key: str | None, timeout_seconds: float
) -> dict[str, Any]:
    """Settings for ``init_chat_model``, only those set: some servers reject null parameters."""
    kwargs: dict[str, Any] = {}
    if base_url:
        kwargs["base_url"] = base_url
    if model.split(":", 1)[0] == "ollama":
        # ChatOllama has neither `timeout`, `api_key` nor `max_retries`; its httpx client
        # takes them, and it does not retry on its own.
        kwargs["client_kwargs"] = {"timeout": timeout_seconds}
        if api_key:
            kwargs["client_kwargs"]["headers"] = {"Authorization": f"Bearer {api_key}"}
        return kwargs
    kwargs["timeout"] = timeout_seconds
    kwargs["max_retries"] = 0  # we retry ourselves, with backoff and a per-attempt timeout
    if api_key:
        kwargs["api_key"] = api_key
    elif base_url:
        # A local OpenAI-compatible server (vLLM, llama.cpp, Ollama) wants no key, but the
        # client refuses to start without one.
        kwargs["api_key"] = _NO_KEY
    return kwargs


def _json_schema(struct: type[msgspec.Struct], description: str) -> dict[str, Any]:
    """The struct's JSON schema, self-contained, with the top-level title LangChain names it by.

    msgspec answers ``{"$ref": "#/$defs/X", "$defs": {...}}``; the refs are inlined because
    some OpenAI-compatible servers (llama.cpp grammars, older vLLM) handle ``$ref`` poorly.
    """
    schema = msgspec.json.schema(struct)
    definitions: dict[str, Any] = schema.get("$defs", {})
    inlined: dict[str, Any] = _inline_refs(schema, definitions, ())
    inlined.pop("$defs", None)
    return {**inlined, "title": struct.__name__, "description": description}


def _inline_refs(node: Any, definitions: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline_refs(item, definitions, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if isinstance(ref := node.get("$ref"), str):
        name = ref.removeprefix("#/$defs/")
        if name in seen:
            raise ValueError(f"recursive schema through {name!r} cannot be inlined")
        return _inline_refs(definitions[name], definitions, (*seen, name))
    return {key: _inline_refs(value, definitions, seen) for key, value in node.items()}


def _brief_lines(brief: DeckBrief) -> str:
    return (
        f"Request: {brief.prompt}\nNumber of slides: {brief.slide_count}\n"
        f"Deck title: {brief.title or '(choose a fitting title)'}\n"
        f"Language: {brief.language or '(the language of the request)'}\n"
        f"Template: {brief.template or '(none; a general-purpose deck)'}"
    )


def _plan_schema(slide_count: int) -> dict[str, Any]:
    """The plan's schema, which says how many slide outlines it must have."""
    schema = _json_schema(
        DeckPlan, f"The plan of a slide deck: title, story and exactly {slide_count} outlines."
    )
    slides = schema["properties"]["slides"]
    slides.update(minItems=slide_count, maxItems=slide_count)
    slides["description"] = f"Exactly {slide_count} slide outlines, in presentation order."
    return schema


def _plan_prompt(brief: DeckBrief) -> str:
    return (
        f"Plan a presentation deck.\n\n{_brief_lines(brief)}\n\n"
        f"Return the deck title, a one-paragraph summary of the story the deck tells, and exactly "
        f"{brief.slide_count} slide outlines in presentation order. Each outline has a title, a "
        f"layout and 2 to 5 key points. Open with a title slide and end with a closing slide "
        f"when there are at least three slides."
    )


def _replan_prompt(brief: DeckBrief, short: DeckPlan) -> str:
    return (
        f"{_plan_prompt(brief)}\n\nA first plan had only {len(short.slides)} slide outlines:\n"
        f"{msgspec.json.encode(short).decode()}\n\n"
        f"Return the complete plan with exactly {brief.slide_count} slide outlines: keep those "
        f"that fit and add the missing ones where they belong in the story."
    )


def _slide_prompt(brief: DeckBrief, plan: DeckPlan, index: int) -> str:
    outline = msgspec.json.encode(plan.slides[index]).decode()
    return (
        f"Write one slide of a presentation deck.\n\n{_brief_lines(brief)}\n\n"
        f"The plan of the whole deck:\n{msgspec.json.encode(plan).decode()}\n\n"
        f"Write slide {index + 1} of {len(plan.slides)}, whose outline is:\n{outline}\n\n"
        f"Keep its title and layout unless they clearly do not fit, cover its key points, and do "
        f"not repeat what the other slides of the plan cover. Add presenter notes."
    )


def _edit_prompt(request: SlideRequest) -> str:
    def shown(content: SlideContent | None) -> str:
        return "(none)" if content is None else msgspec.json.encode(content).decode()

    plan = "(none)" if request.plan is None else msgspec.json.encode(request.plan).decode()
    where = f"slide {request.position} of {request.total}"
    ask = (
        f"Rewrite {where} as the user asks. The slide as it is:\n{shown(request.current)}"
        if request.current is not None
        else f"Write a new slide, which will be {where}."
    )
    return (
        f"Edit a presentation deck that has already been written.\n\n"
        f"{_brief_lines(request.brief)}\n\nThe plan of the deck:\n{plan}\n\n"
        f"{ask}\n\nThe slide before it:\n{shown(request.previous)}\n\n"
        f"The slide after it:\n{shown(request.following)}\n\n"
        f"The user's request for this slide:\n{request.prompt}\n\n"
        f"Do what the user asks; keep the deck's language and voice, keep what the request does "
        f"not change, and do not repeat the neighbouring slides. Add presenter notes."
    )
