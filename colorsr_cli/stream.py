"""Bounded hand-offs between threads, shared by photo batches (batch.py) and films (video.py): a
reader thread that decodes ahead of the computing thread and a writer thread that encodes
behind it. The queues are bounded, so memory stays flat whatever the number of photos or the
length of the film; every wait gives up within POLL_SECONDS once the other side has stopped, so
no thread is left blocked on a queue nobody reads."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

END = object()  # what ReadAhead.get returns after the last item
POLL_SECONDS = 0.1  # how soon a waiting thread notices that the run has stopped


def put_unless(q: queue.Queue, item: object, stopped: threading.Event) -> bool:
    """q.put(item), giving up (False) once `stopped` is set and nobody will take it."""
    while not stopped.is_set():
        try:
            q.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


@dataclass
class _Failure:
    error: Exception


class ReadAhead(Generic[T]):
    """The items of an iterable, produced on a daemon thread at most `size` ahead of the
    consumer. An exception in the producer is raised by get, on the consumer's thread."""

    def __init__(self, items: Iterable[T], size: int, name: str):
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _produce(self, items: Iterable[T]) -> None:
        produced = iter(items)
        try:
            for item in produced:
                if not put_unless(self._queue, item, self._stopped):
                    return
        except Exception as exc:  # noqa: BLE001 - raised by get, on the consumer's thread
            put_unless(self._queue, _Failure(exc), self._stopped)
        finally:
            close = getattr(produced, "close", None)
            if close is not None:  # a generator stopped early runs its cleanup (files closed)
                close()
        put_unless(self._queue, END, self._stopped)

    def get(self, block: bool = True) -> T | object:
        """The next item, or END after the last. Raises the producer's exception, and
        queue.Empty when block is False and nothing is ready."""
        item = self._queue.get(block)
        if isinstance(item, _Failure):
            raise item.error
        return item

    def stop(self, wait: bool = False) -> None:
        """Stop producing (within POLL_SECONDS, or the time of the item being made); with wait,
        return once the producer has ended."""
        self._stopped.set()
        if wait:
            self._thread.join()


class WriteBehind(Generic[T, R]):
    """write(item) for each put item, on its own thread, at most `size` items waiting; what
    write returns is collected for the caller (results). Not a daemon: should the process exit
    mid-write (a second Ctrl-C), Python waits for the item in hand, so a temp file is renamed or
    removed instead of left behind. An exception from write stops the writer; put and finish
    raise it on the caller's thread."""

    def __init__(self, write: Callable[[T], R], size: int, name: str):
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._written: queue.SimpleQueue[R] = queue.SimpleQueue()
        self._abort, self._done = threading.Event(), threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._consume, args=(write,), name=name)
        self._thread.start()

    def _consume(self, write: Callable[[T], R]) -> None:
        try:
            while not self._abort.is_set():
                try:
                    item = self._queue.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if item is END:
                    return
                self._written.put(write(item))
        except BaseException as exc:  # noqa: BLE001 - raised by put/finish on the caller's thread
            self._failure = exc
        finally:
            self._done.set()

    def put(self, item: T) -> None:
        """Queue item for writing, waiting while `size` items wait."""
        if not put_unless(self._queue, item, self._done) or self._failure is not None:
            self._raise_failure()

    def finish(self) -> None:
        """Write everything queued, then end the writer."""
        put_unless(self._queue, END, self._done)
        # An Event, not join(): on Python < 3.12 a Ctrl-C during join() marks the still running
        # thread as finished, and the interpreter then exits without waiting for it.
        self._done.wait()
        if self._failure is not None:
            self._raise_failure()

    def abort(self) -> None:
        """End the writer after the item in hand; what is queued is dropped."""
        self._abort.set()
        self._done.wait()

    def results(self) -> Iterator[R]:
        """What write returned since the last call, without waiting."""
        while True:
            try:
                yield self._written.get_nowait()
            except queue.Empty:
                return

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
        raise RuntimeError("the writer has stopped")
