"""Task registry: every science task behind one interface (:class:`lenshpc.tasks.base.Task`).

.. code-block:: python

    get(name) -> type[Task]          # ConfigError naming the closest task for an unknown name
    available() -> list[str]
    recorded_vocabulary(metrics) -> dict   # a run's metrics.json["task"] (lens for runs before the key)

``config.yaml``'s ``task.name`` (default ``lens``, or a plug-in's ``"package.module:Class"``) picks the
task; ``task.params`` are its settings.
Task modules import TensorFlow only inside their methods.
"""

from __future__ import annotations

import importlib

from lenshpc.errors import ConfigError
from lenshpc.utils import did_you_mean

#: name -> "module:class" (imported lazily).
_REGISTRY = {
    "autoencode": "lenshpc.tasks.autoencode:AutoencodeTask",
    "cosmo21cm": "lenshpc.tasks.cosmo21cm:Cosmo21cmTask",
    "ide": "lenshpc.tasks.ide:IDETask",
    "lens": "lenshpc.tasks.lens:LensTask",
}
DEFAULT = "lens"


def available() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_REGISTRY)


def get(name: str):
    """The task class registered as ``name``, or given as an import path ``"package.module:Class"``
    (a plug-in or a test's task: the module must be importable, e.g. on ``PYTHONPATH``)."""
    from lenshpc.tasks.base import Task

    target = _REGISTRY.get(name, name)
    if ":" not in target:
        raise ConfigError(f"unknown task '{name}'.{did_you_mean(name, _REGISTRY)} Available tasks: "
                          f"{', '.join(available())} (or a plug-in as \"package.module:Class\")")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise ConfigError(f"task '{name}': cannot import module '{module}' ({exc}); is it on PYTHONPATH?") from None
    except AttributeError:
        raise ConfigError(f"task '{name}': module '{module}' has no class '{attr}'") from None
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ConfigError(f"task '{name}': {target} is not a lenshpc.tasks.base.Task subclass")
    return cls


def recorded_vocabulary(metrics) -> dict:
    """The metric vocabulary a run recorded (``metrics.json["task"]``, :meth:`Task.vocabulary`); runs written
    before the key existed were lens runs."""
    vocab = metrics.get("task") if isinstance(metrics, dict) else None
    if isinstance(vocab, dict) and isinstance(vocab.get("metrics"), list):
        return vocab
    return get(DEFAULT).vocabulary()
