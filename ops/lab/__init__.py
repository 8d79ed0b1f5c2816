"""The network-namespace lab: a test network built from a gateway
configuration (:mod:`ops.lab.plan`), made real with ``ip`` (:mod:`ops.lab.netns`)
and driven with SIPp calls (:mod:`ops.lab.sipp`)."""
