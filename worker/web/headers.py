"""Security headers on every response of the review page.

No script runs that the page did not serve itself (there is none: the pages need no
JavaScript), no other site may frame the pages or embed the images, browsers must not guess
content types, and no URL leaks in a Referer. Pages and images are never stored by a browser
or a shared cache (``no-store``): clinical images must not linger in proxies; only the
stylesheet may be cached.
"""

from __future__ import annotations

from flask import Response, request

__all__ = ["CONTENT_SECURITY_POLICY", "secure"]

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' data:",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def secure(response: Response) -> Response:
    """After every request: the headers above, and the caching rule."""
    for name, value in _HEADERS.items():
        response.headers[name] = value
    if request.endpoint == "static":
        response.headers["Cache-Control"] = "private, max-age=3600"
    else:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response
