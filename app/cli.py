"""Operators' commands: `flask --app wsgi shutter <command>`, or `./shutter <command>` (the same;
wsgi.py builds the app from the environment).

    create-user NAME EMAIL [--private] [--password-stdin]
    demo [--users N] [--photos N]       users, follows, photos, likes, comments; idempotent
    rebuild-feeds [--user NAME]         home feeds from the database
    reprocess-photos [--status failed|processing]   their media chain again, through the outbox
    queues                              messages per queue, outbox pending, oldest stuck photo
    sweep                               the sweeper, once, in this process
    reindex-search [--keep]

An edge like the routes: each command calls services; what is not about the
command line lives in the domain packages.
"""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from app.accounts.registration import USERNAME, AccountTaken, create_user, find_user
from app.demo.seed import DemoSeeder
from app.media import pipeline
from app.platform import outbox
from app.platform.queues import queue_depths
from app.services import services
from models import User

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
    with _progress(console) as progress:
        bars = {kind: progress.add_task(kind, total=total) for kind, total in totals.items()}
        for kind, written in search.rebuild(clear=not keep):
            done[kind] += written
            progress.update(bars[kind], advance=written)
    summary = ", ".join(f"{count} {kind}" for kind, count in done.items())
    click.echo(f"Indexed {sum(done.values())} documents: {summary} (backend: {services.settings.search_backend}).")


def _progress(console: Console | None = None) -> Progress:
    columns = (TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console or Console())


@shutter.command("create-user")
@click.argument("username")
@click.argument("email")
@click.option("--private", is_flag=True, help="A private account: follows must be approved.")
@click.option("--full-name", default="", help="The name shown on the profile.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
def create_user_command(username: str, email: str, private: bool, full_name: str, password_stdin: bool) -> None:
    """Create a user (the password is asked for, twice, unless --password-stdin)."""
    if not USERNAME.match(username):
        raise click.BadParameter("1–30 letters, digits, '.' or '_'", param_hint="USERNAME")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not 8 <= len(password) <= 128:
        raise click.BadParameter("8–128 characters", param_hint="password")
    with services.db.session() as session:
        try:
            user = create_user(session, services.passwords, username, email, password,
                               full_name=full_name, private=private)
        except AccountTaken as taken:
            raise click.ClickException(str(taken)) from None
        click.echo(f"Created user {user.username} (id {user.id}{', private' if private else ''}).")


@shutter.command("demo")
@click.option("--users", "user_count", default=8, show_default=True, type=click.IntRange(2, 200))
@click.option("--photos", "photos_per_user", default=3, show_default=True, type=click.IntRange(0, 50),
              help="Photos per user.")
@click.option("--password", default="shutter-demo", show_default=True, help="Every demo user's password.")
def demo(user_count: int, photos_per_user: int, password: str) -> None:
    """Demo data through the API's own services: users, follows, photos, likes, comments. Run twice = same data."""
    seeder = DemoSeeder(services, users=user_count, photos_per_user=photos_per_user, password=password)
    with _progress() as progress:
        bars = {stage: progress.add_task(stage, total=total) for stage, total in seeder.steps().items()}
        for stage, done in seeder.run():
            progress.update(bars[stage], advance=done)
    r = seeder.result
    click.echo(f"Demo: {len(r.usernames)} users; new this run: {r.photos} photos, {r.follows} follows, "
               f"{r.likes} likes, {r.comments} comments.")
    click.echo(f"API client: client_id={r.client_id} client_secret={r.client_secret}")
    click.echo(f"Log in as any of {', '.join(r.usernames)} with the password {r.password!r}, e.g.:")
    click.echo(f"  curl -s {services.settings.public_url}/oauth/access_token -d grant_type=password "
               f"-d username={r.usernames[0]} -d password={r.password} -d client_id={r.client_id} "
               f"-d client_secret={r.client_secret} -d 'scope=basic likes comments relationships'")


@shutter.command("rebuild-feeds")
@click.option("--user", "username", help="Only this user's feed (default: everyone's).")
def rebuild_feeds(username: str | None) -> None:
    """Rebuild home feeds in Redis from the database."""
    with services.db.read_session() as session:
        if username:
            user = find_user(session, username)
            if user is None:
                raise click.ClickException(f"no user {username!r}")
            ids = [user.id]
        else:
            ids = session.scalars(select(User.id).order_by(User.id)).all()
        with _progress() as progress:
            bar = progress.add_task("feeds", total=len(ids))
            for user_id in ids:
                services.feeds.rebuild(session, user_id)
                progress.update(bar, advance=1)
    click.echo(f"Rebuilt {len(ids)} feeds.")


@shutter.command("reprocess-photos")
@click.option("--status", type=click.Choice(pipeline.REPROCESSABLE), default="failed", show_default=True)
def reprocess_photos(status: str) -> None:
    """Publish the media chain again, through the outbox, for every photo in this status."""
    with services.db.session() as session:
        total = pipeline.count_in_status(session, status)
        done = 0
        with _progress() as progress:
            bar = progress.add_task("photos", total=total)
            for count in pipeline.reprocess(session, services.celery, status):
                done += count
                progress.update(bar, advance=count)
    click.echo(f"Re-published {done} {status} photos (what the broker refused, the sweeper sends).")


@shutter.command("queues")
def queues() -> None:
    """Messages waiting per queue, outbox rows not yet published, the oldest photo in processing."""
    try:
        depths = queue_depths(services.celery)
    except Exception as error:  # noqa: BLE001 - said, not a traceback
        raise click.ClickException(f"the broker is unreachable: {type(error).__name__}: {error}") from None
    for name, depth in depths.items():
        click.echo(f"queue {name:<8} {depth}")
    with services.db.read_session() as session:
        count, oldest = outbox.pending(session)
        stuck = pipeline.oldest_processing(session)
    click.echo(f"outbox pending {count}" + (f" (oldest written {oldest.isoformat()})" if oldest else ""))
    click.echo("oldest processing photo " + (f"{stuck[0]} (last touched {stuck[1].isoformat()})" if stuck
                                              else "none"))


@shutter.command("sweep")
def sweep() -> None:
    """Run the sweeper once, here (the beat task's code: re-publish, purge, re-key)."""
    celery = services.celery
    celery.loader.import_default_modules()  # tasks/ (TASK_MODULES), as a worker loads them
    result = celery.tasks["tasks.maintenance.sweep"]()
    click.echo("Sweep: " + ", ".join(f"{key}={value}" for key, value in result.items()))

