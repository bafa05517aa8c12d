"""``python -m poolbackend`` runs the CLI."""

from poolbackend.cli.main import main

raise SystemExit(main())
