import sys

from dipjax.fit import main

sys.exit(main())
