"""Whatever markup a model returns, what comes out of ``sanitize_html`` cannot run anything."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presto_deck.infrastructure.writers.sanitizer import _bleached, sanitize_html

HOSTILE_INPUTS: tuple[str, ...] = (
    # script, in every casing and shape
    "<script>alert(1)</script>",
    "<SCRIPT>alert(1)</SCRIPT>",
    "<ScRiPt>alert(1)</sCrIpT>",
    '<script type="text/javascript" src="https://evil.example/x.js"></script>',
    "<script>alert(1)",
    "<script\n>alert(1)</script\n>",
    "<script/src=//evil.example/x.js></script>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<scr<script></script>ipt>alert(1)</scr<script></script>ipt>",
    "<<script>script>alert(1)<</script>/script>",
    "<!--<script>-->alert(1)<!--</script>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    '<p title="</p><script>alert(1)</script>">x</p>',
    # event handlers of all kinds, in odd casing
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=x OnErRoR=alert(1)>",
    '<p onclick="alert(1)">click</p>',
    '<a href="https://example.com" onmouseover="alert(1)">hover</a>',
    "<body onload=alert(1)>",
    "<strong OnFocus=alert(1) tabindex=0>x</strong>",
    "<span/onpointerenter=alert(1)>x</span>",
    '<details open ontoggle="alert(1)">x</details>',
    '<video><source onerror="alert(1)"></video>',
    # URLs that run script
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="&#x6A;&#x61;&#x76;&#x61;script:alert(1)">x</a>',
    '<a href="java\tscript:alert(1)">x</a>',
    '<a href=" \n javascript:alert(1)">x</a>',
    '<a href="javascript&colon;alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<a href="DATA:text/html,<script>alert(1)</script>">x</a>',
    # embedding and forms
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><input type=submit></form>',
    '<button formaction="javascript:alert(1)">go</button>',
    "<input onfocus=alert(1) autofocus>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<link rel="stylesheet" href="javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    # svg, math and noscript tricks
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<math href="javascript:alert(1)">x</math>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "<noscript><style></noscript><img src=x onerror=alert(1)></style>",
    # style-based script
    "<style>@import 'https://evil.example/x.css';</style>",
    '<p style="background-color: url(javascript:alert(1))">x</p>',
    '<p style="color: expression(alert(1))">x</p>',
    '<p style="color: red; behavior: url(x.htc)">x</p>',
    '<p style="-moz-binding: url(https://evil.example/x.xml#x)">x</p>',
    '<p style="color: \\65xpression(alert(1))">x</p>',
    '<p style="color: ex/**/pression(alert(1))">x</p>',
    '<span style="color: red; @import url(x)">x</span>',
    '<p style="color: &#101;xpression(alert(1))">x</p>',
    '<div style="background-color: u\\72l(javascript:alert(1))">x</div>',
)

_FORBIDDEN_TAGS = frozenset(
    {
        "script", "style", "iframe", "object", "embed", "form", "input", "button", "meta",
        "link", "base", "svg", "math", "noscript", "img", "frame", "applet", "template",
    }
)  # fmt: skip
_BAD_URL = re.compile(r"(?:java|vb)script:|data:", re.IGNORECASE)
_BAD_CSS = re.compile(r"expression|url\s*\(|@import|behavior|binding|\\|/\*", re.IGNORECASE)
_RAW_TAG = re.compile(r"<\s*/?\s*(?:" + "|".join(_FORBIDDEN_TAGS) + r")\b", re.IGNORECASE)


class _Elements(HTMLParser):
    """Reads markup as a browser would: tag names lowercased, attribute values entity-decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag


def assert_inert(markup: str) -> None:
    """Fail if the markup still holds anything that could run script or load a resource."""
    assert not _RAW_TAG.search(markup), markup
    parser = _Elements()
    parser.feed(markup)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag not in _FORBIDDEN_TAGS, markup
        for name, value in attrs:
            assert not name.lower().startswith("on"), markup
            assert name.lower() not in {"srcdoc", "formaction", "src", "action"}, markup
            # Browsers drop whitespace and control characters inside a URL's scheme.
            squeezed = re.sub(r"[\x00-\x20]", "", unescape(value or ""))
            assert not _BAD_URL.search(squeezed), markup
            if name.lower() == "style":
                assert not _BAD_CSS.search(squeezed), markup


@pytest.mark.parametrize("markup", HOSTILE_INPUTS)
def test_hostile_markup_comes_out_inert(markup: str) -> None:
    assert_inert(sanitize_html(markup))


# Pieces a model might glue together: halves of tags, quotes, and fragments of the corpus.
_PIECES = st.sampled_from(
    (*HOSTILE_INPUTS, "<", ">", "</", '"', "'", "=", " ", "<scr", "ipt>", "<a href=", "java",
     "script:", "<p style=", "color:", "url(", "<!--", "-->", "<svg", "<math", "&#106;", "x")
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_any_mix_of_hostile_fragments_comes_out_inert(markup: str) -> None:
    assert_inert(sanitize_html(markup))


def test_the_corpus_is_large_enough_to_mean_something() -> None:
    assert len(set(HOSTILE_INPUTS)) >= 40


@pytest.mark.parametrize(
    "markup",
    [
        "<script>alert('leak')</script>",
        "<SCRIPT type=module>alert('leak')",
        "<style>body { color: red } /* alert('leak') */</style>",
        "<svg><desc>alert('leak')</desc></svg>",
        "<noscript>alert('leak')</noscript>",
    ],
)
def test_code_inside_script_like_elements_does_not_show_up_as_text(markup: str) -> None:
    cleaned = sanitize_html(f"<p>before</p>{markup}")

    assert "leak" not in cleaned
    assert cleaned.startswith("<p>before</p>")


def test_text_after_a_closed_script_element_is_kept() -> None:
    assert sanitize_html("<ScRiPt >alert(1)</SCRIPT >after") == "after"


def test_slide_markup_survives_unchanged() -> None:
    markup = (
        "<p>Plain <strong>bold</strong>, <em>italic</em> and <code>code</code>.</p>"
        "<ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>"
        "<blockquote>quoted</blockquote><h3>Heading</h3>"
        "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>"
    )

    assert sanitize_html(markup) == markup


def test_https_and_mailto_links_survive_with_their_title() -> None:
    markup = (
        '<a href="https://example.com/a?b=c" title="Example">web</a> '
        '<a href="mailto:team@example.com">mail</a>'
    )

    assert sanitize_html(markup) == markup


def test_an_allowed_style_property_survives_and_others_are_dropped() -> None:
    cleaned = sanitize_html(
        '<span style="color: #c00; position: fixed; font-weight: bold; top: 0">x</span>'
    )

    assert cleaned == '<span style="color: #c00; font-weight: bold">x</span>'


def test_colour_functions_are_allowed_in_style() -> None:
    cleaned = sanitize_html('<p style="background-color: rgba(0, 0, 0, 0.5)">x</p>')

    assert cleaned == '<p style="background-color: rgba(0, 0, 0, 0.5)">x</p>'


def test_a_style_with_nothing_allowed_left_is_removed_entirely() -> None:
    assert sanitize_html('<p style="position: fixed">x</p>') == "<p>x</p>"


def test_class_names_that_imitate_the_renderers_are_dropped() -> None:
    cleaned = sanitize_html(
        '<code class="language-python">x</code><span class="slide theme--dark">y</span>'
    )

    assert cleaned == '<code class="language-python">x</code><span>y</span>'


def test_disallowed_tags_are_stripped_but_their_text_is_kept() -> None:
    assert sanitize_html("<article><marquee>moving</marquee> text</article>") == "moving text"


def test_text_that_looks_like_markup_stays_escaped() -> None:
    assert (
        sanitize_html("1 &lt; 2 &amp;&amp; 3 > 2 &lt;b&gt;")
        == "1 &lt; 2 &amp;&amp; 3 &gt; 2 &lt;b&gt;"
    )


def test_unclosed_tags_are_closed_so_a_fragment_cannot_swallow_the_page() -> None:
    assert sanitize_html("<strong><em>open") == "<strong><em>open</em></strong>"


def test_empty_markup_stays_empty() -> None:
    assert sanitize_html("") == ""


def test_threads_sanitizing_at_once_each_get_their_own_answer() -> None:
    """Sanitizing runs off the event loop, several slides at once: each thread's cleaner is its
    own, so no markup leaks into another's result."""
    inputs = [
        f'<p style="color: red">slide {n}</p><script>x{n}()</script><a href="javascript:{n}">a</a>'
        for n in range(400)
    ]
    alone = [sanitize_html(markup) for markup in inputs]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(sanitize_html, inputs))
    assert together == alone
    assert all(f"slide {n}<" in out and "script" not in out for n, out in enumerate(together))


# Text a model writes, and the characters the HTML parser treats specially among it.
_TEXTISH = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from(["<", ">", "&", "\r", "\x00", "\x0c", "\ufffe", "\ud800", '"', "'"]),
    )
)


@settings(max_examples=2000, deadline=None)
@given(_TEXTISH)
def test_text_that_skips_the_parser_comes_out_as_the_parser_would_make_it(text: str) -> None:
    """Plain text is escaped without bleach's parse; whatever the text, the result is bleach's."""
    assert sanitize_html(text) == (_bleached(text) if text else "")


def test_plain_text_is_only_escaped() -> None:
    assert sanitize_html('Revenue > costs, "always" \u2014 even in 2026') == (
        'Revenue &gt; costs, "always" \u2014 even in 2026'
    )
