"""The agent's pure logic: received routes, what this VTEP has, what the kernel holds, and the
plan between them. Imports only ``evpn_agent.model`` and the standard library (a unit test and
the import-linter contract keep it so); every input arrives as a value, with the time.

- ``rib``: received routes per peer and the best path per MAC, IP and VNI (RFC 7432 s15);
- ``local``: this VTEP's VNIs, local MACs and bindings;
- ``mirror``: our entries as the kernel holds them;
- ``peers``: sessions, what they negotiated, when each table is complete, when to sweep;
- ``plan``: want - have, as queries without side effects;
- ``adverts``: our routes, desired against sent;
- ``dad``, ``retries``: duplicate detection and the backoff of refused writes;
- ``drift``: what full dumps find changed behind our back, the repairs, when it matched;
- ``state``: all of the above in one record, with the dirty sets (the pending work);
- ``observe``, ``receive``, ``work``, ``timers``: what changes the state: kernel
  observations, speaker events, planning and its outcome, time;
- ``engine``: their entry points, the only API the edges use.
"""
