import sys

from stator.cli import main

sys.exit(main())
