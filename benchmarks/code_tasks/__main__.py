"""`python -m benchmarks.code_tasks [--quick]`: run the code benchmark, write results/code.json."""

from benchmarks.code_tasks import main

raise SystemExit(main())
