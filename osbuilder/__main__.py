import sys

from osbuilder.host.cli import main

sys.exit(main())
