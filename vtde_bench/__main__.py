import sys

from vtde_bench.cli import main

sys.exit(main())
