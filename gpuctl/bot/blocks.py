"""Block Kit pieces for the bot's replies: escaped text, narrow code blocks, lists cut with a count.

Every piece of text that did not come from gpuctl itself (what a user typed,
names read from the cluster, alert labels) goes through `esc` before it lands
in mrkdwn: an unescaped `<!channel>` in a pod name or a command argument
would otherwise notify a whole channel. Slack limits a section's text to 3000
characters and a message to 50 blocks; the helpers here stay under both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Block = dict[str, Any]

SECTION_LIMIT = 3000  # characters of text in one section block (Slack's limit)
MAX_BLOCKS = 50  # blocks in one message (Slack's limit)
CODE_BUDGET = SECTION_LIMIT - 100  # room for the fences and a "… more" line


def esc(text: object) -> str:
    """Text made inert for mrkdwn: &, < and > escaped as Slack asks (no mentions, links or channel pings)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoted(text: str, limit: int = 40) -> str:
    """A user's word quoted back, shortened and escaped: `'node-…'`."""
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return esc(repr(shown))


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150], "emoji": False}}


def section(mrkdwn: str) -> Block:
    if len(mrkdwn) > SECTION_LIMIT:
        mrkdwn = mrkdwn[: SECTION_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def fields(pairs: Sequence[tuple[str, str]]) -> Block:
    """Label/value pairs shown two to a row (at most 10, Slack's limit); values are mrkdwn, escape them first."""
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": f"*{label}*\n{value}"[:2000]} for label, value in pairs[:10]],
    }


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": t[:SECTION_LIMIT]} for t in texts[:10] if t]}


def divider() -> Block:
    return {"type": "divider"}


def code(lines: Sequence[str], *, more_hint: str = "") -> Block:
    """A fixed-width block; lines past the size limit are cut and counted. Lines are escaped here."""
    kept: list[str] = []
    used = 0
    for line in lines:
        text = esc(line)
        if used + len(text) + 1 > CODE_BUDGET:
            break
        kept.append(text)
        used += len(text) + 1
    body = "\n".join(kept) or " "
    cut = len(lines) - len(kept)
    tail = f"\n_{cut} more lines not shown{'; ' + more_hint if more_hint else ''}_" if cut else ""
    return section(f"```{body}```{tail}")


def button(text: str, action_id: str, value: str, *, style: Literal["primary", "danger"] | None = None) -> Block:
    element: Block = {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id, "value": value}
    if style:
        element["style"] = style
    return element


def actions(*elements: Block) -> Block:
    return {"type": "actions", "elements": list(elements)}


@dataclass(frozen=True)
class Cut:
    """The first `limit` items of a list and how many were left out."""

    shown: list[Any]
    total: int

    @property
    def hidden(self) -> int:
        return self.total - len(self.shown)

    def note(self, noun: str, hint: str) -> str:
        """'showing 15 of 240 idle pods; narrow with …' or '' when nothing was cut."""
        if not self.hidden:
            return ""
        return f"showing {len(self.shown)} of {self.total} {noun}; {hint}"


def cut(items: Sequence[Any], limit: int) -> Cut:
    return Cut(list(items[:limit]), len(items))


@dataclass(frozen=True)
class Reply:
    """One bot message: Block Kit blocks plus the plain text notifications and old clients show."""

    text: str
    blocks: list[Block] = field(default_factory=list)
    in_channel: bool = False  # visible to the channel (plans to approve), else only to the asker
    replaces: bool = False  # a click's answer that updates the message clicked (else a new one, to the clicker)

    def message(self) -> dict[str, Any]:
        """Keyword arguments for Bolt's `respond` / `ack` and for chat.postMessage (minus the channel)."""
        blocks = self.blocks[:MAX_BLOCKS]
        return {"text": self.text[:SECTION_LIMIT], "blocks": blocks, "response_type": "in_channel" if self.in_channel else "ephemeral"}


def notice(title: str, body: str, *, hint: str = "") -> Reply:
    """A short message with no data: an error, a refusal, a hint. `body` is mrkdwn (escape what users typed)."""
    blocks = [section(f"*{title}*\n{body}")]
    if hint:
        blocks.append(context(hint))
    return Reply(text=f"{title}: {body}", blocks=blocks)
