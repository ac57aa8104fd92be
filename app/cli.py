"""Operators' commands: `flask --app wsgi shutter <command>` (wsgi builds the app from the environment).

    flask --app wsgi shutter reindex-search [--keep]

An edge like the routes: each command calls one service.
"""
from __future__ import annotations

import click
from flask.cli import AppGroup
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.services import services

shutter = AppGroup("shutter", help="Shutter's maintenance commands.")


@shutter.command("reindex-search")
@click.option("--keep", is_flag=True,
              help="Do not empty the index first (searches keep working; documents of deleted rows stay).")
def reindex_search(keep: bool) -> None:
    """Rebuild the search index (SEARCH_BACKEND) from the database: photos, locations, users, tags."""
    search = services.search
    totals = search.rebuild_totals()
    done = dict.fromkeys(totals, 0)
    console = Console(stderr=False)
    columns = (TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bars = {kind: progress.add_task(kind, total=total) for kind, total in totals.items()}
        for kind, written in search.rebuild(clear=not keep):
            done[kind] += written
            progress.update(bars[kind], advance=written)
    summary = ", ".join(f"{count} {kind}" for kind, count in done.items())
    click.echo(f"Indexed {sum(done.values())} documents: {summary} (backend: {services.settings.search_backend}).")
