"""``mdhr-live``: a browser page that scores its camera as you watch (``server.py``)."""
