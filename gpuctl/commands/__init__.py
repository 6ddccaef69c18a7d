"""Subcommands of `gpuctl` that live outside cli.py: each module has `add_parser(commands)` (cheap to
import: argparse only, the rest imported when the command runs) and `run(args, settings, out=...)`."""
