"""`python -m prefork` is the same program as `prefork-serve`."""

from prefork.cli import main

raise SystemExit(main())
