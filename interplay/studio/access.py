"""Who may do what in the studio: the operator's admin token, judges bound to their own link,
CSRF tokens, the Origin check and the Host allow-list.

Two kinds of access:

- **The operator** holds the admin token (printed once at start, as Jupyter does, or set with
  ``--admin-token``). Opening any page with ``?token=TOKEN`` sets an HttpOnly, SameSite=Strict
  cookie and redirects to the same page without the token; scripts may send
  ``Authorization: Bearer TOKEN`` instead. Runs, transcripts, talk, study results and exports
  need it.
- **A judge** holds the secret of their own link (``/judge/<token>``), which reaches only that
  judge's pairs. The first visit binds the browser to that judge (a cookie): the same browser
  asking for another judge's link is refused, unless it is the operator's.

Every state-changing request is refused when it comes from another origin (its ``Origin`` is not
the studio's own, or ``Sec-Fetch-Site`` says ``same-site``/``cross-site``: a page on another port
of 127.0.0.1 is "same-site"), and every form carries a CSRF token bound to the operator or to the
judge it was served to (an HMAC under a key derived from the admin token, compared in constant
time). The Host allow-list (Starlette's ``TrustedHostMiddleware``) answers 400 to a request for
any other name, which defeats DNS rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from starlette.requests import Request

#: the names a loopback-bound studio answers to by default
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
#: methods that change state: the Origin check and the CSRF token apply to them
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: the hidden form field carrying the CSRF token
CSRF_FIELD = "csrf"
#: every response's Content-Security-Policy: no inline script, no framing, forms post only here
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # judge links never leave in a Referer; not "no-referrer", with which a browser sends "Origin:
    # null" on its own forms, which the Origin check refuses
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def allowed_hosts(extra: Iterable[str] = ()) -> list[str]:
    """The host names the studio answers to: the loopback names and ``extra`` (``--allowed-host``;
    an IPv6 address is bracketed, ports are ignored)."""
    hosts = list(LOOPBACK_HOSTS)
    for name in extra:
        name = name.strip().lower()
        if not name:
            continue
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"  # an IPv6 address, as a Host header spells it
        if name not in hosts:
            hosts.append(name)
    return hosts


class Access:
    """The studio's secrets and checks. ``admin_token``: the operator's token (a random one when
    None; read it back from :attr:`admin_token`)."""

    def __init__(self, admin_token: str | None = None):
        token = admin_token if admin_token is not None else secrets.token_urlsafe(24)
        if len(token) < 16:
            raise ValueError("the admin token must be at least 16 characters (leave it out to get a random one)")
        self.admin_token = token
        self._key = hmac.new(token.encode(), b"interplay-studio/1", hashlib.sha256).digest()
        tag = self._sign("cookie-names")[:8]
        #: cookie names carry a tag of the key: two studios on one machine keep their own cookies
        self.admin_cookie = f"interplay_admin_{tag}"
        self.judge_cookie = f"interplay_judge_{tag}"

    def _sign(self, what: str) -> str:
        return hmac.new(self._key, what.encode(), hashlib.sha256).hexdigest()

    # -- the operator -----------------------------------------------------------------------

    def is_admin_token(self, token: str | None) -> bool:
        """Whether ``token`` is the admin token (constant time)."""
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.admin_token.encode())

    def admin_cookie_value(self) -> str:
        """What the operator's cookie holds (a MAC, never the token itself)."""
        return self._sign("admin")

    def is_admin(self, request: Request) -> bool:
        """Whether the request carries the operator's cookie or ``Authorization: Bearer TOKEN``."""
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and self.is_admin_token(auth[7:].strip()):
            return True
        cookie = request.cookies.get(self.admin_cookie)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.admin_cookie_value().encode())

    def bearer(self, request: Request) -> bool:
        """Whether the request authenticates with a header (no ambient credential: no CSRF risk)."""
        auth = request.headers.get("authorization", "")
        return auth[:7].lower() == "bearer " and self.is_admin_token(auth[7:].strip())

    # -- judges -----------------------------------------------------------------------------

    def judge_cookie_value(self, judge_token: str) -> str:
        """What a judge's browser cookie holds: a MAC of their token."""
        return self._sign(f"judge:{judge_token}")

    def other_judge(self, request: Request, judge_token: str) -> bool:
        """Whether this browser is bound to a judge other than ``judge_token``."""
        cookie = request.cookies.get(self.judge_cookie)
        return cookie is not None and not hmac.compare_digest(cookie.encode(),
                                                              self.judge_cookie_value(judge_token).encode())

    # -- CSRF and origin --------------------------------------------------------------------

    def csrf_token(self, scope: str) -> str:
        """The CSRF token of forms served to ``scope`` (``admin`` or ``judge:<token>``)."""
        return self._sign(f"csrf:{scope}")[:40]

    def csrf_ok(self, scope: str, value: object) -> bool:
        """Whether ``value`` (a form field) is the CSRF token of ``scope``."""
        return isinstance(value, str) and hmac.compare_digest(value.encode(), self.csrf_token(scope).encode())


def cross_origin(request: Request) -> str | None:
    """Why a state-changing request comes from another origin, or None when it does not: its
    ``Origin`` is not this studio's scheme and host (``null`` included), or the browser says it
    comes from another site or another origin of this site (``Sec-Fetch-Site``)."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return f"a request from another origin (Sec-Fetch-Site: {site})"
    origin = request.headers.get("origin")
    if origin is None:
        return None  # not a browser's cross-origin request (browsers send Origin on every cross-origin POST)
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    if origin == "null" or parts.netloc.lower() != host.lower() or parts.scheme not in ("http", "https"):
        return f"a request from another origin ({origin[:80]})"
    return None


def bind_hosts(host: str) -> Sequence[str]:
    """Host names implied by binding ``host``: a specific address answers to itself (a wildcard
    bind, ``0.0.0.0`` or ``::``, needs ``--allowed-host`` for each name judges use)."""
    return () if host in ("0.0.0.0", "::", "") else (host,)
