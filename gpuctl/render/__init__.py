"""Plain-text renderings of a Snapshot (for the CLI and chat)."""
