"""``python -m omshub.cli``: how the stack starts omshub's own processes."""

from omshub.cli import main

main()
