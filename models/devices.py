"""The torch device a config's ``device`` names, and the precision it runs the backbone in."""

from __future__ import annotations

from pathlib import Path

import torch

from data.errors import UserError


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; anything else must be usable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None


# Precisions of the optimize engine's backbone (synth.py --precision): "auto" is bf16 where
# fast_bf16 says the device runs it fast, fp32 elsewhere.
PRECISIONS = ("fp32", "bf16", "auto")
CPUINFO = Path("/proc/cpuinfo")
# x86 flags (Linux /proc/cpuinfo) of native bf16 arithmetic, which oneDNN's bf16 convolutions
# use; without them bf16 is emulated, slower than fp32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``CPUINFO`` (its first ``flags`` line); an empty set
    where there is no such file or line (macOS, Windows, ARM's ``Features``)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def fast_bf16(device: torch.device) -> tuple[bool, str]:
    """(whether ``device`` computes convolutions in bf16 natively, why), detected, not
    guessed: CUDA's own check (compute capability 8.0+, no emulation); on a CPU, oneDNN plus
    an AVX-512 BF16 or AMX flag in /proc/cpuinfo, or where that file has no flags line,
    torch's own CPU probe. Any other device: no."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            ok = torch.cuda.is_bf16_supported(including_emulation=False)
        name = torch.cuda.get_device_name(device)
        return ok, f"{name} {'has' if ok else 'has no'} native bf16"
    if device.type != "cpu":
        return False, f"no bf16 detection for {device.type}"
    if not torch.backends.mkldnn.is_available():
        return False, "torch was built without oneDNN"
    flags = cpu_flags()
    if flags:
        found = [f for f in BF16_CPU_FLAGS if f in flags]
    else:  # torch's probes of the same instructions (private, so looked up defensively)
        probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
        found = [f for f, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)()]
    if found:
        return True, f"CPU with {' and '.join(found)}"
    return False, f"CPU without {' or '.join(BF16_CPU_FLAGS)}"


def resolve_precision(name: str, device: torch.device) -> tuple[str, str]:
    """("fp32" | "bf16", why) for precision ``name`` (one of ``PRECISIONS``) on ``device``."""
    if name != "auto":
        return name, "asked for"
    ok, why = fast_bf16(device)
    return ("bf16" if ok else "fp32"), f"auto: {why}"
