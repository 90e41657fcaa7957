import sys

from bioscan_rebuild.cli import main

sys.exit(main())
