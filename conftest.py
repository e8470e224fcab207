# Makes the checkout's top directory importable in tests (``from lab.fabric import ...``).

from hypothesis import settings

# Wall-clock deadlines per example fail property tests on a loaded machine (CI shares its
# cores) without anything being wrong; the example counts stay as each test sets them.
settings.register_profile("evpn-agent", deadline=None)
settings.load_profile("evpn-agent")
