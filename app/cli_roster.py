"""`signet roster ...`: write, sign, check and publish the federation roster.

Stewards keep the roster as a JSON file: one signed document, or the list of every version (the
history, which a node that was offline catches up from). The usual round:

    signet roster propose roster.json --add "$VKEY=https://new.example" --out v4.json
    signet roster approve v4.json          # each steward, on their own node, until the quorum
    signet roster publish roster.json v4.json   # checks v4 against the last version, appends

`approve` signs with this node's key and appends a `roster.approved` entry to this node's log, so
every version a steward approved is in its log (and covered by the checkpoints peers witness).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from app.crypto.keys import VerifierKey
from app.errors import SignetError
from app.federation import roster as rosters

roster_app = typer.Typer(
    help="The federation roster: members and stewards, threshold-signed.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _read(source: str) -> Any:
    from app.services.roster import read_source

    try:
        return read_source(source)
    except (SignetError, OSError) as exc:
        raise _fail(f"cannot read {source}: {exc}") from None


def _chain(payload: Any) -> list[dict[str, Any]]:
    docs = payload if isinstance(payload, list) else [payload]
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise _fail("expected a roster document or a list of them")
    return docs


def _write(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _vkey(text: str, what: str) -> VerifierKey:
    try:
        return VerifierKey.parse(text.strip())
    except SignetError as exc:
        raise _fail(f"{what}: {exc}") from None


def _member(spec: str) -> dict[str, Any]:
    """`VKEY=URL`: the origin is the key's name."""
    key_text, sep, url = spec.rpartition("=")
    if not sep or not url.startswith(("http://", "https://")):
        raise _fail(f"member {spec[:80]!r}: expected VKEY=URL")
    key = _vkey(key_text, "member key")
    return {"origin": key.origin, "key": str(key), "url": url, "roles": ["member"]}


def _expires(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


@roster_app.command("init")
def init(
    federation: Annotated[str, typer.Option(help="The federation's name, e.g. lantern.example")],
    steward: Annotated[list[str], typer.Option(help="A steward's verifier key (repeat).")],
    threshold: Annotated[int, typer.Option(help="Steward signatures every version needs.")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write version 1.")],
    member: Annotated[list[str] | None, typer.Option(help="A member as VKEY=URL (repeat).")] = None,
    expires_days: Annotated[int, typer.Option(help="Validity of this version.")] = 365,
    on_removal: Annotated[
        str, typer.Option(help="drop or keep what members hold from a removed member.")
    ] = "drop",
) -> None:
    """Write version 1 (unsigned): stewards then `approve` it."""
    keys = [_vkey(s, "steward key") for s in steward]
    doc = {
        "signed": {
            "type": "signet-roster",
            "spec": 1,
            "federation": federation,
            "version": 1,
            "expires": _expires(expires_days),
            "stewards": {"threshold": threshold, "keys": [str(k) for k in keys]},
            "members": [_member(m) for m in member or []],
            "on_removal": on_removal,
        },
        "signatures": [],
    }
    try:
        rosters.parse(doc)
    except SignetError as exc:
        raise _fail(str(exc)) from None
    _write(out_file, doc)
    out.print(f"wrote {out_file}: version 1 of {federation}, {len(member or [])} member(s)")


@roster_app.command("propose")
def propose(
    source: Annotated[str, typer.Argument(help="The current roster (file, URL or history).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the new version.")],
    add: Annotated[list[str] | None, typer.Option(help="Add a member: VKEY=URL.")] = None,
    remove: Annotated[list[str] | None, typer.Option(help="Remove a member (origin).")] = None,
    suspend: Annotated[list[str] | None, typer.Option(help="Suspend a member (origin).")] = None,
    reinstate: Annotated[list[str] | None, typer.Option(help="Reinstate a member.")] = None,
    rotate: Annotated[
        list[str] | None, typer.Option(help="A member's new key (its name says whose).")
    ] = None,
    role: Annotated[
        list[str] | None, typer.Option(help="ORIGIN=ROLE[,ROLE]: set a member's roles.")
    ] = None,
    steward_add: Annotated[list[str] | None, typer.Option(help="Add a steward key.")] = None,
    steward_remove: Annotated[
        list[str] | None, typer.Option(help="Remove a steward (key or key id).")
    ] = None,
    threshold: Annotated[int | None, typer.Option(help="New steward threshold.")] = None,
    expires_days: Annotated[int, typer.Option(help="Validity of the new version.")] = 365,
) -> None:
    """Write the next version with the changes asked for (unsigned; stewards `approve` it)."""
    current_doc = _chain(_read(source))[-1]
    try:
        current = rosters.parse(current_doc)
    except SignetError as exc:
        raise _fail(str(exc)) from None
    signed = json.loads(json.dumps(current_doc["signed"]))
    members: dict[str, dict[str, Any]] = {m["origin"]: m for m in signed["members"]}

    def need(origin: str) -> dict[str, Any]:
        if origin not in members:
            raise _fail(f"{origin} is not a member")
        return members[origin]

    for spec in add or []:
        m = _member(spec)
        if m["origin"] in members:
            raise _fail(f"{m['origin']} is already a member")
        members[m["origin"]] = m
    for origin in remove or []:
        need(origin)
        del members[origin]
    for origin in suspend or []:
        need(origin)["status"] = "suspended"
    for origin in reinstate or []:
        need(origin)["status"] = "active"
    for text in rotate or []:
        key = _vkey(text, "new key")
        need(key.origin)["key"] = str(key)
    for spec in role or []:
        origin, sep, roles = spec.partition("=")
        if not sep:
            raise _fail(f"role {spec!r}: expected ORIGIN=ROLE[,ROLE]")
        need(origin)["roles"] = sorted({r.strip() for r in roles.split(",") if r.strip()})
    stewards = list(signed["stewards"]["keys"])
    for text in steward_add or []:
        stewards.append(str(_vkey(text, "steward key")))
    for text in steward_remove or []:
        before = len(stewards)
        stewards = [k for k in stewards if k != text and VerifierKey.parse(k).key_id != text]
        if len(stewards) == before:
            raise _fail(f"no steward {text[:60]!r}")
    signed["stewards"] = {
        "threshold": threshold if threshold is not None else signed["stewards"]["threshold"],
        "keys": stewards,
    }
    signed["members"] = [members[o] for o in sorted(members)]
    signed["version"] = current.version + 1
    signed["previous"] = current.digest
    signed["expires"] = _expires(expires_days)
    doc = {"signed": signed, "signatures": []}
    try:
        new = rosters.parse(doc)
    except SignetError as exc:
        raise _fail(str(exc)) from None
    _write(out_file, doc)
    changes = rosters.members_changed(current, new)
    out.print(f"wrote {out_file}: version {new.version}; " + ("; ".join(changes) or "no changes"))


@roster_app.command("approve")
def approve(
    file: Annotated[Path, typer.Argument(help="The proposed version, signed in place.")],
) -> None:
    """Sign a proposed version with this node's key, as one of the stewards, and log it."""
    from app.cli import _node
    from app.services.tx import transaction

    doc = _chain(_read(str(file)))[-1]
    try:
        proposed = rosters.parse(doc)
    except SignetError as exc:
        raise _fail(str(exc)) from None
    node = _node()
    me = node.key.verifier(node.origin)
    if me.key_id not in {k.key_id for k in proposed.stewards}:
        raise _fail(f"this node's key ({node.origin} {me.key_id}) is not a steward of the roster")
    signed = rosters.sign(doc, node.key, me)
    _write(file, signed)
    with transaction(node) as tx:
        tx.append(
            "roster.approved",
            {
                "federation": proposed.federation,
                "version": proposed.version,
                "digest": proposed.digest,
            },
        )
    have = len(rosters.valid_signers(signed, proposed.stewards))
    out.print(
        f"signed version {proposed.version} of {proposed.federation} as {me.key_id}: "
        f"{have} of {proposed.threshold} signature(s)"
    )


@roster_app.command("publish")
def publish(
    history: Annotated[Path, typer.Argument(help="The history file (a list of versions).")],
    new: Annotated[Path, typer.Argument(help="The approved next version.")],
) -> None:
    """Check the new version against the last one in the history, then append it."""
    docs = _chain(json.loads(history.read_text())) if history.exists() else []
    doc = _chain(_read(str(new)))[-1]
    try:
        candidate = rosters.parse(doc)
        current = rosters.parse(docs[-1]) if docs else None
        if current is None:
            rosters.require_quorum(candidate, candidate.stewards, candidate.threshold, "its own")
        else:
            rosters.check_update(
                current,
                candidate,
                root_stewards=current.stewards,
                root_threshold=current.threshold,
            )
    except SignetError as exc:
        raise _fail(str(exc)) from None
    _write(history, [*docs, doc])
    out.print(f"{history}: now {len(docs) + 1} version(s), latest {candidate.version}")


@roster_app.command("show")
def show(
    source: Annotated[str, typer.Argument(help="A roster file, URL or history.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the latest version: members, roles, status, stewards."""
    doc = _chain(_read(source))[-1]
    try:
        r = rosters.parse(doc)
    except SignetError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return
    print(f"federation {r.federation}  version {r.version}  digest {r.digest}")
    print(f"expires {r.expires.isoformat()}  on_removal {r.on_removal}")
    print(f"stewards ({r.threshold} of {len(r.stewards)}):")
    for k in r.stewards:
        print(f"  {k.origin} {k.key_id}")
    print(f"members ({len(r.members)}):")
    for m in r.members:
        print(f"  {m.origin}\t{m.status}\t{','.join(m.roles)}\t{m.key.key_id}\t{m.url}")


@roster_app.command("verify")
def verify(
    source: Annotated[str, typer.Argument(help="A roster file, URL or history.")],
    steward: Annotated[list[str], typer.Option(help="A trusted steward key (repeat).")],
    threshold: Annotated[int, typer.Option(help="Signatures version 1 needs.")],
) -> None:
    """Verify every version in order from the trust root; exit non-zero at the first failure."""
    root = [_vkey(s, "steward key") for s in steward]
    current: rosters.Roster | None = None
    docs = _chain(_read(source))
    try:
        for doc in docs:
            candidate = rosters.parse(doc)
            if current is None and candidate.version != 1:
                # A single recent version: check it under the root as if it were the first.
                rosters.require_quorum(candidate, root, threshold, "the trusted")
                rosters.require_quorum(
                    candidate, candidate.stewards, candidate.threshold, "its own"
                )
            else:
                rosters.check_update(
                    current, candidate, root_stewards=root, root_threshold=threshold
                )
            current = candidate
    except SignetError as exc:
        raise _fail(str(exc)) from None
    assert current is not None
    print(f"ok: {len(docs)} version(s), latest {current.version} digest {current.digest}")
