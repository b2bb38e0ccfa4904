"""The file source: missing, created, atomic renames, in-place writes, deletion, oversize, and the watcher on it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from stator.discover import Discover, FilePoller, PollError
from tests.discover.conftest import DOC_A, DOC_B, doc, memory_logger


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _overwrite_in_place(path: Path, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.write(data)


async def test_file_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    poller = FilePoller(str(path), interval=0.01)
    first = await poller.poll()
    assert first.data is None and first.index == 1

    path.write_bytes(doc(1))
    assert (await poller.poll()).data == doc(1)

    _atomic_write(path, doc(2))  # a new inode replaces the old one
    assert (await poller.poll()).data == doc(2)

    _atomic_write(path, doc(3))  # same size as doc(2): the inode (and ctime) tell
    assert (await poller.poll()).data == doc(3)

    _overwrite_in_place(path, doc(4))  # same size, same inode
    assert (await poller.poll()).data == doc(4)

    path.unlink()
    gone = await poller.poll()
    assert gone.data is None and gone.index == 6


async def test_unchanged_file_blocks_until_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_bytes(doc(1))
    poller = FilePoller(str(path), interval=0.01)
    await poller.poll()
    waiting = asyncio.create_task(poller.poll())
    await asyncio.sleep(0.1)
    assert not waiting.done()
    _atomic_write(path, doc(2))
    assert (await asyncio.wait_for(waiting, 5)).data == doc(2)


async def test_oversize_file_is_reported_once_per_version(tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_bytes(b"[" + b" " * 2000 + b"]")
    poller = FilePoller(str(path), interval=0.01, max_bytes=1000)
    with pytest.raises(PollError) as info:
        await poller.poll()
    assert info.value.reason == "oversize"
    waiting = asyncio.create_task(poller.poll())
    await asyncio.sleep(0.1)
    assert not waiting.done()  # the same oversized file is not re-read every interval
    _atomic_write(path, doc(1))
    assert (await asyncio.wait_for(waiting, 5)).data == doc(1)


async def test_unreadable_path_is_an_io_error(tmp_path: Path) -> None:
    directory = tmp_path / "dir.json"
    directory.mkdir()
    with pytest.raises(PollError) as info:
        await FilePoller(str(directory)).poll()
    assert info.value.reason == "io"


async def test_watcher_on_a_file_publishes_changes(tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    _atomic_write(path, orjson.dumps(DOC_A))
    logger, _ = memory_logger()
    discover = Discover(FilePoller(str(path), interval=0.01), logger=logger)
    task = asyncio.create_task(discover.run())
    try:
        snap = await asyncio.wait_for(discover.changed(0), 5)
        assert [s.as_json() for s in snap.services] == DOC_A and snap.source == "file"
        path.write_bytes(b"[{")  # a half-written file (non-atomic writer): rejected, last good set kept
        await asyncio.sleep(0.1)
        assert discover.snapshot is snap and discover.invalid_payloads == 1
        _atomic_write(path, orjson.dumps(DOC_B))
        snap = await asyncio.wait_for(discover.changed(snap.version), 5)
        assert [s.as_json() for s in snap.services] == DOC_B
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
