"""Task registry: every science task behind one interface (:class:`lenshpc.tasks.base.Task`).

.. code-block:: python

    get(name) -> type[Task]          # ConfigError naming the closest task for an unknown name
    available() -> list[str]

``config.yaml``'s ``task.name`` (default ``lens``) picks the task; ``task.params`` are its settings.
Task modules import TensorFlow only inside their methods.
"""

from __future__ import annotations

import importlib

from lenshpc.errors import ConfigError

#: name -> "module:class" (imported lazily).
_REGISTRY = {
    "autoencode": "lenshpc.tasks.autoencode:AutoencodeTask",
    "cosmo21cm": "lenshpc.tasks.cosmo21cm:Cosmo21cmTask",
    "lens": "lenshpc.tasks.lens:LensTask",
}
DEFAULT = "lens"


def available() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_REGISTRY)


def register(name: str, target: str) -> None:
    """Register a task class given as ``"module:Class"`` (a plug-in, or a test's toy task)."""
    _REGISTRY[name] = target


def get(name: str):
    """The task class registered as ``name``."""
    from lenshpc.utils import did_you_mean

    if name not in _REGISTRY:
        raise ConfigError(f"unknown task '{name}'.{did_you_mean(name, _REGISTRY)} "
                          f"Available tasks: {', '.join(available())}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
