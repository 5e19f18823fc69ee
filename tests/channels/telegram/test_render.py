"""Markdown -> Telegram HTML: what each construct becomes, and for any input that the result
parses as Telegram parses HTML (the fake's parser, tdlib's rules) and shows no more characters
than the Markdown had — so a part the core chunked to 4,000 never exceeds Telegram's 4,096."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawgate.bundled.telegram.render import MAX_TEXT, render, split_plain, units, visible
from tests.support.fakes.telegram_text import parse


@pytest.mark.parametrize(("markdown", "html"), [
    ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
    ("*it* and _it_, not snake_case_name", "<i>it</i> and <i>it</i>, not snake_case_name"),
    ("***both***", "<b><i>both</i></b>"),
    ("*a **b** c*", "<i>a <b>b</b> c</i>"),
    ("~~gone~~ ||secret|| a || b", "<s>gone</s> <tg-spoiler>secret</tg-spoiler> a || b"),
    ("x < y & z > w", "x &lt; y &amp; z &gt; w"),
    ("`a <b>` and ``x ` y``", "<code>a &lt;b&gt;</code> and <code>x ` y</code>"),
    ("[site **x**](https://e.com/?a=1&b=2)",
     '<a href="https://e.com/?a=1&amp;b=2">site <b>x</b></a>'),
    ("![a cat](https://e.com/c.png)", '<a href="https://e.com/c.png">a cat</a>'),
    ("[bad](javascript:alert(1))", "[bad](javascript:alert(1))"),
    ("<https://e.com>", '<a href="https://e.com">https://e.com</a>'),
    ("# Title\n- one\n* two\n  + three", "<b>Title</b>\n• one\n• two\n  • three"),
    ("> quoted **b**\n>> deeper\nafter", "<blockquote>quoted <b>b</b>\ndeeper</blockquote>\nafter"),
    ("```python\nprint('<hi>')\n```", '<pre><code class="language-python">print(\'&lt;hi&gt;\')'
                                      "</code></pre>"),
    ("```\nno language\n```", "<pre>no language</pre>"),
    ("```sh\nunclosed at the end", '<pre><code class="language-sh">unclosed at the end'
                                   "</code></pre>"),
    ("| a | b |\n|---|:-:|\n| 1 | 2 |", "<pre>| a | b |\n|---|:-:|\n| 1 | 2 |</pre>"),
    ("---", "———"),
    ("unclosed **bold and *it", "unclosed **bold and *it"),
    ("\\*literal\\* \\_too\\_", "*literal* _too_"),
    ("**bold\nacross lines**", "**bold\nacross lines**"),
])
def test_constructs(markdown: str, html: str) -> None:
    assert render(markdown) == html
    parse(html, "HTML")  # Telegram would take it


TOKENS = ["a", "b ", "word ", " ", "\n", "\n\n", "*", "**", "***", "_", "__", "~~", "||", "`",
          "```", "```py\n", "\n```\n", "[", "]", "(", ")", "![", "](https://e.com/x)",
          "<", ">", "&", "&amp;", "\\", "\\*", "# ", "- ", "> ", "| x |", "\n|---|\n", "---",
          "<https://e.com>", "é", "😀", "\t"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_any_markdown_renders_to_valid_html_no_longer_than_the_source(markdown: str) -> None:
    html = render(markdown)
    text, _entities = parse(html, "HTML")  # raises on anything Telegram would refuse
    assert text == visible(html)
    assert len(text) <= len(markdown) and units(text) <= units(markdown)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
               max_size=300))
def test_any_text_renders_to_valid_html(text: str) -> None:
    html = render(text)
    shown, _ = parse(html, "HTML")
    assert len(shown) <= len(text)


def test_plain_pieces_fit_telegram() -> None:
    emoji = "😀" * 3000  # 6,000 UTF-16 units: more than one message even as plain text
    pieces = split_plain(emoji)
    assert "".join(pieces) == emoji and all(units(p) <= MAX_TEXT for p in pieces)
    words = "word " * 2000
    pieces = split_plain(words)
    assert "".join(pieces) == words and len(pieces) == 3
    assert all(p.endswith(" ") for p in pieces[:-1])  # cut at spaces, not inside words
    assert split_plain("short") == ["short"] and split_plain("") == []
