"""Process-wide TensorFlow runtime choices, made once, before TensorFlow is imported.

Why this module exists
----------------------
TensorFlow 2.21's oneDNN convolution-gradient kernels for AVX-512 corrupt the heap for small
batches (1 or 3 images, eager and inside ``tf.function``): ``free(): invalid next size``,
``double free or corruption``, a segmentation fault or a silent death — and a corrupted heap can
also give wrong numbers without crashing.  Measured on an AMD EPYC (Zen 4, AVX-512 + BF16) and on
an Intel Xeon (Sapphire Rapids, AVX-512 + BF16 + AMX); capping oneDNN at another AVX-512 level
(``AVX512_CORE``, ``AVX512_CORE_VNNI``) still crashes, capping it at ``AVX2`` or turning it off
(``TF_ENABLE_ONEDNN_OPTS=0``) does not.  Since the faulty kernels are the AVX-512 ones, every x86
CPU that has AVX-512 counts as affected.

The default (``LENSHPC_ONEDNN=auto``) therefore caps oneDNN at AVX2 on CPUs with AVX-512
(``ONEDNN_MAX_CPU_ISA=AVX2``) and leaves every other CPU alone.  The cap keeps most of oneDNN's
speed (``python benchmarks/onednn.py``, docs/benchmarks.md).  GPU training is not affected: the
kernels in question run on the CPU only.

The choice is taken in exactly one place — :func:`configure_tensorflow`, which ``lenshpc/__init__``
calls, so it runs before any lenshpc module can import TensorFlow — logged at the start of every
run, and recorded in each run's ``metrics.json`` (``runtime``).

User control
------------
``LENSHPC_ONEDNN=auto`` (default) | ``avx2`` (cap everywhere) | ``off`` (``TF_ENABLE_ONEDNN_OPTS=0``)
| ``on`` (TensorFlow's own default, unsafe on AVX-512 CPUs).  A ``TF_ENABLE_ONEDNN_OPTS`` or
``ONEDNN_MAX_CPU_ISA`` the user exported is never overridden; an unsafe combination is warned about.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import warnings
from functools import lru_cache

log = logging.getLogger(__name__)

#: The lenshpc switch and the two variables of TensorFlow / oneDNN it drives.
POLICY_ENV = "LENSHPC_ONEDNN"
ONEDNN_OPTS_ENV = "TF_ENABLE_ONEDNN_OPTS"
ONEDNN_ISA_ENV = "ONEDNN_MAX_CPU_ISA"
POLICIES = ("auto", "avx2", "off", "on")

#: ISA caps at or below which the crash was not seen (oneDNN's names; AVX2 and older).
SAFE_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    """Vendor, model name and the AVX-512 related flags of this machine's CPU (``/proc/cpuinfo``).

    Returns
    -------
    dict
        ``{"machine", "vendor", "model", "avx512", "avx512_bf16", "amx"}``; the flags are False where
        ``/proc/cpuinfo`` cannot be read (non-Linux), so such machines count as unaffected.
    """
    info = {"machine": platform.machine(), "vendor": "", "model": "", "avx512": False, "avx512_bf16": False,
            "amx": False}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            text = fh.read(1 << 16)
    except OSError:
        return info
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    info.update(vendor=fields.get("vendor_id", ""), model=fields.get("model name", ""),
                avx512="avx512f" in flags, avx512_bf16="avx512_bf16" in flags,
                amx=bool({"amx_tile", "amx_bf16"} & flags))
    return info


def affected(cpu: dict | None = None) -> bool:
    """True when TensorFlow's oneDNN would use its faulty AVX-512 kernels on this CPU."""
    cpu = cpu_info() if cpu is None else cpu
    return bool(cpu.get("avx512")) and cpu.get("machine", "x86_64") in ("x86_64", "AMD64")


def _is_safe(env: dict, cpu: dict) -> bool:
    if not affected(cpu):
        return True
    if env.get(ONEDNN_OPTS_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return True
    return env.get(ONEDNN_ISA_ENV, "").strip().upper() in SAFE_ISAS


def decide(env: dict, cpu: dict) -> tuple[dict, dict]:
    """The oneDNN decision for environment ``env`` on ``cpu``, without touching the process.

    Returns
    -------
    (set_vars, decision)
        Variables to set in the environment, and the record logged and stored in ``metrics.json``:
        ``{"policy", "source", "onednn", "isa_cap", "safe", "reason", "cpu"}``.
    """
    policy = env.get(POLICY_ENV, "auto").strip().lower() or "auto"
    if policy not in POLICIES:
        warnings.warn(f"{POLICY_ENV}={env[POLICY_ENV]!r} is not one of {', '.join(POLICIES)}; using 'auto'",
                      stacklevel=3)
        policy = "auto"
    user_set = [k for k in (ONEDNN_OPTS_ENV, ONEDNN_ISA_ENV) if k in env]
    set_vars: dict[str, str] = {}
    if user_set:
        source, reason = "user", f"{' and '.join(user_set)} set by the user: left as they are"
    elif policy == "off":
        source, reason = POLICY_ENV, "oneDNN turned off on request"
        set_vars[ONEDNN_OPTS_ENV] = "0"
    elif policy == "avx2" or (policy == "auto" and affected(cpu)):
        source = POLICY_ENV if policy == "avx2" else "auto"
        reason = ("oneDNN capped at AVX2: its AVX-512 conv-gradient kernels corrupt the heap for small batches "
                  "on this CPU" if affected(cpu) else "oneDNN capped at AVX2 on request")
        set_vars[ONEDNN_ISA_ENV] = "AVX2"
    elif policy == "on":
        source, reason = POLICY_ENV, "TensorFlow's default oneDNN kernels on request"
    else:
        source, reason = "auto", "no AVX-512 on this CPU: TensorFlow's default oneDNN kernels"
    merged = {**env, **set_vars}
    opts = merged.get(ONEDNN_OPTS_ENV, "").strip().lower()
    decision = {
        "policy": policy, "source": source,
        "onednn": opts not in ("0", "false", "no", "off"),
        "isa_cap": merged.get(ONEDNN_ISA_ENV) or None,
        "safe": _is_safe(merged, cpu), "reason": reason,
        "cpu": {k: cpu.get(k) for k in ("vendor", "model", "avx512", "avx512_bf16", "amx")},
    }
    return set_vars, decision


_DECISION: dict | None = None


def configure_tensorflow() -> dict:
    """Take the oneDNN decision for this process (idempotent) and return it.

    Must run before TensorFlow is imported to have an effect; if TensorFlow is already imported
    the decision is recorded as it stands and an unsafe state is warned about.
    """
    global _DECISION
    if _DECISION is not None:
        return _DECISION
    set_vars, decision = decide(dict(os.environ), cpu_info())
    if "tensorflow" in sys.modules and set_vars:
        decision = {**decision, "reason": "TensorFlow was imported before lenshpc: the runtime choice came too late",
                    "source": "too-late", "safe": _is_safe(dict(os.environ), cpu_info())}
    else:
        os.environ.update(set_vars)
    if not decision["safe"]:
        warnings.warn(
            "TensorFlow's oneDNN AVX-512 kernels are active on this CPU; they corrupt the heap for small batches "
            f"(crashes or wrong numbers). Unset {ONEDNN_OPTS_ENV}=1, or set {ONEDNN_ISA_ENV}=AVX2 or "
            f"{POLICY_ENV}=auto before TensorFlow is imported (import lenshpc first).", RuntimeWarning, stacklevel=2)
    _DECISION = decision
    return decision


def check_float16_convolutions() -> None:
    """Refuse ``mixed_float16`` where CPU convolutions would have no float16 kernel.

    Under the AVX2 cap TensorFlow still routes float16 convolutions to oneDNN (it asks the CPU, not
    the cap, whether oneDNN can do float16), and oneDNN then cannot build them: ``AbortedError:
    could not create a primitive descriptor``.  Mixed precision only pays on a GPU anyway, where
    convolutions run in cuDNN, so the check passes wherever TensorFlow sees a GPU.

    Raises
    ------
    lenshpc.errors.UserError
        On a CPU-only process of an AVX-512 CPU whose oneDNN is capped at AVX2.
    """
    d = describe()
    # Without AVX-512 the CPU reports no oneDNN float16 either, so TensorFlow keeps float16 on Eigen: it works.
    if not (d["onednn"] and d["isa_cap"] and d["isa_cap"].upper() in SAFE_ISAS and affected()):
        return
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return
    from lenshpc.errors import UserError

    raise UserError(
        f"train.mixed_precision=true needs a GPU here: on this CPU oneDNN is capped at {d['isa_cap']} "
        f"({d['reason']}), and that leaves no float16 convolution kernel. Train on a GPU node, set "
        f"train.mixed_precision=false (float16 is no faster on a CPU), or export {POLICY_ENV}=off "
        f"(slower float32, working float16) before running lenshpc.")


def describe() -> dict:
    """The decision recorded in ``metrics.json`` (``runtime``)."""
    return dict(configure_tensorflow())


def log_decision(logger: logging.Logger | None = None) -> None:
    """One line for ``train.log``: what oneDNN does in this process, and why."""
    d = describe()
    state = "off" if not d["onednn"] else (f"capped at {d['isa_cap']}" if d["isa_cap"] else "on")
    (logger or log).info("oneDNN %s (%s; policy %s=%s, CPU %s)", state, d["reason"], POLICY_ENV, d["policy"],
                         d["cpu"]["model"] or d["cpu"]["vendor"] or "unknown")


__all__ = ["POLICIES", "POLICY_ENV", "affected", "check_float16_convolutions", "configure_tensorflow", "cpu_info",
           "decide", "describe", "log_decision"]
