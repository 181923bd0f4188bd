"""Kept for one release: ``python -m worker.decoder`` starts the decoder child, which now
lives in :mod:`worker.decoding.child` (a decoder started by an older worker still finds it)."""

from worker.decoding.child import main

if __name__ == "__main__":
    raise SystemExit(main())
