import sys

from selm.cli import main

sys.exit(main())
