"""``python -m bench``: the pipeline benchmark."""

from bench.cli import main

raise SystemExit(main())
