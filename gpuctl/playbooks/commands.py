"""`gpuctl playbook list|show`: what playbooks exist and what each one declares. Reads files only."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from gpuctl.config import Settings
from gpuctl.playbooks.loader import load_catalog
from gpuctl.render.playbooks import list_rows, render_list, render_show


def run_playbook_command(args: argparse.Namespace, settings: Settings, *, out: TextIO) -> int:
    """Runs the `playbook` verb in `args`; PlaybookError (a ConfigError) for a bad file or an unknown name."""
    catalog = load_catalog(settings.playbooks_dir)
    if args.playbook_command == "list":
        out.write(json.dumps(list_rows(catalog), indent=2) + "\n" if args.json else render_list(catalog))
        return 0
    playbook = catalog.get(args.name)
    if args.json:
        out.write(json.dumps({"source": catalog.sources[playbook.name], **playbook.model_dump(mode="json")}, indent=2) + "\n")
    else:
        out.write(render_show(playbook, catalog.sources[playbook.name]))
    return 0
