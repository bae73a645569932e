"""SignetSignalExchangeAPI: follow a Signet node from python-threatexchange and HMA.

- Pulls `GET /v1/changes` (log order, resumable by log position) and verifies every record's
  Ed25519 signature against verifier keys pinned in the collaboration config, never against
  anything the node says about keys. A record from an origin not pinned is skipped with a warning;
  a record that fails verification stops the fetch (the checkpoint does not move past it).
- A signed retraction deletes the signal (a real delete in the fetched state); so does expiry:
  after the change stream, `GET /v1/changes/expired` lists what stopped being valid since the
  last fetch, and the index never holds a signal past its `valid_until`.
- One collaboration per category and/or TLP level (`category`, `tlp` in the config).
- `report_opinion` sends feedback back to the origin via `POST /v1/feedback`.

Records are keyed by "<origin>/<signal id>", so two origins sharing a hash stay two records and
retracting one leaves the other.
"""

import logging
import re
import time
import typing as t
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from threatexchange.exchanges import auth, signal_exchange_api
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.collab_config import CollaborationConfigWithDefaults
from threatexchange.signal_type.signal_base import SignalType

from app.crypto.errors import UnknownKeyError
from app.crypto.keys import VerifierKey
from app.crypto.records import verify_record
from signet_tx.signals import KEYED_TYPES

log = logging.getLogger("signet_tx")

API_NAME = "signet"
PAGE = 500
_EPOCH = "1970-01-01T00:00:00Z"

# Signet type -> python-threatexchange signal type name. Types the running library does not have
# (e.g. text_tlsh without its extension) are skipped at index time, not lost from the state.
TX_TYPE_NAMES: dict[str, str] = {
    "pdq": "pdq",
    "md5": "video_md5",
    "domain": "url",
    "keyword": "raw_text",
    "text_tlsh": "text_tlsh",
    **{k: c.get_name() for k, c in KEYED_TYPES.items()},
}

_OPINION = {
    "positive": state.SignalOpinionCategory.POSITIVE_CLASS,
    "negative": state.SignalOpinionCategory.NEGATIVE_CLASS,
    "investigation_seed": state.SignalOpinionCategory.INVESTIGATION_SEED,
}
_VERDICT_OPINION = {
    "true_positive": state.SignalOpinionCategory.POSITIVE_CLASS,
    "false_positive": state.SignalOpinionCategory.NEGATIVE_CLASS,
    "appeal_overturned": state.SignalOpinionCategory.NEGATIVE_CLASS,
}
_OPINION_VERDICT = {
    state.SignalOpinionCategory.POSITIVE_CLASS: "true_positive",
    state.SignalOpinionCategory.NEGATIVE_CLASS: "false_positive",
    state.SignalOpinionCategory.INVESTIGATION_SEED: "seen",
}


class SignetFetchError(Exception):
    """The node answered something this extension cannot accept (bad signature, bad page)."""


@dataclass
class _SignetRequired:
    node_url: str = field(
        metadata={"help": "Base URL of the Signet node, e.g. https://ngo.example"}
    )
    # A plain string, not a list: HMA's curator UI and API post every config field as a string,
    # and a list-typed field made HMA refuse the exchange. Parsed by `parse_verifier_keys`.
    verifier_keys: str = field(
        metadata={
            "help": "Pinned verifier keys (origin+hash+key), separated by commas or spaces: the "
            "node's own, plus any origin whose relayed records you accept",
            "metavar": "VKEY[,VKEY...]",
        }
    )


def parse_verifier_keys(value: str | t.Sequence[str]) -> list[str]:
    """The pinned keys of a config: a comma/space-separated string (or, from configs written by
    earlier versions of this extension, a list)."""
    items = [value] if isinstance(value, str) else list(value)
    return [part for item in items for part in re.split(r"[\s,]+", item) if part]


@dataclass
class SignetCollabConfig(CollaborationConfigWithDefaults, _SignetRequired):
    api: str = field(init=False, default=API_NAME)
    # typing.Optional, not `str | None`: the threatexchange CLI builds its flags from these
    # annotations and understands only typing.Union.
    category: t.Optional[str] = field(  # noqa: UP045
        default=None, metadata={"help": "Only signals in this category (e.g. ncii, csam)"}
    )
    tlp: t.Optional[str] = field(  # noqa: UP045
        default=None, metadata={"help": "Only signals at this TLP level (clear or green)"}
    )


@dataclass
class SignetCredentials(auth.CredentialHelper):
    """The API key, or one key per node for an HMA that follows several nodes.

    HMA and the threatexchange CLI keep one credential per exchange *type*, so all `signet`
    exchanges share it. The credential string is either a bare key (used for every node) or
    `URL=KEY` pairs separated by commas or spaces, each node's key under its base URL, e.g.
    `https://a.example=KEY_A,https://b.example=KEY_B` (a bare key among them is the default).
    """

    ENV_VARIABLE: t.ClassVar[str] = "TX_SIGNET_API_KEY"
    FILE_NAME: t.ClassVar[str] = "~/.tx_signet_key"

    api_key: str = field(
        metadata={
            "help": "Signet API key (scope feed, + match and feedback for opinions); for several "
            "nodes: URL=KEY pairs separated by commas"
        }
    )

    @classmethod
    def _from_str(cls, s: str) -> "SignetCredentials":
        return cls(api_key=s.strip())

    def _are_valid(self) -> bool:
        return bool(self.api_key.strip())

    def key_for(self, node_url: str) -> str:
        """The key to present to `node_url`."""
        default: str | None = None
        wanted = _normal_url(node_url)
        for part in re.split(r"[\s,]+", self.api_key.strip()):
            url, sep, key = part.rpartition("=")
            if not sep or not url.startswith(("http://", "https://")):
                default = part  # a bare key (keys may contain "=" only if they are not URL=...)
            elif _normal_url(url) == wanted:
                return key
        if default is None:
            raise auth.SignalExchangeAPIInvalidAuthException(
                SignetSignalExchangeAPI, f"no Signet API key for {node_url} in the credential"
            )
        return default


def _normal_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


@dataclass
class SignetCheckpoint(state.FetchCheckpointBase):
    after: int  # log position of the last change applied
    expired_since: str  # RFC 3339: expiries up to here are applied
    fetched_at: int  # Unix seconds of the last completed fetch

    def get_progress_timestamp(self) -> int | None:
        return self.fetched_at


@dataclass
class SignetSignalMetadata(state.FetchedSignalMetadata):
    origin: str
    signal_id: str
    signet_type: str
    value: str
    opinion: str
    confidence: int
    categories: list[str]
    tlp: str
    valid_until: str
    feedback: dict[str, int] = field(default_factory=dict)

    def is_expired(self, now: datetime | None = None) -> bool:
        until = datetime.fromisoformat(self.valid_until.replace("Z", "+00:00"))
        return until <= (now or datetime.now(UTC))

    def get_as_opinions(self) -> t.Sequence[state.SignalOpinion]:
        opinions = [
            state.SignalOpinion(
                False,
                _OPINION.get(self.opinion, state.SignalOpinionCategory.INVESTIGATION_SEED),
                set(self.categories),
            )
        ]
        for verdict, count in sorted(self.feedback.items()):
            category = _VERDICT_OPINION.get(verdict)
            if category is not None and count > 0:
                opinions.append(state.SignalOpinion(False, category, {verdict}))
        return opinions


def _key_of(origin: str, signal_id: str) -> str:
    return f"{origin}/{signal_id}"


class SignetSignalExchangeAPI(
    auth.SignalExchangeWithAuth[SignetCollabConfig, SignetCredentials],
    signal_exchange_api.SignalExchangeAPI[
        SignetCollabConfig, SignetCheckpoint, SignetSignalMetadata, str, SignetSignalMetadata
    ],
):
    """Follow a Signet node: verified records, retractions and expiry applied as deletes."""

    def __init__(
        self,
        collab: SignetCollabConfig,
        api_key: str,
        session: requests.Session | None = None,
    ) -> None:
        self.collab = collab
        self.base = collab.node_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        # Several keys per origin may be pinned (across a key rotation, records signed by the
        # old key keep verifying); a record picks the pinned key its key_id names.
        self.keys: dict[tuple[str, str], VerifierKey] = {}
        for text in parse_verifier_keys(collab.verifier_keys):
            key = VerifierKey.parse(text)
            self.keys[(key.origin, key.key_id)] = key

    @classmethod
    def get_name(cls) -> str:
        return API_NAME

    @staticmethod
    def get_config_cls() -> type[SignetCollabConfig]:
        return SignetCollabConfig

    @staticmethod
    def get_checkpoint_cls() -> type[SignetCheckpoint]:
        return SignetCheckpoint

    @staticmethod
    def get_record_cls() -> type[SignetSignalMetadata]:
        return SignetSignalMetadata

    @staticmethod
    def get_credential_cls() -> type[SignetCredentials]:
        return SignetCredentials

    @classmethod
    def for_collab(
        cls,
        collab: SignetCollabConfig,
        credentials: SignetCredentials | None = None,
    ) -> "SignetSignalExchangeAPI":
        credentials = credentials or SignetCredentials.get(cls)
        return cls(collab, credentials.key_for(collab.node_url))

    # --- fetch ---------------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, t.Any]) -> dict[str, t.Any]:
        resp = self.session.get(self.base + path, params=params, timeout=60)
        resp.raise_for_status()
        body = resp.json()
        if not isinstance(body, dict):
            raise SignetFetchError(f"{path}: expected a JSON object")
        return body

    def _wanted(self, record: t.Mapping[str, t.Any]) -> bool:
        if self.collab.category and self.collab.category not in record.get("categories", []):
            return False
        tlp = (record.get("audience") or {}).get("tlp")
        return not (self.collab.tlp and self.collab.tlp != tlp)

    def _verify(self, record: t.Any) -> bool:
        """True if verified, False if its origin is not pinned; raises if it fails."""
        try:
            key_id = record.get("key_id")
            verify_record(
                record,
                lambda origin: (
                    self.keys.get((origin, key_id))
                    or next((k for (o, _), k in self.keys.items() if o == origin), None)
                ),
            )
        except UnknownKeyError:
            log.warning("skipping a record from unpinned origin %r", record.get("origin"))
            return False
        except Exception as exc:  # VerificationError and malformed input alike
            raise SignetFetchError(f"record failed verification: {exc}") from exc
        return True

    def _apply(
        self, item: t.Mapping[str, t.Any], updates: dict[str, SignetSignalMetadata | None]
    ) -> None:
        record = item.get("record")
        if not isinstance(record, dict) or not self._verify(record):
            return
        kind = record.get("kind")
        if kind == "retraction":
            target = record.get("signal") or {}
            if target.get("origin") != record["origin"]:
                # Only a signal's origin may withdraw it.
                log.warning(
                    "ignoring a retraction by %r of another origin's signal", record["origin"]
                )
                return
            updates[_key_of(record["origin"], str(target.get("id")))] = None
            return
        if kind != "signal":
            return
        key = _key_of(record["origin"], record["id"])
        if not self._wanted(record):
            return
        meta = SignetSignalMetadata(
            origin=record["origin"],
            signal_id=record["id"],
            signet_type=record["type"],
            value=record["value"],
            opinion=record.get("opinion", "investigation_seed"),
            confidence=int(record.get("confidence", 50)),
            categories=list(record.get("categories", [])),
            tlp=(record.get("audience") or {}).get("tlp", ""),
            valid_until=record["valid_until"],
            # Feedback counts are the node's aggregate, not signed by the origin: advisory only.
            feedback={k: int(v) for k, v in (item.get("feedback") or {}).items()},
        )
        updates[key] = None if meta.is_expired() else meta

    def fetch_iter(
        self,
        _supported_signal_types: t.Sequence[type[SignalType]],
        checkpoint: SignetCheckpoint | None,
    ) -> t.Iterator[state.FetchDelta[str, SignetSignalMetadata, SignetCheckpoint]]:
        after = checkpoint.after if checkpoint else -1
        expired_since = checkpoint.expired_since if checkpoint else _EPOCH
        started = None
        for _ in range(1_000_000):  # bounded: each page moves `after` forward
            page = self._get("/v1/changes", {"after": after, "limit": PAGE})
            started = started or page.get("now")
            updates: dict[str, SignetSignalMetadata | None] = {}
            for item in page.get("records", []):
                self._apply(item, updates)
            nxt = int(page["next"])
            if nxt < after:
                raise SignetFetchError("the node's cursor went backwards")
            after = nxt
            yield state.FetchDelta(
                updates, SignetCheckpoint(after, expired_since, int(time.time()))
            )
            if not page.get("more"):
                break
        # Expiry is not a change in the log: ask what ran out since the last fetch.
        cursor: str | None = None
        until = started or _EPOCH
        for _ in range(1_000_000):
            params: dict[str, t.Any] = {"since": expired_since, "until": until, "limit": PAGE}
            if cursor:
                params["after"] = cursor
            page = self._get("/v1/changes/expired", params)
            gone: dict[str, SignetSignalMetadata | None] = {
                _key_of(i["origin"], i["id"]): None for i in page.get("items", [])
            }
            cursor = page.get("next")
            done = not cursor
            yield state.FetchDelta(
                gone,
                SignetCheckpoint(
                    after, page.get("until", until) if done else expired_since, int(time.time())
                ),
            )
            if done:
                break

    @classmethod
    def naive_convert_to_signal_type(
        cls,
        signal_types: t.Sequence[type[SignalType]],
        collab: SignetCollabConfig,
        fetched: t.Mapping[str, SignetSignalMetadata],
    ) -> dict[type[SignalType], dict[str, SignetSignalMetadata]]:
        by_name = {st.get_name(): st for st in signal_types}
        now = datetime.now(UTC)
        ret: dict[type[SignalType], dict[str, SignetSignalMetadata]] = {}
        for meta in fetched.values():
            if meta is None or meta.is_expired(now):
                continue  # never index a signal past its validity, even before the next fetch
            s_type = by_name.get(TX_TYPE_NAMES.get(meta.signet_type, ""))
            if s_type is None:
                continue
            try:
                value = s_type.validate_signal_str(meta.value)
            except ValueError:
                log.warning("skipping invalid %s value of %s", meta.signet_type, meta.signal_id)
                continue
            ret.setdefault(s_type, {})[value] = meta
        return ret

    # --- feedback ------------------------------------------------------------------------------

    def report_opinion(
        self, s_type: type[SignalType], signal: str, opinion: state.SignalOpinion
    ) -> None:
        """Send a verdict on every signal of the node that is exactly this value."""
        signet_type = next((k for k, v in TX_TYPE_NAMES.items() if v == s_type.get_name()), None)
        if signet_type is None:
            raise NotImplementedError(f"Signet has no counterpart of {s_type.get_name()}")
        query: dict[str, t.Any] = {"type": signet_type, "value": signal}
        if signet_type == "pdq":
            query["threshold"] = 0
        resp = self.session.post(self.base + "/v1/match", json={"queries": [query]}, timeout=60)
        resp.raise_for_status()
        result = resp.json()["results"][0]
        if result.get("status") != "ok":
            raise SignetFetchError(f"the node refused the value: {result.get('error')}")
        verdict = _OPINION_VERDICT[opinion.category]
        for hit in result.get("matches", []):
            body = {"signal": hit["id"], "origin": hit["origin"], "verdict": verdict}
            self.session.post(self.base + "/v1/feedback", json=body, timeout=60).raise_for_status()
