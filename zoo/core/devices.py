"""Devices by name: `auto`, `cpu`, `cuda`, `cuda:N`, checked against what this machine has."""

from __future__ import annotations

import torch

from zoo.core.errors import DeviceUnavailableError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` picks CUDA when present; asking for a CUDA device this machine lacks raises."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DeviceUnavailableError(f"unknown device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise DeviceUnavailableError(f"unsupported device {device!r}: expected auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise DeviceUnavailableError(
            f"device {device!r} requested but CUDA is not available on this machine; use --device cpu"
        )
    if resolved.index is not None and resolved.index >= count:
        raise DeviceUnavailableError(
            f"device {device!r} requested but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}"
        )
    return resolved
