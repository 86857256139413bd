"""``statspout-top``: a live terminal view of every container of every host, fed by the router."""
