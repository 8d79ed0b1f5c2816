"""Real SIP calls through the lab with SIPp (Debian ``sip-tester``, 3.6.1).

The callee runs SIPp's built-in ``uas`` scenario with RTP echo (``-rtp_echo``:
every RTP packet received on the media port goes back to its sender). The
caller runs a UAC scenario written here: the built-in ``uac`` call flow
(INVITE, ACK, hold for ``-d`` ms, BYE) that, once the call is up, plays the
G.711 A-law capture shipped with sip-tester (``play_pcap_audio``) towards the
media address the callee's SDP gives. SIPp stops playing when the call ends,
so the hold time bounds the RTP per call.

Calls are counted by SIPp's statistics file (``-trace_stat``); RTP is counted
by the nft counters every lab host carries (datagrams with an RTP header, off
the signalling ports, in and out: ops/lab/netns.py ``counter_rules``), read
before and after, so neither peer's own report is trusted for media.

Signalling goes over UDP (SIPp's default ``-t u1``; ``transport="udp-per-call"``:
the caller sends each call from a socket, and so a source port, of its own,
``-t un``, as a set of distinct phones would) or, with
``transport="tcp"``, over TCP: the caller opens one connection per call
(``-t tn``), so each call's INVITE, ACK and BYE travel one connection of its
own, and the callee listens on TCP (``-t t1``: one listening socket, the
connections it accepts answered on themselves). SIPp sends no
retransmissions over TCP (RFC 3261 17.1.1.2: timer A is for unreliable
transports only), so a segment the gateway loses stays lost until TCP
itself retransmits it.
"""

from __future__ import annotations

import csv
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from pathlib import Path

from ops.lab.netns import LabError, ns_cmd, read_counters
from ops.lab.plan import HostNs

SIPP = "/usr/bin/sipp"
G711A_PCAP = Path("/usr/share/sip-tester/g711a.pcap")
SIP_PORT = 5060
MEDIA_PORT = 6000
TRANSPORTS = ("udp", "udp-per-call", "tcp")
# SIPp's -t for (caller, callee) per transport (see the module's docstring).
_SIPP_TRANSPORT = {"udp": ("u1", "u1"), "udp-per-call": ("un", "u1"), "tcp": ("tn", "t1")}
# SIPp refuses TCP when its socket limit (default 50,000) exceeds the open
# files limit (``ulimit -n``); the lab's calls need far fewer.
MAX_SOCKETS = 1024

# The SDP offers PCMA (payload 8) because the capture played is G.711 A-law.
_UAC_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac with G.711 RTP">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <nop><action><exec play_pcap_audio="@PCAP@"/></action></nop>
  <pause/>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


_PLAY = '  <nop><action><exec play_pcap_audio="@PCAP@"/></action></nop>\n'


def uac_scenario(pcap: Path = G711A_PCAP, *, per_call_media_port: bool = False,
                 media: bool = True, sdp_padding: int = 0) -> str:
    """The UAC scenario. ``per_call_media_port``: each call offers (and plays
    its RTP from) its own port, SIPp's ``[auto_media_port]``, as distinct
    phones would; otherwise every call uses ``-mp``. Through a NAT that maps
    each call's media to its own public port, calls sharing one private media
    address *and* one remote address would be the same flow twice.
    ``media=False``: the same signalling (SDP offered and answered, so the
    gateway still opens and closes pinholes) but no RTP played: a
    signalling-only load. ``sdp_padding``: about that many more octets of
    SDP in the INVITE, as media attributes (an offer with many codecs or
    ICE candidates), so that the INVITE spans several TCP segments."""
    assert _PLAY in _UAC_SCENARIO
    text = _UAC_SCENARIO if media else _UAC_SCENARIO.replace(_PLAY, "")
    if sdp_padding > 0:
        rtpmap = "      a=rtpmap:8 PCMA/8000\n"
        pad = "".join(f"      a=x-pad-{i:05d}:{'z' * 48}\n" for i in range(sdp_padding // 66 + 1))
        text = text.replace(rtpmap, rtpmap + pad, 1)
    text = text.replace("@PCAP@", str(pcap))
    if per_call_media_port:
        text = text.replace("m=audio [media_port] ", "m=audio [auto_media_port] ")
    return text


@dataclass(frozen=True, slots=True)
class CallResult:
    caller: str
    callee: str
    dial: str
    calls_attempted: int
    calls_completed: int
    calls_failed: int
    rtp_sent: int                 # by the caller
    rtp_received: int             # back at the caller (echoed by the callee)
    callee_rtp_received: int
    callee_rtp_sent: int
    sipp_exit: int
    seconds: float
    errors: str = ""
    timed_out: bool = False       # SIPp's global timeout ended calls still open
    transport: str = "udp"

    def to_json(self) -> dict:
        d = asdict(self)
        d["rtp"] = {"caller_to_callee": {"sent": self.rtp_sent, "received": self.callee_rtp_received},
                    "callee_to_caller": {"sent": self.callee_rtp_sent, "received": self.rtp_received}}
        return d


def parse_stats(path: Path) -> tuple[int, int, int]:
    """(attempted, completed, failed) from the last row of SIPp's -trace_stat
    file (``-h stat``: cumulative counters end in ``(C)``)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) < 2:
        raise LabError(f"SIPp wrote no statistics to {path}")
    head, last = rows[0], rows[-1]
    col = {name: i for i, name in enumerate(head)}
    try:
        return (int(last[col["OutgoingCall(C)"]]), int(last[col["SuccessfulCall(C)"]]),
                int(last[col["FailedCall(C)"]]))
    except (KeyError, IndexError, ValueError) as exc:
        raise LabError(f"unexpected SIPp statistics in {path}: {exc}") from exc


def _stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)


def run_calls(caller: HostNs, callee: HostNs, *, dial: IPv4Address | None = None,
              calls: int = 5, rate: float = 10.0, duration_ms: int = 1000,
              timeout: float | None = None, workdir: Path | None = None,
              settle: float = 0.3, per_call_media_port: bool = False,
              transport: str = "udp", media: bool = True, sdp_padding: int = 0) -> CallResult:
    """Place ``calls`` calls at ``rate`` calls/s from ``caller`` to ``callee``,
    each held ``duration_ms`` with RTP both ways, dialling ``dial`` (the
    callee's own address, its MIP or a DIP address: whatever the configuration
    makes reachable). Every step is bounded: SIPp gets a global timeout and is
    killed if it overstays it. ``transport``: ``"udp"`` or ``"tcp"`` for the
    signalling (media is RTP over UDP either way). ``media=False``: no RTP
    is played (see :func:`uac_scenario`); ``sdp_padding``: a longer INVITE
    (:func:`uac_scenario`)."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport is one of {TRANSPORTS}, not {transport!r}")
    uac_t, uas_t = _SIPP_TRANSPORT[transport]
    t_opts = ["-max_socket", str(MAX_SOCKETS)] if transport != "udp" else []
    if calls < 1 or rate <= 0 or duration_ms < 0:
        raise ValueError("calls >= 1, rate > 0, duration >= 0")
    target = dial or callee.address.ip
    # Time for all calls to start, be held, and end (with retransmissions).
    bound = timeout or (calls / rate + duration_ms / 1000.0 + 15.0)
    own_dir = workdir is None
    tmp = Path(tempfile.mkdtemp(prefix="voip-lab-sipp-")) if own_dir else workdir
    assert tmp is not None
    scenario = tmp / "uac_rtp.xml"
    scenario.write_text(uac_scenario(per_call_media_port=per_call_media_port, media=media,
                                     sdp_padding=sdp_padding))
    stat_file = tmp / "uac_stat.csv"
    err_file = tmp / "uac_errors.log"

    callee_ip, caller_ip = str(callee.address.ip), str(caller.address.ip)
    uas_cmd = ns_cmd(callee.netns, SIPP, "-sn", "uas", "-i", callee_ip, "-p", str(SIP_PORT),
                     "-mi", callee_ip, "-mp", str(MEDIA_PORT), "-rtp_echo", "-nostdin",
                     "-t", uas_t, *t_opts, "-timeout", f"{int(bound) + 10}s")
    uac_cmd = ns_cmd(caller.netns, SIPP, f"{target}:{SIP_PORT}", "-sf", str(scenario),
                     "-i", caller_ip, "-p", str(SIP_PORT), "-mi", caller_ip,
                     "-mp", str(MEDIA_PORT), "-m", str(calls), "-r", str(rate),
                     "-d", str(duration_ms), "-nostdin", "-t", uac_t, *t_opts, "-timeout", f"{int(bound)}s",
                     "-timeout_error", "-trace_stat", "-stf", str(stat_file), "-fd", "1",
                     "-trace_err", "-error_file", str(err_file))
    before_caller = read_counters(caller.netns)
    before_callee = read_counters(callee.netns)
    started = time.monotonic()
    uas = subprocess.Popen(uas_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, cwd=tmp)
    try:
        time.sleep(settle)          # let the UAS bind before the first INVITE
        if uas.poll() is not None:
            raise LabError(f"SIPp UAS in {callee.netns} exited: "
                           f"{uas.stderr.read().decode(errors='replace') if uas.stderr else ''}")
        try:
            uac = subprocess.run(uac_cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, timeout=bound + 10, cwd=tmp)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"SIPp UAC overstayed {bound + 10:.0f}s") from exc
        # Late echoes of the last packets: a short wait, not a sleep per call.
        time.sleep(0.2)
    finally:
        _stop(uas)
    seconds = time.monotonic() - started
    after_caller = read_counters(caller.netns)
    after_callee = read_counters(callee.netns)
    if stat_file.exists():
        attempted, completed, failed = parse_stats(stat_file)
    else:
        raise LabError(f"SIPp UAC wrote no statistics (exit {uac.returncode}): "
                       f"{uac.stderr.strip()[-500:]}")
    errors = err_file.read_text(errors="replace")[-2000:] if err_file.exists() else ""
    # SIPp counts a call still open at its global timeout as neither
    # successful nor failed; for the lab every call not completed has failed.
    failed = max(failed, attempted - completed)
    result = CallResult(
        caller=caller.label, callee=callee.label, dial=str(target),
        calls_attempted=attempted, calls_completed=completed, calls_failed=failed,
        timed_out="timed out" in errors,
        rtp_sent=after_caller[1] - before_caller[1],
        rtp_received=after_caller[0] - before_caller[0],
        callee_rtp_received=after_callee[0] - before_callee[0],
        callee_rtp_sent=after_callee[1] - before_callee[1],
        sipp_exit=uac.returncode, seconds=round(seconds, 3), errors=errors,
        transport=transport)
    if own_dir:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    return result
