"""Helpers for the TUI tests: wait for the planning worker instead of sleeping a fixed time."""

from __future__ import annotations

import time



async def wait_for(pilot, predicate, timeout_s: float = 30.0) -> None:
    """Pause the pilot until ``predicate()`` holds (the planner runs in a thread worker)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


async def wait_for_plan(pilot) -> None:
    app = pilot.app
    # generation 0: the app opened a stored plan and has not planned anything
    await wait_for(pilot, lambda: app.plan is not None and app.shown_generation in (app.generation, -1 if app.generation == 0 else None)
                   and not app.workers)


async def answer_prompt(pilot, text: str, typed: bool = False) -> None:
    """Answer the open PromptScreen and press Enter.

    Long answers (tmp paths of ~70 characters) are pasted: one Pilot key press costs ~80 ms on a loaded
    2-core box, and the plan inputs' tests already type key by key. ``typed=True`` types every key.
    """
    app = pilot.app
    await wait_for(pilot, lambda: app.screen.__class__.__name__ == "PromptScreen")
    answer = app.screen.query_one("#answer")
    if typed:
        answer.value = ""
        await pilot.press(*text)
    else:
        answer.value = text
    await pilot.press("enter")
    await pilot.pause()
