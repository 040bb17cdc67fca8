"""One option of Wireshark's options dialog, as data: the ``arg`` line of ``--extcap-config``,
its ``value`` lines, its tooltip. The capture's options (:mod:`.options`) and swtpm-ssh's
(:mod:`.ssh_options`) are declared with these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: the kinds of control Wireshark's options dialog has (extcap ``{type=...}``)
#: (string and password: swtpm-ssh's server and login fields, ssh_options.py)
OptionType = Literal[
    "radio", "selector", "boolflag", "unsigned", "fileselect", "string", "password"
]


@dataclass(frozen=True)
class Choice:
    """One ``value`` line of a radio or selector option."""

    value: str
    display: str


@dataclass(frozen=True)
class Option:
    """One ``arg`` line of ``--extcap-config`` (Wireshark builds the dialog from it)."""

    call: str
    display: str
    type: OptionType
    tooltip: str
    group: str
    default: str = ""  # a choice's value, "true"/"false" for a boolflag, a number
    choices: tuple[Choice, ...] = ()
    range: tuple[int, int] | None = None
    extra: str = ""  # further {key=value} fields, e.g. "{mustexist=false}"

    @property
    def dest(self) -> str:
        return self.call.lstrip("-").replace("-", "_")


#: Wireshark shows a plain-text tooltip as one line, however wide; a tooltip longer
#: than this is wrapped at about this many characters
TOOLTIP_WIDTH = 60
#: how a wrapped tooltip begins (Qt: rich text, lines broken only at ``<br>``)
RICH_TOOLTIP = '<p style="white-space:nowrap">'


def tooltip_text(text: str) -> str:
    """A tooltip as Wireshark's options dialog shows it well: short text as it is;
    longer text as Qt rich text, lines of at most :data:`TOOLTIP_WIDTH` characters
    joined by ``<br>`` in a paragraph that Qt does not wrap again. An extcap line
    cannot hold a newline (Wireshark splits its answer at each), and Qt breaks lines
    only in a tooltip it takes for rich text: one whose first ``<`` starts an HTML
    tag (it then also wraps on its own, at a narrower width: hence ``nowrap``)."""
    if len(text) <= TOOLTIP_WIDTH:
        return text
    import html
    import textwrap

    lines = textwrap.wrap(text, TOOLTIP_WIDTH, break_long_words=False, break_on_hyphens=False)
    body = "<br>".join(html.escape(line, quote=False) for line in lines)
    return f"{RICH_TOOLTIP}{body}</p>"
