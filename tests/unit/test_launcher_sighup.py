"""SIGHUP to ExaBGP (our launcher's process) is the agent's reload: ExaBGP 5.0.15 would
shut down on it; with the launcher's handler it schedules nothing and the agent core, its
child, gets the signal. Run in a subprocess: ExaBGP's Signal takes over SIGTERM, SIGHUP,
SIGALRM and SIGUSR1/2 of the process that builds it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from evpn_agent.speaker import launcher

CORE = (  # stands for the agent core: blocks SIGHUP, says so, waits for it
    "import signal; signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGHUP]);"
    " print('ready', flush=True); signal.sigwait([signal.SIGHUP]); print('core got SIGHUP')"
)
SCRIPT = textwrap.dedent(
    f"""
    import os, signal, subprocess, sys
    from evpn_agent.speaker import launcher
    from evpn_agent.speaker.compat import exa

    launcher.forward_sighup()
    hub = exa.Signal()  # what ExaBGP's reactor builds: rearm() installs its handlers
    core = subprocess.Popen(
        [sys.executable, "-c", {CORE!r}, "-m", "evpn_agent.daemon"],
        stdout=subprocess.PIPE, text=True,
    )
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert core.stdout.readline() == "ready\\n"
        assert launcher.core_pids(os.getpid()) == [core.pid]  # not the other child
        os.kill(os.getpid(), signal.SIGHUP)
        out, _ = core.communicate(timeout=10)
    finally:
        core.kill()
        other.kill()
    print(out.strip(), "| exabgp scheduled:", hub.name(hub.received))
    """
)


def test_sighup_goes_to_the_core_and_exabgp_does_not_shut_down() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "core got SIGHUP | exabgp scheduled: none"


def test_no_core_no_signal() -> None:
    assert launcher.core_pids(-1) == []
