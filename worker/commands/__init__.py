"""One module per ``usqa`` verb: ``add_parser(subparsers)`` and ``run(args, settings)``."""
