"""``python -m fakeagent``: the same as the ``fake-tacacsrs-agentd`` command."""

import sys

from fakeagent.cli import main

sys.exit(main())
