"""Where a job's rq webhooks may go, what they may carry, and how a gated worker sends them.

rq's `Webhook.send` sends a job's webhook with `urllib`'s default opener: it follows redirects, and
sends whatever headers the job hash lists. Whoever can write to Redis writes that hash. A gate with
`allowed_webhook_urls` (`worker.gate.gate.JobGate`) therefore allows a webhook only when

- its URL has an entry's scheme, host and port, no user or password, and a path under the entry's
  once percent-decoded, with no ``.`` or ``..`` segment (``/rq/../admin``, ``/rq/%2e%2e/admin``);
- it carries none of `GUARDED_HEADERS` (``Host``, credentials, message framing) unless the entry
  names it: ``{"url": "https://hooks.example.com/rq/", "headers": ["Authorization"]}``; names are
  compared stripped and case-folded, and a header name that is not an HTTP token (a space, a control
  character, ``:``, non-ASCII: ``"Authorization "`` goes on the wire as ``Authorization :``, which
  servers may read as ``Authorization``) refuses the webhook;

and `send` sends it without following redirects: a 3xx answer is logged, its target never asked.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import SplitResult, unquote, urlsplit

from worker.text import short_repr

if TYPE_CHECKING:
    from rq.job import Job
    from rq.webhook import Webhook

logger = logging.getLogger("rq.worker.retries")  # under rq's worker logger, as worker.gate's

#: Request headers a webhook may carry only where its allowlist entry names them (lower case): who
#: the request is for, credentials, and how the message is framed.
GUARDED_HEADERS: Final = frozenset(
    {
        "host",
        "authorization",
        "proxy-authorization",
        "cookie",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)
#: An HTTP header name (RFC 9110 `token`): anything else is refused, never sent.
HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Longest repr of a bad header name in a refusal, in characters.
HEADER_REPR_CHARS: Final = 80
#: Times a path is percent-decoded looking for dot segments (``%252e`` decodes to ``%2e``, then ``.``).
DECODE_ROUNDS: Final = 3


@dataclass(frozen=True)
class WebhookTarget:
    """One `allowed_webhook_urls` entry: a URL prefix, and the guarded headers sent there (lower case)."""

    url: str
    headers: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, entry: str | Mapping[str, Any] | WebhookTarget) -> WebhookTarget:
        """The target `entry` describes: a URL, or ``{"url": ..., "headers": [...]}``; else ValueError."""
        if isinstance(entry, WebhookTarget):
            return entry
        if isinstance(entry, Mapping):
            url, headers = entry.get("url"), entry.get("headers", ())
            unknown = set(entry) - {"url", "headers"}
            names_ok = isinstance(headers, (list, tuple)) and all(is_header_name(name) for name in headers)
            if not unknown and isinstance(url, str) and names_ok and _is_http_url(url):
                return cls(url, frozenset(normalised(name) for name in headers))
        elif isinstance(entry, str) and _is_http_url(entry):
            return cls(entry)
        raise ValueError(f"not an allowed_webhook_urls entry: {entry!r}")

    def matches(self, url: str) -> bool:
        """`url` goes where this entry allows: same scheme, host and port, and a path under the entry's."""
        try:
            target, allowed = urlsplit(url), urlsplit(self.url)
            same_place = (target.scheme, target.hostname, target.port) == (
                allowed.scheme,
                allowed.hostname,
                allowed.port,
            )
        except ValueError:  # an unparsable port
            return False
        return same_place and _decoded(target.path or "/").startswith(_decoded(allowed.path or "/"))


def is_target_entry(entry: object) -> bool:
    """Whether `entry` is a valid `allowed_webhook_urls` entry other than ``"*"``."""
    try:
        WebhookTarget.of(entry)  # type: ignore[arg-type]  # anything may be handed in: that is the check
    except ValueError:
        return False
    return True


def refusal(url: str, headers: Mapping[str, str] | None, targets: Iterable[WebhookTarget]) -> str | None:
    """Why a webhook to `url` with `headers` must not be sent, or None; `url` matches one of `targets`."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return f"webhook to {url!r} carries a user or password in its URL, which this worker never sends"
    if _has_dot_segment(parts):
        return (
            f"webhook to {url!r} has a '.' or '..' path segment (percent-encoded or not), "
            "which this worker never sends"
        )
    names = list(headers or {})
    for name in names:
        if not is_header_name(name):
            return (
                f"webhook to {url!r} carries header name {short_repr(name, HEADER_REPR_CHARS)}, "
                "which is not an HTTP token "
                "(a space, a control character, ':' or non-ASCII) and which this worker never sends"
            )
    guarded = sorted(name for name in names if normalised(name) in GUARDED_HEADERS)
    matching = [target for target in targets if target.matches(url)]
    if any(all(normalised(name) in target.headers for name in guarded) for target in matching):
        return None
    return (
        f"webhook to {url!r} carries header(s) {', '.join(guarded)}, which this worker sends only where "
        'an allowed_webhook_urls entry names them ({"url": ..., "headers": [...]})'
    )


def is_header_name(name: object) -> bool:
    """Whether `name` is a valid HTTP header name (a token: no space, control character, ``:``)."""
    return isinstance(name, str) and HEADER_NAME.fullmatch(name) is not None


def normalised(name: str) -> str:
    """`name` as the guard compares header names: stripped and case-folded."""
    return name.strip().casefold()


def send(webhook: Webhook, job: Job, *, exc_string: str | None = None) -> None:
    """What rq's `Webhook.send` does (same request, payload and logging; errors logged, never raised),
    but a redirect is not followed."""
    headers = dict(webhook.headers or {})
    data = None
    if webhook.method == "POST":
        data = json.dumps(webhook.get_payload(job, exc_string=exc_string)).encode("utf-8")
        headers = {"Content-Type": "application/json", **headers}
    try:
        request = urllib.request.Request(webhook.url, data=data, headers=headers, method=webhook.method)
        with _OPENER.open(request, timeout=webhook.timeout):
            pass
    except _Redirected as redirect:
        logger.warning(
            "Job %s: webhook to %s answered %s, redirecting to %r; not followed",
            job.id,
            webhook.url,
            redirect.code,
            redirect.location,
        )
    except Exception:
        logger.warning("Job %s: failed to send webhook to %s", job.id, webhook.url, exc_info=True)


class _Redirected(Exception):
    def __init__(self, code: int, location: str | None) -> None:
        super().__init__(code, location)
        self.code, self.location = code, location


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Raises `_Redirected` instead of asking the redirect's target."""

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        raise _Redirected(code, newurl)


_OPENER: Final = urllib.request.build_opener(_NoRedirects)


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _decoded(path: str) -> str:
    for _ in range(DECODE_ROUNDS):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return path


def _has_dot_segment(parts: SplitResult) -> bool:
    segments = _decoded(parts.path).replace("\\", "/").split("/")
    return "." in segments or ".." in segments
