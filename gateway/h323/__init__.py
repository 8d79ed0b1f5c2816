"""The H.323 ALG, sans-I/O (manual chapter 1; ITU-T H.225.0 and H.245).

RAS (UDP 1719) and Q.931 call signalling (TCP 1720, TPKT framing) are parsed
into the positions of every IPv4 transport address they carry; NAT rewrites
those six octets in place, so a message keeps its length and every byte the
ALG does not translate."""
