"""Consume a blocking iterator from async code without blocking the event loop, and stop it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ThreadedIterator(Generic[T]):
    """Pull items of a sync generator in worker threads; ``aclose()`` sets ``cancel``, waits for the
    pending pull, then closes the generator (which releases whatever it holds)."""

    def __init__(self, iterator: Iterator[T], cancel: threading.Event) -> None:
        self._iterator = iterator
        self._cancel = cancel
        self._pending: asyncio.Future[T | None] | None = None
        self._closed = False

    def _pull(self) -> T | None:
        return next(self._iterator, None)

    async def next(self) -> T | None:
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, self._pull)
        item = await asyncio.shield(self._pending)
        self._pending = None
        return item

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel.set()
        if self._pending is not None:
            with contextlib.suppress(Exception):  # its failure no longer matters once the caller has left
                await self._pending
        close = getattr(self._iterator, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
