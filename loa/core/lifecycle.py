"""Owning tasks: stop what you started, and never swallow your own cancellation."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait for it to finish. Its CancelledError is absorbed; ours, if the
    caller itself is being cancelled meanwhile, is not."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
