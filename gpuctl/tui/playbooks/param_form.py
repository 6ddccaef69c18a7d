"""A playbook's parameters as a form: one typed field per parameter, checked as it is typed.

Enums, booleans and parameters the selection gives choices for (relabel-mig's
profiles) are a Select; the rest are inputs whose placeholder is the default. Each
field is checked with the parameter's own `parse` (the same code the engine
validates with), so type, bounds, patterns and choices are the playbook's, and the
problem shows under the field. `values()` is what goes to `engine.plan`: the text
of every field that is filled in (left empty: the default).
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Select, Static

from gpuctl.playbooks.spec import BoolParam, EnumParam, Playbook


def _describe(name: str, param: object, required: bool) -> Text:
    label = getattr(param, "label", lambda: "")()
    allowed = getattr(param, "allowed", lambda: "")()
    text = Text(name, style="bold")
    text.append(f"  {label}" + (" · required" if required else ""), style="cyan")
    if allowed and allowed != label:
        text.append(f"  {allowed}", style="dim")
    help_text = getattr(param, "help", "")
    if help_text:
        text.append(f"\n{help_text}", style="dim")
    return text


class ParamForm(Vertical):
    def __init__(
        self,
        playbook: Playbook,
        given: Mapping[str, str],
        choices: Mapping[str, tuple[str, ...]],
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.playbook = playbook
        self.given = dict(given)
        self.choices = dict(choices)

    def compose(self) -> ComposeResult:
        for name, param in self.playbook.parameters.items():
            yield Static(_describe(name, param, param.required), classes="param-label")
            default = getattr(param, "default", None)
            shown_default = None if default is None else param.show(default)
            options: tuple[str, ...] = ()
            if name in self.choices:
                options = self.choices[name]
            elif isinstance(param, EnumParam):
                options = param.choices
            elif isinstance(param, BoolParam):
                options = ("false", "true")
            value = self.given.get(name, shown_default)
            if options:
                yield Select(
                    [(o, o) for o in options], value=value if value in options else Select.BLANK,
                    allow_blank=not param.required and value not in options, id=f"param-{name}", compact=True,
                )  # fmt: skip
            else:
                placeholder = (
                    f"default {shown_default}" if shown_default is not None else ("required" if param.required else "optional")
                )
                yield Input(self.given.get(name, ""), placeholder=placeholder, id=f"param-{name}", compact=True)
            yield Static("", id=f"problem-{name}", classes="param-problem")

    def on_mount(self) -> None:
        for name in self.playbook.parameters:
            self._check(name)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id:
            self._check(event.input.id.removeprefix("param-"))

    def _text(self, name: str) -> str:
        widget = self.query_one(f"#param-{name}")
        if isinstance(widget, Select):
            value = widget.value
            return "" if value is Select.BLANK or value is None else str(value)
        assert isinstance(widget, Input)
        return widget.value.strip()

    def _check(self, name: str) -> str | None:
        text = self._text(name)
        problem = None
        if text:
            try:
                self.playbook.parameters[name].parse(text)
            except ValueError as e:
                problem = f"{name} {e}"
        self.query_one(f"#problem-{name}", Static).update(Text(problem or "", style="bold red"))
        return problem

    def problems(self) -> list[str]:
        return [p for name in self.playbook.parameters if (p := self._check(name))]

    def values(self) -> dict[str, str]:
        """The text of every filled-in field (an empty one keeps the playbook's default)."""
        return {name: text for name in self.playbook.parameters if (text := self._text(name))}
