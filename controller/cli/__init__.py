"""`canaryctl` (also `kubectl canary`): the on-call engineer's view of and hand on releases."""
