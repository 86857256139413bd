"""The live view's keys, driven by Textual's own test pilot (no terminal): scroll, sort,
filter, a refused filter, quit."""

from __future__ import annotations

import asyncio

from support.samples import make_stats

from statspout.top.app import TopApp
from statspout.top.fleet import FleetTable
from statspout.top.state import ViewState


def fleet(count: int) -> FleetTable:
    table = FleetTable()
    for index in range(count):
        table.put(make_stats(host=f"node-{index % 2}", id=f"c{index}", name=f"app-{index:03d}",
                             cpu_percent=float(index)))
    return table


def screen_text(app: TopApp) -> list[str]:
    return str(app.query_one("#fleet").render()).split("\n")


def test_keys_scroll_sort_filter_and_quit():
    async def scenario() -> None:
        app = TopApp(fleet(50), ViewState(), refresh_s=60, describe_source="test",
                     problems=lambda: "")
        async with app.run_test(size=(80, 24)) as pilot:
            text = screen_text(app)
            assert len(text) == 24 and "app-049" in text[4]  # busiest first, after 2 hosts
            await pilot.press("down", "down")
            assert app.state.offset == 2 and "app-047" in screen_text(app)[4]
            await pilot.press("pagedown")
            assert app.state.offset == 2 + 19  # a screenful: 24 - title, 2 hosts, head, status
            await pilot.press("up")
            assert app.state.offset == 20
            await pilot.press("n")
            assert app.state.sort_column == "name" and "app-000" in screen_text(app)[4]
            await pilot.press("slash")
            await pilot.press(*"host=node-1", "enter")
            text = screen_text(app)
            assert "filter host=node-1" in text[0] and "25/50 ctr 1 host" in text[0]
            await pilot.press("slash", "ctrl+u", *"bogus=1", "enter")
            assert "filter not applied" in screen_text(app)[-1]
            assert app.state.filter_text == "host=node-1"
            await pilot.press("q")
        assert app.return_code in (0, None)

    asyncio.run(scenario())
