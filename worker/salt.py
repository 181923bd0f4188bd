"""The start-up check of the pseudonym salt, for the processes that pseudonymise
(``usqa run`` and ``usqa worker``): compare this machine's USQA_PSEUDONYM_SALT with the
fingerprint the ledger recorded (db/site.py) and warn, in words for IT, when they differ."""

from __future__ import annotations

import logging
import os
import socket

from db.site import SaltCheck, check_salt_once
from worker.settings import Settings

__all__ = ["check_salt_at_start"]

log = logging.getLogger(__name__)


def _recorded(check: SaltCheck) -> str:
    when = check.previous_at.strftime("%Y-%m-%d %H:%M UTC") if check.previous_at else "?"
    return f"fingerprint {check.previous}, recorded by {check.previous_by} on {when}"


def check_salt_at_start(settings: Settings) -> SaltCheck:
    """Record or compare the salt fingerprint; log a warning when it changed or is missing
    here. Returns what was found."""
    process = f"{socket.gethostname()}:{os.getpid()}"
    found = check_salt_once(settings.database_url, settings.pseudonym_salt, process=process)
    if found.outcome == "recorded":
        log.info(
            "pseudonym salt fingerprint %s recorded in the ledger; every machine must use "
            "the same USQA_PSEUDONYM_SALT",
            found.fingerprint,
        )
    elif found.outcome == "changed":
        log.warning(
            "USQA_PSEUDONYM_SALT on this machine (fingerprint %s) is not the salt this ledger "
            "was filled with (%s): operator pseudonyms and patient id hashes of the scans "
            "scored from now on will not match the earlier ones, so every operator appears "
            "twice in reports. If this is a mistake, set the same USQA_PSEUDONYM_SALT as on "
            "the other machines and restart; if the salt was changed on purpose, nothing to "
            "do (the new fingerprint is now the recorded one)",
            found.fingerprint,
            _recorded(found),
        )
    elif found.outcome == "missing":
        log.warning(
            "USQA_PSEUDONYM_SALT is not set on this machine, but this ledger's scans were "
            "pseudonymised with a salt (%s): scans scored here get no operator and no "
            "patient id hash, so they drop out of reports by operator. Set the same "
            "USQA_PSEUDONYM_SALT as on the other machines and restart",
            _recorded(found),
        )
    return found
