import sys

from dgn.cli import main


sys.exit(main())
