"""db package (see ../shared/DESIGN.md for what it owns)."""
