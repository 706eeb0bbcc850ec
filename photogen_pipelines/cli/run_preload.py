"""What the code server's forkserver imports before it forks runs (cli/code_server.py).

The forkserver survives an ImportError in a module it preloads, but any other exception at
import (a setting that does not parse, say) would end it, and every later run would fail to
start with an error about a closed socket. Here the definitions that fail to import are left
to each run, which imports them itself and fails with the real error, as a run does today;
the code server reports the same error to the UI.
"""

import contextlib

with contextlib.suppress(Exception):
    import photogen_pipelines.definitions  # noqa: F401
