"""`python -m featcomp`: the same CLI as the `featcomp` console script."""

from featcomp.cli import main

raise SystemExit(main())
