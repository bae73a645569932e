"""The `signet` command.

Operator verbs work on the node's own database and key (same SIGNET_* settings as the server);
client verbs (`identifier hash`) run on the platform's side and send nothing anywhere.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from app.cli_import import register as register_import
from app.cli_roster import roster_app
from app.errors import ConfigError, InvalidInput, SignetError
from app.settings import Settings, load_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.progress import Progress

    from app.audit.verify import AuditReport
    from app.crypto.keys import VerifierKey
    from app.services.node import Node


def _flag_help_without_type() -> None:
    """Typer >= 0.2x prints a `<bool>` type beside every flag (`--help <bool>`), as if it took
    a value. Flags take none: show no type for them."""
    from typer.core import TyperOption

    plain = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else plain(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flag_help_without_type()

app = typer.Typer(
    help="Signet: federated, verifiable sharing of child-safety signals.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
api_keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
identifier_app = typer.Typer(help="Hash identifiers on the client side.", no_args_is_help=True)
key_app = typer.Typer(help="The node's signing key.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(identifier_app, name="identifier")
app.add_typer(key_app, name="key")
app.add_typer(db_app, name="db")
audit_app = typer.Typer(help="Verify a node's exchange log.", no_args_is_help=True)
log_app = typer.Typer(help="The exchange log (operator).", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
peers_app = typer.Typer(help="Peers: pin their keys, choose what to share.", no_args_is_help=True)
app.add_typer(peers_app, name="peers")
app.add_typer(log_app, name="log")
app.add_typer(roster_app, name="roster")
register_import(app)

SCOPES_HELP = "Comma-separated: submit,match,read,feedback,admin,audit,feed"
KEY_ID_HELP = "Identifier key id (default: SIGNET_DEFAULT_IDENTIFIER_KEY, or the only key)."

out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _node() -> Node:
    """The node this command acts on; never creates one (see app.services.locate)."""
    from app.services.locate import open_existing_node

    try:
        return open_existing_node(_settings())
    except ConfigError as exc:
        _fail(str(exc), code=2)


def _fail(message: str, *, code: int = 1) -> NoReturn:
    """One clear line on stderr, then exit non-zero."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _rows(headers: list[str], rows: list[list[str]], *, as_json: bool, records: list[Any]) -> None:
    """A listing: a table on a terminal; tab-separated lines, never truncated, when piped;
    one JSON object per line with --json."""
    if as_json:
        for record in records:
            print(json.dumps(record, default=str, ensure_ascii=False))
    elif out.is_terminal:
        table = Table(*headers)
        for column in table.columns:
            column.overflow = "fold"  # wrap, never cut with an ellipsis
        for row in rows:
            table.add_row(*row)
        out.print(table)
    else:
        print("\t".join(headers))
        for row in rows:
            print("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))


# --- serve ---------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (SIGNET_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (SIGNET_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Run the node: migrate the database, load or create the key, serve the API."""
    import os

    import uvicorn

    settings = _settings()
    host = host or settings.host
    port = port or settings.port
    # Before anything imports prometheus_client here or in a worker: counters of every worker
    # go to files under the data dir, and a scrape of any worker adds them up.
    _prepare_multiprocess(settings.data_dir)
    from app.services.node import open_node

    _check_port_free(host, port)
    try:
        node = open_node(settings)  # migrate once, before workers start
    except SQLAlchemyError as exc:
        _fail(_database_problem(settings, exc), code=2)
    api_url = f"http://{host}:{port}"
    # Plain prints: rich would wrap the verifier key, which operators copy and paste.
    lines = [
        f"Signet node {settings.origin}",
        f"  verifier key  {node.verifier_key}",
        f"  database      {_redact(settings.database_url)}",
        f"  API           {api_url}   docs: {api_url}/docs",
        f"  admin key     {_self()} api-keys create --name admin --scopes admin",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
    node.db.dispose()
    os.environ.setdefault("SIGNET_HOST", host)
    os.environ.setdefault("SIGNET_PORT", str(port))
    if workers > 1 and settings.pdq_shared_base is None:
        # The workers map one index base per host instead of building one each (a private
        # copy per worker is what an operator may still ask for, explicitly).
        os.environ["SIGNET_PDQ_SHARED_BASE"] = "true"
    uvicorn.run(
        "app.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,
    )


def _prepare_multiprocess(data_dir: Path) -> None:
    """A fresh per-run metrics directory under the data dir (an operator's own
    PROMETHEUS_MULTIPROC_DIR wins). Here, not in app.observability: it must run before
    prometheus_client is first imported, which picks its storage at import time."""
    import os
    import shutil

    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    # The data dir is owner-only (app.services.node.make_private_dir); made here first, it was
    # made 0755 as the parent of the metrics dir, and every first start warned it was open.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = Path(configured) if configured else data_dir / "prometheus"
    if path.exists() and not configured:
        shutil.rmtree(path)  # counters of a previous run would add up with this one's
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _check_port_free(host: str, port: int) -> None:
    """`address already in use` from uvicorn comes with no hint; say what to do instead."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        _fail(f"SIGNET_HOST {host!r} does not resolve ({exc.strerror}): set SIGNET_HOST or --host")
    family, *_rest, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                _fail(
                    f"port {port} on {host} is already in use (another `signet serve`?): stop "
                    "it, or choose another port with SIGNET_PORT or --port",
                    code=2,
                )
            _fail(f"cannot listen on {host}:{port}: {exc.strerror}; check SIGNET_HOST/SIGNET_PORT")


def _database_problem(settings: Settings, exc: Exception) -> str:
    """One line naming SIGNET_DATABASE_URL and the likely fix, never a traceback."""
    from app.services.locate import _first_line

    reason = _first_line(exc)
    url = _redact(settings.database_url)
    if "does not exist" in reason:
        hint = "create the database (createdb) or fix its name"
    elif "password" in reason or "authentication" in reason:
        hint = "fix the user or password"
    elif "unable to open" in reason:
        hint = "the directory must exist and be writable (SIGNET_DATA_DIR)"
    else:
        hint = "is the database server running and reachable at that host and port?"
    return f"cannot use SIGNET_DATABASE_URL={url}: {reason}; {hint}"


def _self() -> str:
    """How the user can call this command again (`.venv/bin/signet` under `make run`)."""
    import os

    me = sys.argv[0]
    if os.path.basename(me) != "signet" or os.sep not in me:
        return "signet"
    rel = os.path.relpath(me)
    return me if rel.startswith("..") else rel


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- api keys ------------------------------------------------------------------------------


@api_keys_app.command("create")
def api_keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: submit,match,read,feedback,admin,audit,feed")
    ],
    member: Annotated[
        bool, typer.Option(help="A federation member (may read green feeds).")
    ] = False,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from app.services import apikeys

    node = _node()
    try:
        created = apikeys.create(
            node, name, [s.strip() for s in scopes.split(",") if s.strip()], member
        )
    except InvalidInput as exc:
        err.print(f"[red]error:[/red] {exc.field}: {exc.reason}")
        raise typer.Exit(2) from None
    err.print(f"Created key {created.id} ({created.name}) with scopes {', '.join(created.scopes)}.")
    err.print("Store it now; it is not shown again:")
    print(created.key)


@api_keys_app.command("list")
def api_keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout.")] = False,
) -> None:
    """List API keys (prefixes only)."""
    from app.services import apikeys

    node = _node()
    try:
        keys = apikeys.list_keys(node)
    finally:
        node.db.dispose()
    rows = [
        [
            str(k.id),
            k.name,
            k.prefix + "…",
            ",".join(k.scopes),
            "yes" if k.member else "",
            k.created_at.strftime("%Y-%m-%d %H:%M"),
            k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "",
        ]
        for k in keys
    ]
    records = [
        {
            "id": k.id,
            "name": k.name,
            "prefix": k.prefix,
            "scopes": list(k.scopes),
            "member": k.member,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in keys
    ]
    headers = ["id", "name", "prefix", "scopes", "member", "created", "revoked"]
    _rows(headers, rows, as_json=as_json, records=records)


@api_keys_app.command("revoke")
def api_keys_revoke(key_id: Annotated[int, typer.Argument(help="Key id from `list`.")]) -> None:
    """Revoke an API key; it stops working at once."""
    from app.services import apikeys

    k = apikeys.revoke(_node(), key_id)
    err.print(f"Revoked key {k.id} ({k.name}).")


# --- identifiers ---------------------------------------------------------------------------


@identifier_app.command("hash")
def identifier_hash(
    value: Annotated[str, typer.Argument(help="The raw identifier; it never leaves this machine.")],
    type: Annotated[str, typer.Option("--type", help="email, phone, username or payment")],
    key_id: Annotated[
        str | None,
        typer.Option(
            help="Identifier key id (default: SIGNET_DEFAULT_IDENTIFIER_KEY or the only key)."
        ),
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="Default region for national phone numbers, e.g. GB.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the signal fields as JSON.")
    ] = False,
    use_oprf: Annotated[
        bool,
        typer.Option(
            "--oprf",
            help="Threshold OPRF through the node (SIGNET_URL, SIGNET_API_KEY) instead of a "
            "shared key. VALUE '-' reads one identifier per line from stdin (up to 1,000).",
        ),
    ] = False,
    epoch_file: Annotated[
        Path | None,
        typer.Option(
            help="--oprf: the public epoch file to verify holders against (default: the "
            "first of SIGNET_OPRF_EPOCH_FILES, else the node's current epoch)."
        ),
    ] = None,
) -> None:
    """Normalise and key-hash an identifier: shared key (HMAC), or --oprf (stronger)."""
    from app.signals.identifiers import hash_identifier

    settings = _settings()
    if use_oprf:
        _identifier_hash_oprf(value, type, region, as_json, epoch_file, settings)
        return
    keys = settings.identifier_keys
    chosen = (
        key_id or settings.default_identifier_key or (next(iter(keys)) if len(keys) == 1 else None)
    )
    if not keys:
        err.print(
            "[red]error:[/red] no identifier key: set SIGNET_IDENTIFIER_KEYS=id=base64key "
            "(create one with `signet identifier new-key`)"
        )
        raise typer.Exit(2)
    if chosen is None or chosen not in keys:
        err.print(f"[red]error:[/red] choose --key-id, one of: {', '.join(sorted(keys))}")
        raise typer.Exit(2)
    try:
        digest = hash_identifier(
            type, value, keys[chosen].get_secret_value(), chosen, default_region=region
        )
    except InvalidInput as exc:
        err.print(f"[red]error:[/red] {exc.reason}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps({"type": type, "value": digest, "key_id": chosen}))
    else:
        print(digest)


def _identifier_hash_oprf(
    value: str,
    type: str,
    region: str | None,
    as_json: bool,
    epoch_file: Path | None,
    settings: Settings,
) -> None:
    from app.client import NodeClient
    from app.crypto.oprf_threshold import Epoch
    from app.services.oprf import load_epoch_file
    from app.signals.identifiers import hash_identifiers_oprf

    values = [v for v in sys.stdin.read().splitlines() if v.strip()] if value == "-" else [value]
    files = [p for p in settings.oprf_epoch_files.split(",") if p.strip()]
    try:
        with NodeClient() as client:
            if epoch_file is not None or files:
                epoch = load_epoch_file(epoch_file or Path(files[0].strip()))
            else:
                # Weaker: the node names the holders' public shares. Pin an epoch file instead.
                listing = client.oprf_epochs()
                current = [e for e in listing["epochs"] if e["epoch"] == listing["current"]]
                if not current:
                    err.print("[red]error:[/red] the node serves no OPRF epoch")
                    raise typer.Exit(2)
                epoch = Epoch.from_json(current[0])
            digests = hash_identifiers_oprf(
                type, values, epoch, client.oprf_evaluate, default_region=region
            )
    except InvalidInput as exc:
        err.print(f"[red]error:[/red] {exc.field}: {exc.reason}")
        raise typer.Exit(2) from None
    except SignetError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    for digest in digests:
        if as_json:
            print(json.dumps({"type": type, "value": digest, "key_id": epoch.epoch}))
        else:
            print(digest)


@identifier_app.command("ceremony")
def identifier_ceremony(
    epoch: Annotated[str, typer.Option(help="Epoch id, the identifier key_id, e.g. oprf-2026")],
    holders: Annotated[
        list[str], typer.Option("--holder", help="A key holder's origin (repeat, in order).")
    ],
    threshold: Annotated[int, typer.Option(help="Holders needed to evaluate.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the files.")],
) -> None:
    """OPRF key ceremony (trusted dealer): one share file per holder and the public epoch file.

    Give each holder its share file over a secure channel and delete it here; publish the epoch
    file to every member. The whole key exists only in this process's memory.
    """
    from app.services.oprf import write_ceremony

    try:
        written = write_ceremony(epoch, holders, threshold, out_dir)
    except SignetError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for path in written:
        print(path)


@identifier_app.command("new-key")
def identifier_new_key(
    key_id: Annotated[str, typer.Argument(help="An id for the key, e.g. fed-2026")],
) -> None:
    """Generate a federation identifier key to share out of band with every member."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    err.print("Share this with every federation member over a secure channel; set it as")
    print(f"SIGNET_IDENTIFIER_KEYS={key_id}={key}")


# --- media hashing -------------------------------------------------------------------------

PROGRESS_MIN_FILES = 20  # below this a run is over before a progress bar helps


@app.command("hash")
def hash_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files and directories (walked).")],
    submit: Annotated[
        bool, typer.Option("--submit", help="Publish the hashes as signals to the node.")
    ] = False,
    match: Annotated[
        bool, typer.Option("--match", help="Match the hashes against the node's signals.")
    ] = False,
    categories: Annotated[
        str, typer.Option(help="For --submit, comma-separated, e.g. csam,sextortion.")
    ] = "",
    types: Annotated[str, typer.Option(help="Hash types to send.")] = "pdq,vpdq,md5,sha256",
    fps: Annotated[
        float,
        typer.Option(min=0, help="vPDQ: frames hashed per second of video (0: every frame)."),
    ] = 1.0,
    crop_bars: Annotated[
        bool, typer.Option(help="vPDQ: cut uniform bars off frames (off: Meta-identical hashes).")
    ] = True,
    threshold: Annotated[
        int | None, typer.Option(min=0, max=256, help="PDQ match distance (node default 31).")
    ] = None,
    quality_min: Annotated[
        int, typer.Option(min=0, max=100, help="Do not send PDQ hashes of lower quality.")
    ] = 50,
    allow_low_quality: Annotated[
        bool, typer.Option(help="Send PDQ hashes below --quality-min too.")
    ] = False,
    opinion: Annotated[str | None, typer.Option(help="For --submit.")] = None,
    confidence: Annotated[int | None, typer.Option(min=0, max=100, help="For --submit.")] = None,
    tlp: Annotated[str | None, typer.Option(help="For --submit: red, amber, green, clear.")] = None,
    url: Annotated[str | None, typer.Option(help="Node URL (SIGNET_URL).")] = None,
    api_key: Annotated[
        str | None, typer.Option(help="API key (SIGNET_API_KEY; prefer the variable).")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Items per request.")] = 1000,
    jobs: Annotated[int, typer.Option(min=1, help="Hashing processes.")] = 1,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bar on stderr (default: long runs on a TTY).")
    ] = None,
) -> None:
    """Hash files here: MD5 and SHA-256 of every file, PDQ and quality of images, vPDQ of videos.

    Prints one JSON line per file. With --submit / --match only the hex hashes are sent to the
    node; no file content ever leaves this machine. Exits 1 if any file could not be hashed."""
    from collections.abc import Iterator

    from app.client import NodeClient
    from app.hashing import (
        MEDIA_TYPES,
        FileHashes,
        Pipeline,
        SendOptions,
        hash_file,
        image_extensions,
    )
    from app.hashing import iter_files as walk

    type_list = tuple(t.strip() for t in types.split(",") if t.strip())
    bad = [t for t in type_list if t not in MEDIA_TYPES]
    cats = tuple(c.strip() for c in categories.split(",") if c.strip())
    if bad:
        err.print(f"[red]error:[/red] --types: unknown {', '.join(bad)}; use pdq,vpdq,md5,sha256")
        raise typer.Exit(2)
    if submit and not cats:
        err.print("[red]error:[/red] --submit needs --categories (e.g. --categories csam)")
        raise typer.Exit(2)
    fields: dict[str, object] = {}
    if opinion is not None:
        fields["opinion"] = opinion
    if confidence is not None:
        fields["confidence"] = confidence
    if tlp is not None:
        fields["audience"] = {"tlp": tlp}
    opts = SendOptions(
        categories=cats,
        types=type_list,
        threshold=threshold,
        quality_min=quality_min,
        allow_low_quality=allow_low_quality,
        signal_fields=tuple(fields.items()),
    )
    exts: frozenset[str] = frozenset()
    if "pdq" in type_list:
        try:
            import pdqhash  # noqa: F401
            import PIL  # noqa: F401
        except ImportError:
            err.print("[red]error:[/red] PDQ needs the media extra: pip install 'signet[media]'")
            raise typer.Exit(2) from None
        exts = image_extensions()
    video_exts: frozenset[str] = frozenset()
    if "vpdq" in type_list:
        try:
            import av  # noqa: F401
        except ImportError:
            # Asked for by name: an error. By default: videos get MD5 and SHA-256 only.
            if types != "pdq,vpdq,md5,sha256":
                err.print("[red]error:[/red] vPDQ needs PyAV: pip install 'signet[media]'")
                raise typer.Exit(2) from None
        else:
            from app.videohash import VIDEO_EXTENSIONS

            video_exts = VIDEO_EXTENSIONS
    files = list(walk(paths))
    client = NodeClient(url, api_key) if (submit or match) else None
    pipeline = Pipeline(
        opts,
        submit=client.submit_signals if client and submit else None,
        match=client.match if client and match else None,
        batch=batch,
    )
    long_run = err.is_terminal and len(files) > PROGRESS_MIN_FILES
    show = progress if progress is not None else long_run
    failed = 0

    def emit(lines: list[dict[str, object]]) -> None:
        nonlocal failed
        for line in lines:
            failed += "error" in line
            print(json.dumps(line, ensure_ascii=False), flush=True)

    from functools import partial

    from rich.progress import Progress

    results: Iterator[FileHashes]
    with Progress(console=err, disable=not show, transient=True) as bar:
        task = bar.add_task("hashing", total=len(files))
        # A long video gets a bar of its own (seconds of video hashed), shown on a terminal or
        # with --progress; only in-process, as a worker process cannot draw on this console.
        show_video = progress if progress is not None else err.is_terminal
        video_task = bar.add_task("video", total=None, visible=False)

        def on_video(done: float, duration: float) -> None:
            bar.update(video_task, completed=done, total=duration or None, visible=show_video)

        hasher = partial(
            hash_file,
            extensions=exts,
            video_extensions=video_exts,
            fps=fps or None,
            crop_bars=crop_bars,
            progress=on_video if jobs == 1 else None,
        )
        if jobs > 1:
            from multiprocessing import Pool

            pool = Pool(jobs)
            results = pool.imap(hasher, files, chunksize=4)
        else:
            pool = None
            results = map(hasher, files)
        try:
            for h in results:
                emit(pipeline.add(h))
                bar.advance(task)
            emit(pipeline.flush())
        finally:
            if pool is not None:
                pool.terminate()
            if client is not None:
                client.close()
    summary = ", ".join(f"{n} {k}" for k, n in sorted(pipeline.counts.items()))
    err.print(f"{len(files)} files, {failed} failed" + (f"; {summary}" if summary else ""))
    if pipeline.send_failures:
        # Every item refused (a wrong key: 401) or the node unreachable must not look like
        # success to a script: exit 1 with the first reason.
        _fail(
            f"{pipeline.send_failures} item(s) not accepted by the node; first: "
            f"{pipeline.first_failure}"
        )
    if failed:
        raise typer.Exit(1)


# --- node key and database -----------------------------------------------------------------


@key_app.command("show")
def key_show() -> None:
    """Print this node's verifier key, to hand to peers (it is public).

    Reads the node's key and database; creates nothing, and refuses a data dir that holds no
    node or another node's (so the key printed carries the node's real origin)."""
    node = _node()
    node.db.dispose()
    print(node.verifier_key)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the latest schema (creating the node's database and key if
    there are none yet: with `serve`, the only verbs that create a node)."""
    from app.services.node import open_node
    from app.storage import migrate

    node = open_node(_settings())
    try:
        err.print(f"database at revision {migrate.current_revision(node.db)}")
    finally:
        node.db.dispose()


@key_app.command("rotate")
def key_rotate() -> None:
    """Replace the node key with a new one, handed over by a signed rotation record in the log.

    Records signed with the old key keep verifying (verifiers resolve keys by key_id and learn
    the new key from the log). Restart running servers so they sign with the new key."""
    from app.services import keys
    from app.services import log as exchange_log

    node = _node()
    try:
        rotation = keys.rotate(node)
        exchange_log.publish_checkpoint(node)
    finally:
        node.db.dispose()
    err.print(f"Rotated the node key (log entry {rotation.index}); old key kept for verifying.")
    err.print("Restart running `signet serve` processes so they sign with the new key.")
    err.print("Give peers and auditors the new verifier key:")
    print(rotation.new_key)


# --- exchange log and auditing ---------------------------------------------------------------


def _vkey(text: str, option: str) -> VerifierKey:
    from app.crypto.keys import VerifierKey

    try:
        return VerifierKey.parse(text.strip())
    except InvalidInput as exc:
        err.print(f"[red]error:[/red] {option}: {exc.reason}")
        raise typer.Exit(2) from None


def _audit_progress(enabled: bool) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not enabled,
        transient=True,
    )


def _audit_run(
    run: Callable[[Callable[[int, int], object]], AuditReport], show: bool | None
) -> None:
    from app.audit.errors import AuditFailed

    with _audit_progress(err.is_terminal if show is None else show) as bar:
        task = bar.add_task("verifying", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            report = run(progress)
        except AuditFailed as exc:
            bar.stop()
            err.print(f"[red]FAILED[/red] {exc}")
            raise typer.Exit(1) from None
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.kinds.items()))
    verified = sum(report.verified.values())
    unverified = sum(report.unverified.values())
    err.print(f"[green]OK[/green] {report.origin}: {report.size} entries ({kinds})")
    err.print(
        f"  records verified {verified}, unverified (origin not pinned) {unverified}, "
        f"commitments {report.commitments}, node keys {len(report.keys)}"
    )
    if report.linkable:
        err.print(
            f"  [yellow]privacy[/yellow]: commitment entries that also link to their record "
            f"or another log (written before this node stopped doing so): "
            f"{', '.join(map(str, report.linkable))}"
        )
    print(json.dumps({"origin": report.origin, "size": report.size, "ok": True}))


@app.command("conformance")
def conformance(
    url: Annotated[str, typer.Argument(help="The node's URL.")],
    key: Annotated[str, typer.Option("--key", help="The node's pinned verifier key.")],
    token: Annotated[
        str | None, typer.Option("--token", help="API key with scope audit (log checks).")
    ] = None,
    as_peer: Annotated[
        str | None, typer.Option("--as-peer", help="A key file the node pinned (sync checks).")
    ] = None,
    as_origin: Annotated[
        str | None, typer.Option("--as-origin", help="The origin the node pinned that key as.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a node against the signet/1 specification (spec/signet-1.md) over HTTP, as a
    stranger, an auditor and a peer would: one line per check with the requirement it tests;
    exit 1 on any failure."""
    from app import conformance as conf

    try:
        code = conf.command(url, key, token, as_peer, as_origin, as_json)
    except (SignetError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@audit_app.command("verify")
def audit_verify(
    url: Annotated[str, typer.Argument(help="The node's URL.")],
    key: Annotated[str, typer.Option("--key", help="The node's pinned verifier key.")],
    token: Annotated[
        str, typer.Option("--token", envvar="SIGNET_AUDIT_KEY", help="API key with scope audit.")
    ],
    state: Annotated[
        Path | None, typer.Option(help="Last verified checkpoint: prove the log only grew.")
    ] = None,
    peer_key: Annotated[
        list[str] | None, typer.Option("--peer-key", help="Verify records of this peer too.")
    ] = None,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bar on stderr (default: on a terminal).")
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option("--witness", help="A witness's pinned key (a peer's verifier key)."),
    ] = None,
    quorum: Annotated[
        int, typer.Option(help="Valid --witness cosignatures the checkpoint needs.")
    ] = 0,
) -> None:
    """Verify a node's whole log: checkpoint signature, every entry and record, the root and,
    with --state, consistency with the last run; with --witness/--quorum, that enough pinned
    peers cosigned the checkpoint. Exit 1 naming the first failure."""
    from app.audit.run import audit_node

    pinned = _vkey(key, "--key")
    peers = [_vkey(k, "--peer-key") for k in peer_key or []]
    if quorum > len(witness or []):
        err.print("[red]error:[/red] --quorum is larger than the number of --witness keys")
        raise typer.Exit(2)

    def run(p: Callable[[int, int], object]) -> AuditReport:
        report = audit_node(url, token, pinned, peer_keys=peers, state_path=state, progress=p)
        if witness:
            _check_witnesses(url, token, pinned, report, witness, quorum)
        return report

    _audit_run(run, progress)


def _check_witnesses(
    url: str,
    token: str,
    pinned: VerifierKey,
    report: AuditReport,
    witness: list[str],
    quorum: int,
) -> None:
    """Cosignatures on the audited checkpoint. Peers cosign a checkpoint seconds after it is
    published, so a fresh one is given a few seconds to gather them."""
    import time

    from app.audit.client import AuditClient
    from app.audit.errors import AuditFailed
    from app.audit.federation import check_quorum, witness_key
    from app.crypto.checkpoint import open_checkpoint

    keys = [witness_key(w) for w in witness]
    deadline = time.monotonic() + 15
    with AuditClient(url, token) as client:
        while True:
            note = client._get("/v1/log/checkpoint", size=report.size).text
            cp = open_checkpoint(note, pinned)
            if cp.root_hash != report.root:
                raise AuditFailed(f"checkpoint at size {report.size} changed during the audit")
            try:
                valid = check_quorum(note, pinned, keys, quorum)
                break
            except AuditFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    names = ", ".join(c.name for c in valid) or "none"
    err.print(f"  witnesses: {len(valid)} of {len(keys)} cosigned ({names}), quorum {quorum}")


@audit_app.command("report")
def audit_report(
    url: Annotated[str, typer.Argument(help="The node's URL.")],
    key: Annotated[str, typer.Option("--key", help="The node's pinned verifier key.")],
    token: Annotated[
        str, typer.Option("--token", envvar="SIGNET_AUDIT_KEY", help="API key with scope audit.")
    ],
    since: Annotated[
        str | None, typer.Option(help="From this date (YYYY-MM-DD or RFC 3339).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this date (a bare date: inclusive).")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="json, md or html.")] = "json",
) -> None:
    """Transparency report: verify the whole log first, then compute the figures from its
    entries alone. Same log size -> byte-identical JSON (docs/console.md)."""
    from app.audit import report as transparency
    from app.audit.errors import AuditFailed

    if format not in ("json", "md", "html"):
        err.print("[red]error:[/red] --format must be json, md or html")
        raise typer.Exit(2)
    pinned = _vkey(key, "--key")
    try:
        lo = transparency.parse_bound(since)
        hi = transparency.parse_bound(until, end=True)
    except InvalidInput as exc:
        err.print(f"[red]error:[/red] --{exc.field}: {exc.reason}")
        raise typer.Exit(2) from None
    try:
        origin, note, entries = transparency.collect_node(url, token, pinned)
    except AuditFailed as exc:
        err.print(f"[red]FAILED[/red] {exc}")
        raise typer.Exit(1) from None
    rep = transparency.compute(origin, note, entries, since=lo, until=hi)
    render = {
        "json": transparency.to_json,
        "md": transparency.to_markdown,
        "html": transparency.to_html,
    }[format]
    sys.stdout.write(render(rep))


@audit_app.command("reconcile")
def audit_reconcile(
    urls: Annotated[list[str], typer.Argument(help="The nodes' URLs (two or more).")],
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="Each node's pinned verifier key, in the order of the URLs."),
    ] = None,
    token: Annotated[
        list[str] | None,
        typer.Option("--token", help="An audit API key at each node, in the order of the URLs."),
    ] = None,
    key_a: Annotated[str | None, typer.Option("--key-a", hidden=True)] = None,
    key_b: Annotated[str | None, typer.Option("--key-b", hidden=True)] = None,
    token_a: Annotated[str | None, typer.Option("--token-a", hidden=True)] = None,
    token_b: Annotated[str | None, typer.Option("--token-b", hidden=True)] = None,
    grace: Annotated[
        float,
        typer.Option(
            help="Seconds a withdrawal may go without a receipt before it counts as missing "
            "(pulls and expiry rounds run on timers)."
        ),
    ] = 120.0,
    evidence: Annotated[
        bool, typer.Option(help="Fetch and check an inclusion proof for every receipt.")
    ] = True,
) -> None:
    """Verify every node's log, then reconcile them.

    Deliveries, pair by pair: every record A says it delivered to B is in B's log as received
    from A (or accounted for: held from another peer, refused), and the reverse.

    Withdrawals: for every retraction an audited origin issued, and every signal of its that
    expired, each node that held the signal (by its own log, or by another's `delivered`
    entries) and whether it logged an `applied` receipt, when, with the entries and inclusion
    proofs as evidence. A holder without a receipt past --grace is missing and fails the run.
    Run it on a quiet federation: a page in flight shows up as missing."""
    from datetime import timedelta

    from app.audit.errors import AuditFailed
    from app.audit.reconcile import NodeSpec, reconcile_nodes

    keys = ([key_a] if key_a else []) + ([key_b] if key_b else []) + list(key or [])
    tokens = ([token_a] if token_a else []) + ([token_b] if token_b else []) + list(token or [])
    if len(urls) < 2 or len(keys) != len(urls) or len(tokens) != len(urls):
        err.print(
            "[red]error:[/red] give two or more URLs, and one --key and one --token per URL, "
            "in the same order"
        )
        raise typer.Exit(2)
    specs = [
        NodeSpec(u, t, _vkey(k, f"--key {i + 1}"))
        for i, (u, k, t) in enumerate(zip(urls, keys, tokens, strict=True))
    ]
    try:
        result = reconcile_nodes(specs, grace=timedelta(seconds=grace), evidence=evidence)
    except AuditFailed as exc:
        err.print(f"[red]FAILED[/red] {exc}")
        raise typer.Exit(1) from None
    directions = [d for pair in result.pairs for d in pair.directions]
    for d in directions:
        mark = "[green]OK[/green]" if d.ok else "[red]MISMATCH[/red]"
        err.print(
            f"{mark} {d.sender} -> {d.receiver}: delivered {d.delivered}, received {d.received}, "
            f"held from another peer {d.held_from_elsewhere}, refused {d.refused}, "
            f"missing {len(d.missing)}, unexplained {len(d.unexplained)}, "
            f"audience violations {len(d.violations)}, "
            f"refused but never delivered {len(d.refused_undelivered)}, "
            f"restricted (commitments, not matched) {d.restricted_delivered} sent / "
            f"{d.restricted_received} received"
        )
        for digest, reason in d.refusals[:20]:
            what = "AUDIENCE VIOLATION" if (digest, reason) in d.violations else "refused"
            err.print(f"    {what} by {d.receiver}: {digest} {reason}")
        for digest, reason in d.refused_undelivered[:10]:
            err.print(
                f"    {d.receiver} refused {digest} from {d.sender}, which never logged "
                f"delivering it: {reason}"
            )
        for digest in d.missing[:10]:
            err.print(f"    missing at {d.receiver}: {digest}")
        for digest in d.unexplained[:10]:
            err.print(
                f"    {d.receiver} logged as received but {d.sender} never delivered: {digest}"
            )
    for w in result.withdrawals:
        mark = "[green]OK[/green]" if w.ok else "[red]MISSING[/red]"
        where = f" (log entry {w.issued.index})" if w.issued else ""
        err.print(f"{mark} {w.action} of {w.origin}/{w.signal_id} at {w.time}{where}")
        for h in w.holders:
            at = f" at {h.time}" if h.time else ""
            proof = f", entry {h.evidence.index}, proof checked" if h.evidence else ""
            err.print(f"    {h.node}: {h.status}{at}{proof}")
    print(
        json.dumps(
            {
                "ok": result.ok,
                "directions": [
                    {
                        "from": d.sender,
                        "to": d.receiver,
                        "delivered": d.delivered,
                        "received": d.received,
                        "missing": d.missing,
                        "unexplained": d.unexplained,
                        "refused": [{"digest": g, "reason": r} for g, r in d.refusals],
                        "violations": [{"digest": g, "reason": r} for g, r in d.violations],
                        "refused_undelivered": [
                            {"digest": g, "reason": r} for g, r in d.refused_undelivered
                        ],
                        "restricted_delivered": d.restricted_delivered,
                        "restricted_received": d.restricted_received,
                    }
                    for d in directions
                ],
                "withdrawals": [w.as_json() for w in result.withdrawals],
            }
        )
    )
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("verify-export")
def audit_verify_export(
    directory: Annotated[Path, typer.Argument(help="A directory from `signet log export`.")],
    key: Annotated[str, typer.Option("--key", help="The node's pinned verifier key.")],
    state: Annotated[Path | None, typer.Option(help="Last verified checkpoint.")] = None,
    peer_key: Annotated[list[str] | None, typer.Option("--peer-key")] = None,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bar on stderr (default: on a terminal).")
    ] = None,
) -> None:
    """Verify an exported log offline, as `audit verify` does online."""
    from app.audit.run import audit_export

    pinned = _vkey(key, "--key")
    peers = [_vkey(k, "--peer-key") for k in peer_key or []]
    _audit_run(
        lambda p: audit_export(directory, pinned, peer_keys=peers, state_path=state, progress=p),
        progress,
    )


@log_app.command("export")
def log_export(
    directory: Annotated[Path, typer.Argument(help="Where to write the export.")],
) -> None:
    """Publish a checkpoint and write it, every entry it covers and the verifier key to DIR."""
    from app.services import log as exchange_log

    node = _node()
    try:
        with _audit_progress(err.is_terminal) as bar:
            task = bar.add_task("exporting", total=None)
            size = exchange_log.export(node, directory, lambda n: bar.advance(task, n))
    finally:
        node.db.dispose()
    err.print(f"Exported {size} entries to {directory}")
    err.print(f"Verify with: signet audit verify-export {directory} --key '{node.verifier_key}'")


@log_app.command("checkpoint")
def log_checkpoint() -> None:
    """Publish a checkpoint now and print it."""
    from app.services import log as exchange_log

    node = _node()
    try:
        print(exchange_log.publish_checkpoint(node).note, end="")
    finally:
        node.db.dispose()


# --- federation ----------------------------------------------------------------------------


def _policy_text(policy: dict[str, Any]) -> str:
    return ";".join(f"{k}={'*' if v is None else ','.join(v)}" for k, v in policy.items())


def _peer_rows(rows: list[Any]) -> list[list[str]]:
    return [
        [
            p.origin + (" (removed)" if p.removed_at else ""),
            p.url,
            _policy_text(p.policy),
            str(p.cursor),
            str(p.lag),
            p.last_success.isoformat(timespec="seconds") if p.last_success else "never",
            p.last_error or "",
        ]
        for p in rows
    ]


PEER_HEADERS = ["origin", "url", "policy", "cursor", "lag", "last success", "last error"]


@peers_app.command("add")
def peers_add(
    url: Annotated[str, typer.Argument(help="The peer's base URL.")],
    key: Annotated[str, typer.Option("--key", help="Its verifier key, obtained out of band.")],
    policy: Annotated[
        str,
        typer.Option(help="What to share with it: 'categories=a,b;types=pdq,md5;tlp=green,amber'."),
    ] = "",
) -> None:
    """Pin a peer. Its descriptor at URL must be signed by KEY and name the same origin."""
    from app.federation.client import PeerClient
    from app.services import peers

    node = _node()
    client = PeerClient(
        node.origin,
        node.key.sign,
        timeout=node.settings.peer_io_timeout,
        deadline=node.settings.peer_deadline,
    )
    try:
        row = peers.add(
            node, peers.PeerIn(url=url, verifier_key=key, policy=policy), client.descriptor
        )
    except InvalidInput as exc:
        err.print(f"[red]error:[/red] {exc.field}: {exc.reason}")
        raise typer.Exit(2) from None
    finally:
        client.close()
        node.db.dispose()
    err.print(f"Pinned peer [bold]{row.origin}[/bold] at {row.url}", highlight=False)
    err.print(f"  key      {row.verifier_key}", highlight=False, soft_wrap=True)
    err.print(f"  sharing  {_describe_policy(row.policy)}", highlight=False)


def _describe_policy(policy: dict[str, Any]) -> str:
    """`categories=*;types=pdq;tlp=green` in words: what the peer will be sent."""
    cats, types, tlp = policy.get("categories"), policy.get("types"), policy.get("tlp") or []
    return (
        f"{'every category' if cats is None else 'categories ' + ', '.join(cats)}; "
        f"{'every signal type' if types is None else 'types ' + ', '.join(types)}; "
        f"TLP {', '.join(tlp) or 'none'}  ({_policy_text(policy)})"
    )


@peers_app.command("list")
def peers_list(
    removed: Annotated[bool, typer.Option(help="Include removed peers.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout.")] = False,
) -> None:
    """Peers with their sync status."""
    from app.services import peers

    node = _node()
    try:
        rows = peers.list_all(node, removed=removed)
    finally:
        node.db.dispose()
    records = [r.model_dump(mode="json") for r in rows]
    _rows(PEER_HEADERS, _peer_rows(rows), as_json=as_json, records=records)


@peers_app.command("remove")
def peers_remove(origin: Annotated[str, typer.Argument(help="The peer's origin.")]) -> None:
    """Stop federating with a peer: its requests are refused, nothing more goes to it."""
    from app.services import peers

    node = _node()
    try:
        peers.remove(node, origin)
    finally:
        node.db.dispose()
    err.print(f"Removed peer {origin}")


@peers_app.command("set-key")
def peers_set_key(
    origin: Annotated[str, typer.Argument(help="The peer's origin.")],
    key: Annotated[str, typer.Argument(help="Its new verifier key, checked out of band.")],
) -> None:
    """Re-pin a peer's key by hand (when it changed keys without a rotation record we can
    verify). Its descriptor must be signed by KEY; the sharing policy and sync state stay."""
    from app.federation.client import PeerClient
    from app.services import rekey

    node = _node()
    client = PeerClient(node.origin, node.key.sign)
    try:
        pinned = rekey.set_key(node, origin, key, client.descriptor)
    except InvalidInput as exc:
        _fail(f"{exc.field}: {exc.reason}", code=2)
    finally:
        client.close()
        node.db.dispose()
    err.print(f"{origin}: pinned key {pinned}", highlight=False, soft_wrap=True)


@peers_app.command("set-policy")
def peers_set_policy(
    origin: Annotated[str, typer.Argument(help="The peer's origin.")],
    policy: Annotated[str, typer.Argument(help="'categories=a,b;types=pdq;tlp=green,amber'")],
) -> None:
    """Change what is shared with a peer (a log entry)."""
    from app.services import peers

    node = _node()
    try:
        row = peers.set_policy(node, origin, policy)
    except InvalidInput as exc:
        err.print(f"[red]error:[/red] {exc.field}: {exc.reason}")
        raise typer.Exit(2) from None
    finally:
        node.db.dispose()
    err.print(f"{origin}: sharing {row.policy}")


@app.command("sync")
def sync_cmd(
    peer: Annotated[str | None, typer.Argument(help="One peer's origin (default: all).")] = None,
) -> None:
    """Pull from peers now (the server also does it in the background and on notify)."""
    from app.services.federation import Federation

    node = _node()
    fed = Federation(node)
    try:
        results = [fed.pull(peer)] if peer else fed.pull_all()
    finally:
        fed.client.close()
        node.db.dispose()
    failed = False
    for r in results:
        if r.error:
            failed = True
            err.print(f"[red]{r.peer}[/red]: {r.error}")
        else:
            err.print(
                f"{r.peer}: {r.applied} applied, {r.duplicate} duplicate, {r.refused} refused "
                f"({r.pages} page(s), cursor {r.cursor})"
            )
    if failed:
        raise typer.Exit(1)


@app.command("backup")
def backup_cmd(
    directory: Annotated[Path, typer.Argument(help="A new, empty directory for the copy.")],
) -> None:
    """Consistent copy of a running SQLite node (database and key files) into DIR."""
    from app.services import backup

    node = _node()  # refuses a data dir that is not a node's
    node.db.dispose()
    try:
        backup.backup(node.settings, directory)
    except ConfigError as exc:
        _fail(str(exc), code=2)
    err.print(f"Backed up {node.origin} to {directory}")


@app.command("restore")
def restore_cmd(
    directory: Annotated[Path, typer.Argument(help="A directory from `signet backup`.")],
) -> None:
    """Restore a backup into an empty SIGNET_DATA_DIR (never over an existing node)."""
    from app.services import backup

    try:
        db = backup.restore(_settings(), directory)
    except ConfigError as exc:
        _fail(str(exc), code=2)
    err.print(f"Restored {directory} to {db}; start the node with `signet serve`")


@app.command("demo")
def demo_cmd(
    keep: Annotated[bool, typer.Option(help="Keep the nodes' data directories.")] = False,
    oprf: Annotated[
        bool,
        typer.Option(
            "--oprf", help="Instead: identifier matching through three OPRF key holders (2-of-3)."
        ),
    ] = False,
) -> None:
    """Three nodes on loopback (two platforms and an NGO) federating, step by step."""
    if oprf:
        from app.demo_oprf import run_oprf_demo

        raise typer.Exit(run_oprf_demo(out, keep=keep))
    from app.demo import run_demo

    raise typer.Exit(run_demo(out, keep=keep))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SignetError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
