"""What every benchmark shares: running one of its stages in a fresh process, and what it writes
into RESULTS.md (the machine it ran on, a section's header, and the replacement of one section
that leaves the other benchmarks' sections as they are)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def machine() -> dict[str, str]:
    """CPU model, CPU count, memory and Python version of this machine."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": model,
        "nproc": str(os.cpu_count()),
        "memory": f"{kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
    }


def section_header(heading: str, command: str, libraries: str) -> list[str]:
    """A section's heading, when and with what command it was measured, and the machine."""
    info = machine()
    return [
        heading,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Machine: {info['cpu']}, {info['nproc']} CPUs (nproc), {info['memory']} memory; "
        f"Python {info['python']}, {libraries}.",
        "",
    ]


def replace_section(target: Path, heading: str, lines: list[str]) -> None:
    """Replace the section under `heading` in target (or append it); other sections stay."""
    text = target.read_text(encoding="utf-8") if target.exists() else ""
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^# |\Z)", re.M | re.S)
    new = "\n".join(lines)
    if pattern.search(text):
        text = pattern.sub(lambda _: new, text)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + new
    target.write_text(text, encoding="utf-8")


def run_stage(script: str | Path, *args: str) -> dict[str, Any]:
    """Run `script --stage ARGS` in a fresh Python process (so its peak memory is its own);
    returns the JSON result it prints last."""
    done = subprocess.run(
        [sys.executable, str(script), "--stage", *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"stage {args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
