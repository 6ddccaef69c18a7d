"""Find and load playbook definitions: the built-in ones shipped inside the package, plus a site directory.

The built-ins live in `gpuctl/playbooks/builtin/*.yaml` (package data, so they
are in every wheel and container image; the repository's top-level
`playbooks/` is a link to that folder, the one place to edit them). A site adds
its own with the `playbooks_dir` setting. Every file is checked whole: each
problem names the file, line and field, all files' problems are reported
together, the file name must be the playbook's name, and a name defined twice
is an error naming both files (a site customises a built-in by copying it
under a new name; the policy decides which ones anyone may run).

Reading is synchronous and small (a handful of files, once): async callers
wrap `load_catalog` in `asyncio.to_thread`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from gpuctl.errors import FileProblem, PlaybookError
from gpuctl.playbooks import marked
from gpuctl.playbooks.spec import Playbook

SUFFIXES = (".yaml", ".yml")


def builtin_dir() -> Traversable:
    """The shipped definitions, wherever the package is installed (checkout, wheel, container)."""
    return files("gpuctl.playbooks") / "builtin"


@dataclass(frozen=True)
class Catalog:
    """The playbooks by name, each with the file it came from."""

    playbooks: Mapping[str, Playbook]
    sources: Mapping[str, str]

    def get(self, name: str) -> Playbook:
        try:
            return self.playbooks[name]
        except KeyError:
            raise PlaybookError(
                f"no playbook named {name!r}", hint=f"known: {', '.join(sorted(self.playbooks)) or 'none'}"
            ) from None

    def __iter__(self) -> Iterator[Playbook]:
        return iter(self.playbooks[name] for name in sorted(self.playbooks))

    def __len__(self) -> int:
        return len(self.playbooks)


def _definitions(folder: Traversable) -> list[Traversable]:
    return sorted((f for f in folder.iterdir() if f.is_file() and f.name.endswith(SUFFIXES)), key=lambda f: f.name)


def parse_playbook(text: str, source: str) -> Playbook:
    """One definition from its text; PlaybookError listing every problem as `source:line: field: message`."""
    return _parse(text, source)[0]


def _parse(text: str, source: str) -> tuple[Playbook, int]:
    """The playbook and the line of its name."""
    try:
        doc = marked.read(text, source)
        playbook = marked.validate(Playbook, doc, source)
    except marked.ProblemsFound as e:
        marked.raise_as(PlaybookError, f"invalid playbook {source}", e.problems)
    line = doc.lines.get(("name",), 1)
    stem = Path(source).name.rsplit(".", 1)[0]
    if playbook.name != stem:
        problem = FileProblem(source, line, "name", f"{playbook.name!r} must match the file name {stem!r}")
        marked.raise_as(PlaybookError, f"invalid playbook {source}", [problem], hint=f"rename the file to {playbook.name}.yaml")
    return playbook, line


def load_catalog(site_dir: Path | None = None) -> Catalog:
    """The built-in playbooks plus those in `site_dir`; PlaybookError if any file is bad or two share a name."""
    folders: list[Traversable] = [builtin_dir()]
    if site_dir is not None:
        if not site_dir.is_dir():
            raise PlaybookError(f"playbooks directory {site_dir} does not exist", hint="fix playbooks_dir")
        folders.append(site_dir)
    return catalog_from((str(f), f.read_text(encoding="utf-8")) for folder in folders for f in _definitions(folder))


def catalog_from(files_: Iterable[tuple[str, str]]) -> Catalog:
    """A catalog from (source, text) pairs: all problems of all files in one PlaybookError."""
    playbooks: dict[str, Playbook] = {}
    sources: dict[str, str] = {}
    problems: list[FileProblem] = []
    for source, text in files_:
        try:
            playbook, line = _parse(text, source)
        except PlaybookError as e:
            problems.extend(e.problems)
            continue
        if playbook.name in playbooks:
            problems.append(
                FileProblem(source, line, "name", f"playbook {playbook.name!r} is already defined in {sources[playbook.name]}")
            )
            continue
        playbooks[playbook.name] = playbook
        sources[playbook.name] = source
    if problems:
        marked.raise_as(PlaybookError, "invalid playbooks", problems)
    return Catalog(playbooks, sources)
