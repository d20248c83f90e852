"""What else can move a number: the library versions and the device an audit ran with.

Recorded with every audit (`audits.versions`) beside the resolved configuration, so that two
numbers that differ can be told apart from two runs that differ.
"""

from __future__ import annotations

import functools
import platform
from importlib import metadata
from typing import Any

#: The packages whose versions are recorded (those that are installed).
PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "bitsandbytes",
    "peft",
    "detoxify",
    "huggingface_hub",
    "hub-auditor",
)


def versions(device: str, dtype: str | None = None) -> dict[str, Any]:
    """The library versions and the device's details, with the dtype the weights compute in
    (`dtype` when a preset fixes it, else the device's default).

    >>> versions("cpu")["device"]
    'cpu'
    """
    found = dict(_collected(device))
    if dtype is not None:
        found["compute_dtype"] = dtype
    return found


@functools.lru_cache(maxsize=2)
def _collected(device: str) -> tuple[tuple[str, Any], ...]:
    found: dict[str, Any] = {"python": platform.python_version(), "device": device}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    if device == "cuda":
        import torch

        found["gpu"] = torch.cuda.get_device_name(0)
        found["cuda"] = torch.version.cuda
    from auditor.audit.loader import compute_dtype

    found["compute_dtype"] = str(compute_dtype(device)).removeprefix("torch.")
    return tuple(found.items())
