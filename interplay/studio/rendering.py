"""Turn text as safe HTML: everything a model or a person wrote is escaped; only the protocol's
``<movie_title>`` markup becomes a link to the item's catalogue attributes."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote

from markupsafe import Markup, escape

from interplay.protocol import TITLE_CLOSE, TITLE_OPEN

_TITLE = re.compile(re.escape(TITLE_OPEN) + r"(.*?)" + re.escape(TITLE_CLOSE), re.S)


def render_turn_text(text: str | None, title_href: Callable[[str], str] | None = None) -> Markup:
    """``text`` escaped, with each marked title as ``<a class="title">`` (or ``<span>`` without
    ``title_href``). A ``<script>`` in the text comes out as text, never as markup."""
    if not text:
        return Markup("")
    out, pos = [], 0
    for m in _TITLE.finditer(text):
        out.append(escape(text[pos:m.start()]))
        title = m.group(1).strip()
        if title_href is None:
            out.append(Markup('<span class="title">{}</span>').format(title))
        else:
            out.append(Markup('<a class="title" href="{}">{}</a>').format(title_href(title), title))
        pos = m.end()
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def item_href(prefix: str) -> Callable[[str], str]:
    """Links to ``PREFIX/item?title=...``."""
    return lambda title: f"{prefix}/item?title={quote(title)}"
