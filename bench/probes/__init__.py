"""The small programs the benchmarks run inside namespaces (the parent side is bench/child.py).

Each prints JSON lines on stdout, one per fact, timestamped with time.time(), which is
CLOCK_REALTIME and so comparable across namespaces of this machine:

    python bench/probes count-fdb --devices vxlan1000,vxlan1001 --target N
        Counts remote MACs arriving in the kernel on those VXLAN devices from rtnetlink
        notifications (RTM_NEWNEIGH, AF_BRIDGE, NTF_SELF, MAC not zero), unique per
        (device, MAC). A classic-BPF filter on the socket drops everything else in the
        kernel, so the counter costs one recv and a few struct unpacks per entry.
    python bench/probes count-vtep
        A VTEP's flood entries and remote MACs (all VXLAN devices): one FDB dump, then
        rtnetlink; a state line with the counts (and cumulative adds/removes) as they change.
    python bench/probes watch-neigh --mac-prefix 02:b3
        Reports every AF_BRIDGE neighbour event whose MAC starts with the prefix.
    python bench/probes sniff-bgp --device eth0 --mac-prefix 02:b3
        Reports BGP segments (TCP port 179, both directions) whose payload holds a MAC
        with the prefix: when a route crossed a box (e.g. the route reflector).
    python bench/probes send-frames --device eth0
        Reads MACs on stdin; for each sends one broadcast frame with that source MAC
        from a raw socket and reports the send time.
    python bench/probes count-fdb ... --follow [--mac-prefix 02:30]
        The same, both ways: progress on gains and losses, "done" at the target, then
        "empty" when every counted entry is gone again; only MACs with the prefix.
    python bench/probes bgp-generate --local A --peer RR --routes N --vnis V --vteps X,Y
        A minimal BGP speaker: pre-packs EVPN UPDATEs, brings a session up to the route
        reflector, then sends all announces or all withdraws on "announce"/"withdraw"
        read from stdin (see bench_bulk.py).

Standard library only, nothing from evpn_agent or lab: the measuring side stays
independent of the agent, and each probe starts fast.
"""
