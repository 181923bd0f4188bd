"""What the review page takes from the settings, parsed once when the app is built."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from dicom_io import ReadOptions
from worker.networks import Network, address_in, parse_networks
from worker.settings import Settings

__all__ = ["Network", "WebConfig"]


@dataclass(frozen=True)
class WebConfig:
    """The review page's settings. ``proxies``: the peers whose forwarding headers (and
    single sign-on header) are believed; ``user_header``: that header's name, or None."""

    settings: Settings
    database_url: str
    proxies: tuple[Network, ...]
    user_header: str | None
    password_login: bool
    secure_cookies: bool
    session_lifetime: timedelta
    idle_timeout: timedelta
    read_options: ReadOptions

    @classmethod
    def from_settings(cls, settings: Settings) -> WebConfig:
        return cls(
            settings=settings,
            database_url=settings.database_url,
            proxies=tuple(parse_networks(settings.web_trusted_proxies)),
            user_header=settings.web_trusted_user_header,
            password_login=settings.web_login_form,
            secure_cookies=not settings.web_insecure_cookies,
            session_lifetime=timedelta(hours=settings.web_session_hours),
            idle_timeout=timedelta(minutes=settings.web_idle_minutes),
            read_options=ReadOptions.from_settings(settings),
        )

    def is_proxy(self, address: str | None) -> bool:
        """Whether ``address`` (the TCP peer) is one of the trusted proxies."""
        return address_in(address, self.proxies)
