#!/usr/bin/env python3
"""N OSCORE block-wise GETs of one resource from an aiocoap server, at most C at a time.

usage: aiocoap_many.py --context DIR --count N --concurrency C coap://127.0.0.1:PORT/PATH

The reference for bench/rollout.sh: "the same release fetched by the same number of clients
from aiocoap". Each fetch is its own client (its own aiocoap context and UDP socket, as each
device is its own endpoint): one socket for all would exhaust CoAP's 16-bit message-id space
within EXCHANGE_LIFETIME (a 1 MiB block-wise GET is 1,024 exchanges), and the server's
duplicate detection then answers new requests from its cache, which stalls the run. The
fetches share one OSCORE security context object (one sender sequence, no nonce reuse);
each checks the SHA-256 of what it got against --sha256. Prints "elapsed SECONDS" and
"ok N" on stdout.
"""
import argparse
import asyncio
import hashlib
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiocoap
from aiocoap import oscore


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--context", type=Path, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--sha256", required=True)
    p.add_argument("uri")
    o = p.parse_args()
    u = urlsplit(o.uri)
    security = oscore.FilesystemSecurityContext(str(o.context))
    sem = asyncio.Semaphore(o.concurrency)
    ok = 0

    async def one():
        nonlocal ok
        async with sem:
            ctx = await aiocoap.Context.create_client_context()
            try:
                ctx.client_credentials["coap://%s/*" % u.netloc] = security
                resp = await ctx.request(aiocoap.Message(code=aiocoap.GET, uri=o.uri)).response
                if resp.code.is_successful() and hashlib.sha256(resp.payload).hexdigest() == o.sha256:
                    ok += 1
            finally:
                await ctx.shutdown()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(o.count)))
    elapsed = time.perf_counter() - t0
    print("elapsed %.3f" % elapsed)
    print("ok %d" % ok)
    return 0 if ok == o.count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
