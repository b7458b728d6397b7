import sys

from mofkit.cli import main

sys.exit(main())
