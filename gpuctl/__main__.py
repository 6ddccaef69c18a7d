"""`python -m gpuctl` is the `gpuctl` command."""

from gpuctl.cli import main

raise SystemExit(main())
