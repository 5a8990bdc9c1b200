import threading
import time

import pytest

from colorsr_cli.stream import END, ReadAhead, WriteBehind


def test_read_ahead_gives_every_item_in_order_then_end():
    reader = ReadAhead(iter(range(20)), 3, "test-reader")
    items = []
    while (item := reader.get()) is not END:
        items.append(item)
    assert items == list(range(20))


def test_read_ahead_raises_the_producers_error_on_the_consumer():
    def produce():
        yield 1
        raise OSError("disk gone")

    reader = ReadAhead(produce(), 2, "test-reader")
    assert reader.get() == 1
    with pytest.raises(OSError, match="disk gone"):
        reader.get()


def test_stopped_read_ahead_ends_its_producer_and_runs_its_cleanup():
    closed = threading.Event()

    def produce():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    reader = ReadAhead(produce(), 2, "test-reader")
    assert reader.get() == 0
    reader.stop(wait=True)
    assert closed.is_set()


def test_write_behind_writes_all_in_order_and_returns_the_results():
    written = []
    writer = WriteBehind(lambda x: written.append(x) or 2 * x, 2, "test-writer")
    for k in range(10):
        writer.put(k)
    writer.finish()
    assert written == list(range(10)) and list(writer.results()) == [2 * k for k in range(10)]


def test_a_failed_write_is_raised_by_the_next_put():
    def write(x):
        if x == 2:
            raise ValueError("encoder died")

    writer = WriteBehind(write, 1, "test-writer")
    with pytest.raises(ValueError, match="encoder died"):
        for k in range(100):
            writer.put(k)
    assert k < 100


def test_aborted_writer_drops_what_is_queued():
    written = []
    writer = WriteBehind(lambda x: time.sleep(0.05) or written.append(x), 10, "test-writer")
    for k in range(10):
        writer.put(k)
    writer.abort()
    assert len(written) < 10
