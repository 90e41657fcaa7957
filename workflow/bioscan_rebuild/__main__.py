import sys

from bioscan_rebuild.cli.main import main

sys.exit(main())
