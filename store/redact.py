"""Database passwords kept out of everything stepledger prints or logs.

`mask(text)` is the one masking function: every URL, error message and log line that may carry a
database URL or a driver's message about one goes through it. It hides passwords by their shape,
in any text:

- a URL's user information, `scheme://user:PASSWORD@host` (a password holding `@` included: the
  user information runs to the last `@` of the URL);
- `password=VALUE` (and `sslpassword=`, any key containing "password"), as a URL query parameter
  or a libpq keyword string (`host=db password='a b'`);

and, by its exact text, every password of a URL this process has been given (`remember`), however
a driver repeats it: libpq and SQLAlchemy quote a URL they cannot parse (an IPv6 host missing its
`]`) in their own words.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

# scheme://user:PASSWORD@ — greedy to the last `@` before a space or quote, so that an unencoded
# `@` in the password does not leave its tail in view.
_USERINFO = re.compile(r"""(?P<keep>\b[A-Za-z][\w+.-]*://[^\s:/?#@'"]*:)(?P<secret>[^\s'"]*)@""")
# password=VALUE, as a query parameter (up to `&`) or a libpq keyword (quoted, or up to a space).
_KEYWORD = re.compile(
    r"""(?P<keep>\b\w*password\w*\s*=\s*)(?P<secret>'(?:\\.|[^'\\])*'|[^\s&#'"]*)""", re.IGNORECASE
)
# A password this short would mask ordinary words wherever it appears; such passwords are still
# masked by their shape above.
_SHORTEST_MASKED = 3
_known: set[str] = set()


def secrets_of(url: str) -> set[str]:
    """The password texts in `url` (of any form above), as written and percent-decoded."""
    found: set[str] = set()
    for pattern in (_USERINFO, _KEYWORD):
        for match in pattern.finditer(url):
            secret = match.group("secret")
            if secret.startswith("'") and secret.endswith("'") and len(secret) >= 2:
                secret = re.sub(r"\\(.)", r"\1", secret[1:-1])
            found.update({secret, unquote(secret)})
    return {s for s in found if len(s) >= _SHORTEST_MASKED}


def remember(url: str) -> None:
    """Mask `url`'s passwords by their exact text too, in whatever is masked from now on."""
    _known.update(secrets_of(url))


def mask(text: str) -> str:
    """`text` with every database password hidden (see the module's docstring)."""
    text = _USERINFO.sub(lambda m: f"{m.group('keep')}{MASK}@", text)
    text = _KEYWORD.sub(lambda m: f"{m.group('keep')}{MASK}", text)
    for secret in sorted(_known, key=len, reverse=True):  # a longer one may contain a shorter
        text = text.replace(secret, MASK)
    return text


def safe_url(url: str) -> str:
    """`url` fit for a message: its passwords hidden, and remembered for the messages to come."""
    remember(url)
    return mask(url)
