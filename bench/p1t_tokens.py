"""
P1t: token re-logins over verified TLS, beside Twisted's stock PB password
login over the same TLS, in P1's layouts: server and client in separate
processes, 1 and 100 logins in flight, a new connection per login and
persistent connections (see L{bench.p1_logins}).

Ours is P1's embedded configuration (L{bench._pbpeer}: a L{Bouncer} on a
L{MemoryStore} with C{tokens=TokenPolicy()}, L{KeycardRoot},
L{KeycardServerFactory}, every limit at its default) listening with TLS;
its client logs each user in once, untimed, with SCRAM and keeps the
token, then logs in with C{KeycardClientFactory.login([TokenAnswerer(token)])}
(see L{bench._tlspeer}).  Both servers have the same certificate, from a
throwaway CA made for the run; both clients verify it
(C{optionsForClientTLS}), as a token is a bearer credential.

Rate, server CPU per login (schedstat, over the timed logins only), client
CPU per login, p50/p99 latency, PB requests per login: medians over the
runs; within a run the two servers run side by side and each layout is
measured on both in turn, starting one further along each time.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from ._common import Figure, figure
from ._pbpeer import PER_ADDRESS, PER_CONNECTION
from ._servers import Config, Server, runClients
from ._tlspeer import HOSTNAME, makeCertificates
from .p1_logins import LAYOUTS, MEASURES, Run, layoutName, measures

CONFIGS = {"stock": Config("stock"), "embedded": Config("embedded")}

#: Token re-logins per second at least, as a multiple of stock's password
#: logins.
MIN_RATE = 1.2

NOTES = [
    "P1t configurations: token re-login over verified TLS; server: P1e's"
    " embedded configuration (Bouncer([SCRAMVerifiers], MemoryStore(),"
    " tokens=TokenPolicy()), KeycardRoot, KeycardServerFactory, every limit"
    " at its default) listening with Twisted's ssl: server endpoint; client:"
    " each user logged in once untimed with SCRAM (loginWithKeycard, over the"
    " same TLS), then KeycardClientFactory.login([TokenAnswerer(token)]) with"
    " that user's token every time",
    f"  TLS: a throwaway CA and a P-256 certificate for {HOSTNAME}, made per"
    " run; clients connect with optionsForClientTLS(hostname, trustRoot=CA)"
    " (chain and name checked) over TCP4ClientEndpoint, from loopback"
    f" addresses, {PER_ADDRESS} workers each; persistent connections carry"
    f" {PER_CONNECTION} logins",
    "  peer: Twisted's PBServerFactory(Portal(realm, [in-memory checker]))"
    " over the same TLS (same certificate, same client options),"
    " PBClientFactory.login(UsernamePassword)",
    f"  goals: token re-login rate >= {MIN_RATE:g}x stock's password login,"
    " every layout; 1 round trip per token login (stock: 2)",
]


class TLSServer(Server):
    """
    A P1 server (stock or embedded) that listens with TLS.
    """

    peer = "bench._tlspeer"

    def __init__(self, config: Config, certs: Path) -> None:
        self.certs = certs
        super().__init__(config, None)

    def peerArguments(self) -> list[str]:
        return [str(self.certs)]


def measureLayout(
    server: TLSServer, layout: tuple[str, int], count: int
) -> dict[str, float]:
    mode, concurrency = layout
    client = "stock" if server.config.side == "stock" else "ours"
    (result,), serverNs = runClients(
        client,
        server,
        concurrency,
        mode,
        count,
        peer="bench._tlspeer",
        extra=(str(server.certs),),
    )
    if result["failures"]:
        raise RuntimeError(
            f"{server.config.side} over TLS, {mode} {concurrency}:"
            f" {result['failures']} failed logins, e.g. {result['failureSample']}"
        )
    return measures(result, serverNs)


def oneRun(certs: Path, count: int, shift: int) -> Run:
    """
    Start both servers, measure every layout on each in turn, stop them.
    """
    servers: list[TLSServer] = []
    try:
        for config in CONFIGS.values():
            servers.append(TLSServer(config, certs))
        run: Run = {name: {} for name in CONFIGS}
        for i, layout in enumerate(LAYOUTS):
            start = (shift + i) % len(servers)
            for server in servers[start:] + servers[:start]:
                run[server.config.side][layout] = measureLayout(server, layout, count)
        return run
    finally:
        for server in servers:
            server.stop()


def figures(runs: list[Run]) -> list[Figure]:
    def each(config: str, layout: tuple[str, int], key: str) -> list[float]:
        return [r[config][layout][key] for r in runs]

    tag = "token login, verified TLS"
    result = []
    for layout in LAYOUTS:
        for key, what, unit, higher in MEASURES:
            f = figure(
                "P1t",
                f"{tag}: {what}, {layoutName(layout)}",
                each("embedded", layout, key),
                each("stock", layout, key),
                unit,
                higher,
            )
            if key == "rate":
                f = f.ratioAtLeast(MIN_RATE)
            result.append(f)
    ours = [r["embedded"][layout]["rtt"] for r in runs for layout in LAYOUTS]
    stock = [r["stock"][layout]["rtt"] for r in runs for layout in LAYOUTS]
    f = figure(
        "P1t",
        f"{tag}: PB round trips/login, all layouts",
        ours,
        stock,
        "requests",
        False,
    )
    result.append(f.held("= 1", statistics.median(ours) == 1))
    return result


def run(quick: bool) -> list[Figure]:
    count, runs = (400, 1) if quick else (2000, 3)
    with tempfile.TemporaryDirectory(prefix="keycard-bench-tls-") as tmp:
        certs = Path(tmp)
        makeCertificates(certs)
        results = [oneRun(certs, count, shift) for shift in range(runs)]
    return figures(results)
