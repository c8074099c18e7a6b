"""The compiled CPU kernel (``backend='native'``)."""
