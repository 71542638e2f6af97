"""
The HTML the guard and the service's HTTP face show a browser: one page
layout with one small inline stylesheet (no external assets, no script),
the choice between HTML and the plain answer by C{Accept}, and times as
ISO 8601 and in words.
"""

from __future__ import annotations

import math
from html import escape

from twisted.web.iweb import IRequest

from twisted_keycard._printable import isoTime

#: The stylesheet of every page, inline so that a page needs nothing else
#: from the server (and nothing from another).
STYLE = """\
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;\
background:#f4f5f7;color:#1d2330}
main{max-width:30rem;margin:4rem auto;padding:1.5rem 2rem;background:#fff;\
border:1px solid #d8dce3;border-radius:.5rem}
h1{font-size:1.4rem;margin:0 0 1rem}
label{display:block;margin:.75rem 0}
input{display:block;width:100%;box-sizing:border-box;margin-top:.25rem;\
padding:.45rem .5rem;font:inherit;border:1px solid #aab2bf;border-radius:.3rem}
button{font:inherit;padding:.45rem 1.1rem;border:0;border-radius:.3rem;\
background:#2456a6;color:#fff;cursor:pointer}
button:hover{background:#1b4280}
dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem}
dt{color:#5b6473}dd{margin:0}
.notice{padding:.5rem .75rem;border-radius:.3rem;background:#e6f0ff}
.error{padding:.5rem .75rem;border-radius:.3rem;background:#fdecea;color:#8a1c12}
.status{color:#5b6473;font-size:.9rem;margin:0}
footer{margin-top:1.5rem;font-size:.9rem}
a{color:#2456a6}
"""

_LAYOUT = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{style}</style></head>
<body><main>
{body}
</main></body></html>
"""

#: The titles of the error pages, by status.
TITLES = {
    400: "Bad request",
    401: "Login required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Too large",
    429: "Too many attempts",
    500: "Internal error",
    501: "Not implemented",
    503: "Unavailable",
}


def page(title: str, body: str) -> bytes:
    """
    A whole HTML page in the common layout.

    @param title: its title, plain text (escaped here).
    @param body: the content of its C{main}, HTML (not escaped).
    """
    return _LAYOUT.format(title=escape(title), style=STYLE, body=body).encode("utf-8")


def errorPage(status: int, message: str, extra: str = "") -> bytes:
    """
    The page of an error answer: its title and status, and C{message}
    (plain text, escaped here; its first letter capitalized), then
    C{extra} (HTML).
    """
    title = TITLES.get(status, "Error")
    message = message[:1].upper() + message[1:]
    body = (
        f'<p class="status">{status}</p><h1>{escape(title)}</h1>'
        f'<p class="error" id="message">{escape(message)}</p>{extra}'
    )
    return page(title, body)


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if math.isfinite(q) and 0 <= q <= 1 else 0.0
    return 1.0


#: Media ranges at most read from C{Accept}.
MAX_ACCEPT = 32


def wantsHTML(request: IRequest) -> bool:
    """
    Whether C{request} asks for HTML rather than JSON or plain text: its
    C{Accept} gives C{text/html} a higher quality than C{application/json},
    each by its most specific media range (a browser's does).  No
    C{Accept}, C{*/*}, and C{application/json} get the plain answer, as
    curl and programs expect.
    """
    accept = request.getHeader(b"accept")
    if not accept:
        return False
    # The quality of each media range named, the first time it is named.
    ranges: dict[str, float] = {}
    for item in accept.decode("latin-1").split(",")[:MAX_ACCEPT]:
        mediaType, *parameters = item.split(";")
        ranges.setdefault(mediaType.strip().lower(), _quality(parameters))

    def quality(kind: str, subtype: str) -> float:
        for name in [f"{kind}/{subtype}", f"{kind}/*", "*/*"]:
            if name in ranges:
                return ranges[name]
        return 0.0

    return quality("text", "html") > quality("application", "json")


def finite(value: float | None) -> float | None:
    """
    C{value} if it is a finite time, else C{None}.
    """
    return value if value is not None and math.isfinite(value) else None


def isoOrNone(value: float | None) -> str | None:
    """
    A POSIX time in ISO 8601, UTC (C{2027-01-15T08:00:00+00:00}, as the
    C{keycard} command prints times), or C{None} for no finite time.
    """
    value = finite(value)
    return None if value is None else isoTime(value)


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def inWords(seconds: float) -> str:
    """
    A time from now in words, rounded down to its largest unit: C{"in 59
    minutes"}, C{"in 3 hours"}; C{"now"} for a time already past or less
    than a second away.
    """
    if not math.isfinite(seconds):
        return "never"
    whole = int(seconds)
    if whole < 1:
        return "now"
    for size, unit in [(86400, "day"), (3600, "hour"), (60, "minute")]:
        if whole >= size * (2 if size > 60 else 1):
            return "in " + _plural(whole // size, unit)
    return "in " + _plural(whole, "second")


def timeHTML(ident: str, expires: float | None, now: float) -> str:
    """
    A C{<time>} element for an expiry: ISO 8601 and in words, or a plain
    statement that there is none.
    """
    iso = isoOrNone(expires)
    if iso is None or expires is None:
        return f'<span id="{ident}">no fixed end</span>'
    return (
        f'<time id="{ident}" datetime="{iso}">{iso}</time>'
        f' (<span id="{ident}-words">{inWords(expires - now)}</span>)'
    )
