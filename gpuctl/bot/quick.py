"""The answers that need nothing but the command's text (help, bad input): pure, so the ack can carry them.

The bot's front door process (gpuctl.bot.door_process) answers these in the ack itself without the
live state, which stays in the main process (gpuctl.bot.desk)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gpuctl.bot import commands as cmd
from gpuctl.bot.answers import help_reply, problem_reply
from gpuctl.bot.blocks import Reply

Outcome = Literal["ok", "invalid", "denied", "unavailable", "error"]


@dataclass(frozen=True)
class Answer:
    reply: Reply
    outcome: Outcome
    verb: str


def immediate(text: str) -> Answer | None:
    """The answer to `/gpu <text>` when it needs nothing but the text: help and bad input; None for the rest."""
    return quick_answer(cmd.parse(text))


def quick_answer(parsed: cmd.Command | cmd.Problem) -> Answer | None:
    if isinstance(parsed, cmd.Problem):
        return Answer(problem_reply(parsed), "invalid", "invalid")
    if isinstance(parsed, cmd.Help):
        return Answer(help_reply(parsed.topic), "ok", "help")
    return None
