"""Fuzzing campaign for the H.323 parsers and the ALG step (not run in CI;
tests/test_h323_fuzz.py is its bounded form).

Mutations of the corpus capture's messages (byte flips, random octets,
length determinants set high - X.691 11.9 two-octet counts and 16K-64K
fragments -, truncations, inserted octets) go through parse_ras,
parse_call_signal, parse_h245 and gateway.h323.alg.step. A finding is an
input that raises anything but RemoteProtocolError, takes more than 50 ms
of CPU, or raises MemoryError (the address space is capped so a blow-up
shows as one instead of taking the machine); each is printed in hex. A
watchdog stops an input after 2 s. Every 2000th input is also measured with
tracemalloc; the largest peak is reported, with the resident high-water
mark.

Run: .venv/bin/python bench/fuzz_h323.py [seconds] [seed]   (default 600 s)"""

from __future__ import annotations

import random
import resource
import signal
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gateway.errors import RemoteProtocolError  # noqa: E402
from gateway.h323.alg import H323Context, step  # noqa: E402
from gateway.h323.h245 import parse_h245  # noqa: E402
from gateway.h323.q931 import parse_call_signal  # noqa: E402
from gateway.h323.ras import parse_ras  # noqa: E402
from gateway.h323.state import EMPTY  # noqa: E402

from h323_bounds import MAX_SECONDS, frames, mutate, with_tpkt_length  # noqa: E402

WATCHDOG_SECONDS = 2.0
ADDRESS_SPACE = 2 * 1024 ** 3


class _Stalled(Exception):
    pass


def _alarm(*_):
    raise _Stalled()


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    signal.signal(signal.SIGALRM, _alarm)
    f = frames()
    ras = [f[n] for n in range(59, 76) if n in f and n not in (65, 66)]
    tcp = [m for n, m in f.items() if m[:1] == b"\x03" and len(m) > 4]
    a, b = ("10.1.3.143", 32803), ("10.1.6.18", 1720)
    state = step(step(EMPTY, H323Context("q931", "none", a, b), f[6], 1.0).state,
                 H323Context("q931", "none", b, a), f[18], 1.1).state
    targets = {
        "ras": (ras, False, parse_ras),
        "q931": (tcp, True, parse_call_signal),
        "h245": (tcp, True, parse_h245),
        "step-ras": (ras, False, lambda d: step(state, H323Context("ras", "outbound", ("17.2.0.124", 2034),
                                                                  ("17.2.0.161", 1719),
                                                                  nat_src=("1.1.1.12", 2034)), d, 2.0)),
        "step-q931": (tcp, True, lambda d: step(state, H323Context("q931", "none", b, a), d, 2.0)),
        "step-h245": (tcp, True, lambda d: step(state, H323Context("h245", "none", ("10.1.6.18", 1232),
                                                                   ("10.1.3.143", 32804)), d, 2.0)),
    }
    rnd = random.Random(seed)
    counts = {k: 0 for k in targets}
    errors = {k: 0 for k in targets}
    slowest = {k: 0.0 for k in targets}
    findings = []
    peak = 0
    n = 0
    retried = 0
    end = time.process_time() + seconds
    while time.process_time() < end:
        name = rnd.choice(list(targets))
        corpus, tpkt, fn = targets[name]
        m = mutate(rnd.choice(corpus), rnd.randint)
        if tpkt and rnd.random() < 0.5:
            m = with_tpkt_length(m)
        n += 1
        counts[name] += 1
        measure = n % 2000 == 0
        if measure:
            tracemalloc.start()
        t0 = time.process_time()
        signal.setitimer(signal.ITIMER_REAL, WATCHDOG_SECONDS)
        problem = ""
        try:
            fn(m)
        except RemoteProtocolError:
            errors[name] += 1
        except _Stalled:
            problem = f"stalled over {WATCHDOG_SECONDS} s"
        except MemoryError:
            problem = "MemoryError"
        except Exception as e:  # noqa: BLE001 -- a finding
            problem = f"{type(e).__name__}: {e}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        dt = time.process_time() - t0
        if measure:
            peak = max(peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        slowest[name] = max(slowest[name], dt)
        if not problem and dt > MAX_SECONDS and not measure:
            # Measured again: a garbage collection or another process's burst
            # on the core can land in any one run; a slow input is slow
            # every time.
            again = []
            for _ in range(2):
                t1 = time.process_time()
                try:
                    fn(m)
                except RemoteProtocolError:
                    pass
                again.append(time.process_time() - t1)
            if min(again) > MAX_SECONDS:
                problem = f"{min(again) * 1000:.1f} ms CPU"
            else:
                retried += 1
        if problem:
            findings.append((name, problem, m.hex()))
            print(f"FINDING {name}: {problem}: {m.hex()}", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{n} inputs in {seconds:.0f} s CPU (seed {seed}); findings {len(findings)}; "
          f"{retried} over {MAX_SECONDS * 1000:.0f} ms once but not when run again")
    for k in targets:
        print(f"  {k:10s} {counts[k]:8d} inputs, {errors[k]:8d} RemoteProtocolError, "
              f"slowest {slowest[k] * 1000:.2f} ms")
    print(f"  largest tracemalloc peak (sampled) {peak / 1024:.0f} kB; maxrss {rss / 1024:.0f} MB")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
