import sys

from lpw_mp.cli import main

sys.exit(main())
