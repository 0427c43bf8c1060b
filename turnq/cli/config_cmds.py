"""`turnq config`: the store's own settings (kept in the store, so every process using it agrees)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..clock import format_duration
from ..errors import InvalidInput
from . import output
from .app import app
from .options import JsonOpt, LockTimeoutOpt, NowOpt, StoreOpt, open_existing, open_queue, option_duration

#: CLI name -> (API name, what it means). Values are durations; `off` restores the default.
SETTINGS = {
    "tombstone-retention": ("tombstone_retention_ms",
                            "tombstones settled longer ago no longer replay and are dropped by the session's "
                            "next write; off: kept until `turnq vacuum`"),
}


@app.command(rich_help_panel="Stores")
def config(
    action: Annotated[Optional[str], typer.Argument(
        help="get or set; none: list every setting.", metavar="ACTION", show_default=False)] = None,
    name: Annotated[Optional[str], typer.Argument(help="tombstone-retention", metavar="NAME", show_default=False)] = None,
    value: Annotated[Optional[str], typer.Argument(
        help="For set: a duration (7d, 12h, 300s) or off.", metavar="VALUE", show_default=False)] = None,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """List, read or change the store's settings, e.g. `turnq config set tombstone-retention 7d`."""
    # Every word is checked before the store is opened: bad input never creates or reads a store.
    if action not in (None, "get", "set"):
        raise InvalidInput(f"config: unknown action {action!r}: expected get or set")
    if action is None and name is not None:
        raise InvalidInput("config: give get NAME or set NAME VALUE")
    if action is not None and name is None:
        raise InvalidInput(f"config {action}: name a setting: {', '.join(SETTINGS)}")
    if name is not None and name not in SETTINGS:
        raise InvalidInput(f"config: unknown setting {name!r}: expected one of {', '.join(SETTINGS)}")
    if action == "get" and value is not None:
        raise InvalidInput("config get takes no value")
    if action == "set" and value is None:
        raise InvalidInput(f"config set {name}: give a duration (7d, 12h, 300s) or off")
    new = None
    if action == "set" and value.strip().lower() != "off":
        new = option_duration(value, name)
    if action != "set":  # listing or reading only reads: a store that is not there is refused (exit 5)
        _show(open_existing(store, now, lock_timeout).settings(), name, json_out)
        return
    queue = open_queue(store, now, lock_timeout)
    _show(queue.set_setting(SETTINGS[name][0], new), name, json_out)


def _show(settings: dict[str, Any], only: str | None, json_out: bool) -> None:
    names = [only] if only is not None else list(SETTINGS)
    if json_out:
        output.emit_json({SETTINGS[n][0]: settings.get(SETTINGS[n][0]) for n in names})
        return
    from .. import render_store

    rows = []
    for n in names:
        ms = settings.get(SETTINGS[n][0])
        rows.append((n, "off" if ms is None else format_duration(ms), SETTINGS[n][1]))
    render_store.settings(rows, header=only is None)
