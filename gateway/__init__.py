"""The gateway's brain, sans-I/O: configuration language, policy and NAT
decisions, packet codec, protocol parsers and ALG state machines.

Nothing in this package performs I/O, starts threads, reads clocks or imports
another package of the project (see ARCHITECTURE.md, "Layering")."""
