"""kopf handlers: importing this package registers every handler with kopf.

One import per line, so parallel work on different kinds never conflicts.
"""

import kiln.handlers.deployment
import kiln.handlers.training  # noqa: F401
