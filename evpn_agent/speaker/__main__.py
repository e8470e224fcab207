"""``python -m evpn_agent.speaker CONF``: run ExaBGP with the EVPN commands registered."""

import sys

from evpn_agent.speaker.launcher import main

sys.exit(main())
