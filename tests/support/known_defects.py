"""Defects that are known and open, for the tests that meet them to report as such (xfail)."""

# Docker emits an oom event for every OOM kill of a container's child, but the collector does
# not always count it in the container's samples (seen now and then on a loaded machine; cause
# not found yet): issue 10 stays open for it, and the tests say so instead of failing at random.
OOM_EVENTS_NOT_ALWAYS_COUNTED = (
    "Docker's oom events of a container whose children are OOM-killed are not always counted "
    "in its samples (a known defect, issue 10)")
