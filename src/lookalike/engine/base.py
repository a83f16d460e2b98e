"""What an engine is: the :class:`Engine` protocol and the batches it yields."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ..decode import DecodeResult, DecodeTask

ENGINES = ("local", "ray")

EngineBatch = list[tuple["DecodeResult", "np.ndarray | None"]]
"""One batch of results: each file's outcome (``reason``, ``hash``, ``reused``, as from the
local decoder) and its vector, float32 ``(dim,)``, when it was embedded (else ``None``)."""


@runtime_checkable
class Engine(Protocol):
    """Decodes and embeds planned files somewhere, streaming results back in batches."""

    name: str

    def run(
        self, tasks: Sequence[DecodeTask], get_embedder: Callable[[], Any]
    ) -> Iterator[EngineBatch]:
        """Decode and embed ``tasks``; yield every task's result exactly once, in batches.

        Args:
            tasks: the files to embed, as planned by the driver (keys are unique).
            get_embedder: the driver's embedder (loads it once): its ``setup`` is the one
                the index records, and the engine must embed with exactly that setup.

        Raises:
            EngineError: the engine cannot run or lost its workers for good; batches
                already yielded were committed by the caller.
        """
        ...
