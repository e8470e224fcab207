"""The BGP speaker: ExaBGP taught to announce EVPN routes.

``grammar`` (pure) defines the API lines; ``launcher`` registers them with ExaBGP and runs
ExaBGP's own main. Importing this package does not import ExaBGP.
"""
