"""python -m moe_cluster: generate | serve-demo | bench (see the README, "Python")."""

import sys

from moe_cluster.cli import main

if __name__ == "__main__":
    sys.exit(main())
