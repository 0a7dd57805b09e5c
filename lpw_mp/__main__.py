import sys

from lpw_mp.commands.cli import main

sys.exit(main())
