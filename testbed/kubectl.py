"""kubectl at the control plane's Kubernetes version (testbed/build-kubectl.sh), for what only kubectl
does: rendering kustomizations with its built-in kustomize and applying them server-side."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from testbed.controlplane import REPO_ROOT, cached_directory

BUILD_SCRIPT = REPO_ROOT / "testbed" / "build-kubectl.sh"


def build_kubectl() -> Path:
    """Build (or find cached) kubectl; returns the binary."""
    return cached_directory(BUILD_SCRIPT) / "kubectl"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path

    async def __call__(self, *args: str, timeout_s: float = 120.0) -> Ran:
        """`kubectl ARGS` against the test bed as this kubeconfig's identity."""
        process = await asyncio.create_subprocess_exec(
            str(self.binary), "--kubeconfig", str(self.kubeconfig), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        return Ran(process.returncode or 0, out.decode(), err.decode())
