import sys

from aoeprov.cli import main

sys.exit(main())
